package authz_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	josev4 "github.com/go-jose/go-jose/v4"

	"github.com/authz/authz/authz"
)

const (
	contactsAPI = "https://api.example.com/contacts"
	calendarAPI = "https://api.example.com/calendar"
)

// apiClient registers a confidential sign-in client for two APIs, with
// access tokens in the given format.
func apiClient(t *testing.T, e *env, strategy string) authz.ClientMetadata {
	return e.createClient(t, authz.ClientMetadata{
		ClientName:              "Contacts BFF",
		RedirectURIs:            []string{"https://app.example.com/callback"},
		Scope:                   "openid profile contacts",
		Audience:                []string{contactsAPI, calendarAPI},
		TokenEndpointAuthMethod: "client_secret_basic",
		AccessTokenStrategy:     strategy,
	})
}

// signInFor runs the browser part of a code flow with extra query
// parameters (repeatable) and returns the redirect it ends on.
func signInFor(t *testing.T, e *env, b *browser, c authz.ClientMetadata, user string, extra url.Values) *url.URL {
	t.Helper()
	q := url.Values{
		"response_type": {"code"}, "client_id": {c.ClientID}, "scope": {"openid contacts"},
		"redirect_uri": {"https://app.example.com/callback"}, "state": {"state-123"}, "nonce": {"nonce-123"},
	}
	for k, v := range extra {
		q[k] = v
	}
	p := b.get(e.issuer + "/oauth2/authorize?" + q.Encode())
	if isLoginPage(p) {
		p = b.login(p, user, testPassword)
	}
	if isConsentPage(p) {
		return b.consent(p, "allow")
	}
	return p.location(t)
}

// exchangeCode redeems the code of loc, with extra form parameters.
func exchangeCode(t *testing.T, e *env, c authz.ClientMetadata, loc *url.URL, extra url.Values) (tokenResponse, map[string]any) {
	t.Helper()
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in %s", loc)
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {"https://app.example.com/callback"}}
	for k, v := range extra {
		form[k] = v
	}
	return tokenWithBody(t, e, form, c)
}

// tokenWithBody posts to the token endpoint and returns the answer both
// typed and as a map (for id_token and anything else).
func tokenWithBody(t *testing.T, e *env, form url.Values, c authz.ClientMetadata) (tokenResponse, map[string]any) {
	t.Helper()
	resp, body := postForm(t, e.url("/oauth2/token"), form, c.ClientID, c.ClientSecret)
	var tr tokenResponse
	var raw map[string]any
	if err := json.Unmarshal(body, &tr); err != nil {
		t.Fatalf("token response %d is not JSON: %s", resp.StatusCode, body)
	}
	_ = json.Unmarshal(body, &raw)
	tr.status, tr.header = resp.StatusCode, resp.Header
	return tr, raw
}

// verifyWithJWKS verifies a compact JWS against the server's published
// keys, as an offline resource server would, and returns its header and
// claims.
func verifyWithJWKS(t *testing.T, e *env, token string) (josev4.Header, map[string]any) {
	t.Helper()
	resp, err := http.Get(e.url("/.well-known/jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var set josev4.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	algs := []josev4.SignatureAlgorithm{josev4.RS256, josev4.PS256, josev4.ES256, josev4.EdDSA}
	jws, err := josev4.ParseSigned(token, algs)
	if err != nil {
		t.Fatalf("not a JWS: %v", err)
	}
	h := jws.Signatures[0].Header
	keys := set.Key(h.KeyID)
	if len(keys) == 0 {
		t.Fatalf("the JWKS has no key %q", h.KeyID)
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		t.Fatalf("the token does not verify against the JWKS: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return h, claims
}

func strs(v any) []string {
	var out []string
	switch v := v.(type) {
	case string:
		out = append(out, v)
	case []any:
		for _, s := range v {
			str, _ := s.(string)
			out = append(out, str)
		}
	}
	return out
}

// TestJWTAccessToken: a client registered for JWT access tokens gets RFC
// 9068 tokens a resource server verifies offline: typ at+jwt, aud the
// resource asked for, who and what; introspection and revocation treat
// them as opaque ones; an ID token cannot pass for one.
func TestJWTAccessToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := apiClient(t, e, "jwt")
	rs := e.resourceServer(t)
	alice := e.createUser(t, "alice")

	loc := signInFor(t, e, newBrowser(t), client, "alice", url.Values{"resource": {contactsAPI}})
	tok, raw := exchangeCode(t, e, client, loc, nil)
	if tok.status != http.StatusOK {
		t.Fatalf("exchange: %d %+v", tok.status, tok)
	}
	h, claims := verifyWithJWKS(t, e, tok.AccessToken)
	if typ, _ := h.ExtraHeaders["typ"].(string); typ != "at+jwt" {
		t.Errorf("typ = %q, want at+jwt", typ)
	}
	if h.KeyID == "" {
		t.Error("no kid")
	}
	if got := strs(claims["aud"]); !slices.Equal(got, []string{contactsAPI}) {
		t.Errorf("aud = %v, want [%s]", got, contactsAPI)
	}
	for k, want := range map[string]any{"iss": e.issuer, "sub": alice.ID, "client_id": client.ClientID, "scope": "openid contacts"} {
		if claims[k] != want {
			t.Errorf("%s = %v, want %v", k, claims[k], want)
		}
	}
	for _, k := range []string{"jti", "exp", "iat", "auth_time"} {
		if claims[k] == nil || claims[k] == "" {
			t.Errorf("no %s in %v", k, claims)
		}
	}
	if exp, _ := claims["exp"].(float64); time.Unix(int64(exp), 0).Before(time.Now()) {
		t.Errorf("exp %v is in the past", exp)
	}

	// An ID token, signed by the same keys, is not an access token.
	idToken, _ := raw["id_token"].(string)
	idh, _ := verifyWithJWKS(t, e, idToken)
	if typ, _ := idh.ExtraHeaders["typ"].(string); strings.EqualFold(typ, "at+jwt") {
		t.Errorf("the ID token's typ is %q", typ)
	}
	wantActive(t, e, rs, idToken, false, "an ID token presented as an access token")

	info := e.introspect(t, tok.AccessToken, rs.ClientID, rs.ClientSecret)
	if info["active"] != true || info["sub"] != alice.ID || !slices.Equal(strs(info["aud"]), []string{contactsAPI}) {
		t.Fatalf("introspection of a JWT access token: %v", info)
	}

	// Its signature under another payload: not ours.
	parts := strings.Split(tok.AccessToken, ".")
	claims["scope"] = "openid contacts admin"
	forged, _ := json.Marshal(claims)
	parts[1] = base64.RawURLEncoding.EncodeToString(forged)
	wantActive(t, e, rs, strings.Join(parts, "."), false, "a JWT access token with a changed payload")

	// The refresh token stays opaque, and refreshing gives a new JWT.
	if strings.Count(tok.RefreshToken, ".") != 1 {
		t.Errorf("the refresh token is not opaque: %s", tok.RefreshToken)
	}
	tok2, _ := tokenWithBody(t, e, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}, client)
	if tok2.status != http.StatusOK {
		t.Fatalf("refresh: %d %+v", tok2.status, tok2)
	}
	if _, c2 := verifyWithJWKS(t, e, tok2.AccessToken); c2["jti"] == claims["jti"] || !slices.Equal(strs(c2["aud"]), []string{contactsAPI}) {
		t.Errorf("refreshed JWT: jti %v (first %v), aud %v", c2["jti"], claims["jti"], c2["aud"])
	}
	wantActive(t, e, rs, tok.AccessToken, false, "the JWT access token of a rotated refresh token")

	resp, body := postForm(t, e.url("/oauth2/revoke"), url.Values{"token": {tok2.AccessToken}}, client.ClientID, client.ClientSecret)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	wantActive(t, e, rs, tok2.AccessToken, false, "a revoked JWT access token")
}

// TestJWTAccessTokenDefaults: without a resource, a JWT's aud is this
// server, which no resource server takes as its own; for client
// credentials sub names the client. Opaque clients keep opaque tokens.
func TestJWTAccessTokenDefaults(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	svc := e.createClient(t, authz.ClientMetadata{
		ClientName: "Batch job", GrantTypes: []string{"client_credentials"}, Scope: "reports",
		Audience: []string{contactsAPI}, TokenEndpointAuthMethod: "client_secret_basic", AccessTokenStrategy: "jwt",
	})
	tok, _ := tokenWithBody(t, e, url.Values{"grant_type": {"client_credentials"}, "scope": {"reports"}}, svc)
	if tok.status != http.StatusOK {
		t.Fatalf("client_credentials: %d %+v", tok.status, tok)
	}
	_, claims := verifyWithJWKS(t, e, tok.AccessToken)
	if claims["sub"] != svc.ClientID || !slices.Equal(strs(claims["aud"]), []string{e.issuer}) || claims["auth_time"] != nil || claims["scope"] != "reports" {
		t.Errorf("client_credentials JWT without resource: %v", claims)
	}
	tok, _ = tokenWithBody(t, e, url.Values{"grant_type": {"client_credentials"}, "scope": {"reports"}, "resource": {contactsAPI}}, svc)
	if _, claims := verifyWithJWKS(t, e, tok.AccessToken); !slices.Equal(strs(claims["aud"]), []string{contactsAPI}) {
		t.Errorf("client_credentials JWT for %s: aud %v", contactsAPI, claims["aud"])
	}

	opaque := apiClient(t, e, "")
	if opaque.AccessTokenStrategy != "opaque" {
		t.Errorf("default access_token_strategy = %q, want opaque", opaque.AccessTokenStrategy)
	}
	loc := signInFor(t, e, newBrowser(t), opaque, e.createUser(t, "bob").Username, nil)
	if tok, _ := exchangeCode(t, e, opaque, loc, nil); tok.status != http.StatusOK || strings.Count(tok.AccessToken, ".") != 1 {
		t.Errorf("an opaque client's access token: %d %q", tok.status, tok.AccessToken)
	}
}

// TestResourceIndicators: resources outside the client's registration are
// invalid_target at authorize and token; what was granted binds the code
// and the refresh family; a token request narrows it, never widens it.
func TestResourceIndicators(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := apiClient(t, e, "")
	rs := e.resourceServer(t)
	e.createUser(t, "alice")
	b := newBrowser(t)

	for _, res := range []string{"https://evil.example.com/api", "/contacts", "https://api.example.com/contacts#x"} {
		loc := b.get(e.issuer + "/oauth2/authorize?" + url.Values{
			"response_type": {"code"}, "client_id": {client.ClientID}, "scope": {"openid"}, "state": {"s1"},
			"redirect_uri": {"https://app.example.com/callback"}, "resource": {contactsAPI, res},
		}.Encode()).location(t)
		if got := loc.Query().Get("error"); got != "invalid_target" {
			t.Errorf("authorize with resource %q: redirected to %s, want error=invalid_target", res, loc)
		}
	}

	loc := signInFor(t, e, b, client, "alice", url.Values{"resource": {contactsAPI, calendarAPI}})
	tok, _ := exchangeCode(t, e, client, loc, url.Values{"resource": {calendarAPI}})
	if tok.status != http.StatusOK {
		t.Fatalf("exchange narrowed to %s: %d %+v", calendarAPI, tok.status, tok)
	}
	if got := strs(e.introspect(t, tok.AccessToken, rs.ClientID, rs.ClientSecret)["aud"]); !slices.Equal(got, []string{calendarAPI}) {
		t.Errorf("exchange narrowed to calendar: aud %v", got)
	}
	refresh := func(rt string, extra url.Values) tokenResponse {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		for k, v := range extra {
			form[k] = v
		}
		tr, _ := tokenWithBody(t, e, form, client)
		return tr
	}
	// The refresh token carries the whole grant.
	tok2 := refresh(tok.RefreshToken, nil)
	if got := strs(e.introspect(t, tok2.AccessToken, rs.ClientID, rs.ClientSecret)["aud"]); !slices.Equal(got, []string{contactsAPI, calendarAPI}) {
		t.Errorf("refresh without resource: aud %v, want both", got)
	}
	if bad := refresh(tok2.RefreshToken, url.Values{"resource": {"https://evil.example.com/api"}}); bad.status != http.StatusBadRequest || bad.Error != "invalid_target" {
		t.Errorf("refresh widened to another resource: %d %s", bad.status, bad.Error)
	}
	tok3 := refresh(tok2.RefreshToken, url.Values{"resource": {contactsAPI}})
	if got := strs(e.introspect(t, tok3.AccessToken, rs.ClientID, rs.ClientSecret)["aud"]); tok3.status != http.StatusOK || !slices.Equal(got, []string{contactsAPI}) {
		t.Errorf("refresh narrowed to contacts: %d aud %v", tok3.status, got)
	}
	tok4 := refresh(tok3.RefreshToken, nil)
	if got := strs(e.introspect(t, tok4.AccessToken, rs.ClientID, rs.ClientSecret)["aud"]); !slices.Equal(got, []string{contactsAPI, calendarAPI}) {
		t.Errorf("refresh after a narrowed one: aud %v, want both", got)
	}

	// A code granted for one resource cannot be exchanged for another.
	loc = signInFor(t, e, b, client, "alice", url.Values{"resource": {contactsAPI}})
	if bad, _ := exchangeCode(t, e, client, loc, url.Values{"resource": {calendarAPI}}); bad.status != http.StatusBadRequest || bad.Error != "invalid_target" {
		t.Errorf("exchange widened to calendar: %d %s", bad.status, bad.Error)
	}

	svc := e.createClient(t, authz.ClientMetadata{
		ClientName: "Batch job", GrantTypes: []string{"client_credentials"}, Scope: "reports",
		Audience: []string{contactsAPI}, TokenEndpointAuthMethod: "client_secret_basic",
	})
	if bad, _ := tokenWithBody(t, e, url.Values{"grant_type": {"client_credentials"}, "resource": {calendarAPI}}, svc); bad.status != http.StatusBadRequest || bad.Error != "invalid_target" {
		t.Errorf("client_credentials for an unregistered resource: %d %s", bad.status, bad.Error)
	}
	// fosite's own audience parameter matches exactly too: a path under a
	// registered audience is another API.
	if bad, _ := tokenWithBody(t, e, url.Values{"grant_type": {"client_credentials"}, "audience": {contactsAPI + "/admin"}}, svc); bad.status != http.StatusBadRequest {
		t.Errorf("client_credentials with audience under a registered one: %d %s", bad.status, bad.Error)
	}
}

// TestRefreshNarrowsScope: a refresh with scope gets an access token with
// that scope only (RFC 6749 6); the new refresh token keeps the grant's
// whole scope; widening is invalid_scope.
func TestRefreshNarrowsScope(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := apiClient(t, e, "")
	rs := e.resourceServer(t)
	e.createUser(t, "alice")
	tok, _ := exchangeCode(t, e, client, signInFor(t, e, newBrowser(t), client, "alice", nil), nil)
	if tok.status != http.StatusOK {
		t.Fatalf("exchange: %d %+v", tok.status, tok)
	}
	refresh := func(rt, scope string) (tokenResponse, map[string]any) {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		if scope != "" {
			form.Set("scope", scope)
		}
		return tokenWithBody(t, e, form, client)
	}
	narrow, raw := refresh(tok.RefreshToken, "contacts")
	if narrow.status != http.StatusOK || narrow.Scope != "contacts" {
		t.Fatalf("refresh with scope=contacts: %d scope %q", narrow.status, narrow.Scope)
	}
	if raw["id_token"] != nil {
		t.Error("a refresh narrowed away from openid still got an ID token")
	}
	if got := e.introspect(t, narrow.AccessToken, rs.ClientID, rs.ClientSecret)["scope"]; got != "contacts" {
		t.Errorf("narrowed access token's scope = %v", got)
	}
	if wide, _ := refresh(narrow.RefreshToken, "contacts profile"); wide.status != http.StatusBadRequest || wide.Error != "invalid_scope" {
		t.Errorf("refresh widening the scope: %d %s", wide.status, wide.Error)
	}
	// The failed widening above used the refresh token up? It must not
	// have: it is a client error before anything was issued.
	full, _ := refresh(narrow.RefreshToken, "")
	if full.status != http.StatusOK || full.Scope != "openid contacts" {
		t.Errorf("refresh without scope after a narrowed one: %d scope %q, want the whole grant", full.status, full.Scope)
	}
}

// TestDuplicateParameters: a parameter sent twice is invalid_request at the
// authorization and token endpoints (RFC 6749 3.1); resource may repeat.
func TestDuplicateParameters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := apiClient(t, e, "")
	b := newBrowser(t)
	base := url.Values{
		"response_type": {"code"}, "client_id": {client.ClientID}, "scope": {"openid"}, "state": {"s1"},
		"redirect_uri": {"https://app.example.com/callback"},
	}
	with := func(k string, v ...string) url.Values {
		q := url.Values{}
		for bk, bv := range base {
			q[bk] = bv
		}
		q[k] = v
		return q
	}
	loc := b.get(e.issuer + "/oauth2/authorize?" + with("scope", "openid", "contacts").Encode()).location(t)
	if loc.Query().Get("error") != "invalid_request" || !strings.Contains(loc.Query().Get("error_description"), "scope") {
		t.Errorf("authorize with scope twice: redirected to %s", loc)
	}
	p := b.get(e.issuer + "/oauth2/authorize?" + with("redirect_uri", "https://app.example.com/callback", "https://evil.example.com/cb").Encode())
	if p.status != http.StatusBadRequest {
		t.Errorf("authorize with redirect_uri twice: %d, want 400 on our own page", p.status)
	}
	if p := b.get(e.issuer + "/oauth2/authorize?" + with("resource", contactsAPI, calendarAPI).Encode()); !isLoginPage(p) {
		t.Errorf("authorize with two resources did not reach the login page: %d", p.status)
	}
	tok, _ := tokenWithBody(t, e, url.Values{"grant_type": {"client_credentials", "client_credentials"}}, client)
	if tok.status != http.StatusBadRequest || tok.Error != "invalid_request" || !strings.Contains(tok.Description, "grant_type") {
		t.Errorf("token with grant_type twice: %d %s %s", tok.status, tok.Error, tok.Description)
	}
}

// TestClientCredentialsScope: a client_credentials token carries the
// scopes asked for (and registered): fosite checks them but grants
// nothing itself, so without us the token said no scope at all.
func TestClientCredentialsScope(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	svc := e.createClient(t, authz.ClientMetadata{
		ClientName: "Batch job", GrantTypes: []string{"client_credentials"}, Scope: "reports audit",
		TokenEndpointAuthMethod: "client_secret_basic",
	})
	rs := e.resourceServer(t)
	tok, _ := tokenWithBody(t, e, url.Values{"grant_type": {"client_credentials"}, "scope": {"reports"}}, svc)
	if tok.status != http.StatusOK || tok.Scope != "reports" {
		t.Fatalf("client_credentials with scope reports: %d scope %q", tok.status, tok.Scope)
	}
	if info := e.introspect(t, tok.AccessToken, rs.ClientID, rs.ClientSecret); info["scope"] != "reports" || info["sub"] != nil && info["sub"] != "" {
		t.Errorf("introspection of a client_credentials token: %v", info)
	}
	if bad, _ := tokenWithBody(t, e, url.Values{"grant_type": {"client_credentials"}, "scope": {"admin"}}, svc); bad.status != http.StatusBadRequest || bad.Error != "invalid_scope" {
		t.Errorf("client_credentials with an unregistered scope: %d %s", bad.status, bad.Error)
	}
}
