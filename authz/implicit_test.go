package authz_test

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/storage"
)

const legacySPACallback = "https://spa.example.com/cb"

// implicitClient registers a single-page app opted in to the implicit
// flow.
func implicitClient(t *testing.T, e *env) authz.ClientMetadata {
	return e.createClient(t, authz.ClientMetadata{
		ClientName:              "Legacy SPA",
		RedirectURIs:            []string{legacySPACallback},
		GrantTypes:              []string{"implicit"},
		ResponseTypes:           []string{"token", "id_token", "id_token token"},
		Scope:                   "openid profile",
		TokenEndpointAuthMethod: "none",
	})
}

// implicitAnswer runs the browser part of an implicit request and returns
// the redirect it ends on.
func implicitAnswer(t *testing.T, e *env, b *browser, q url.Values) *url.URL {
	t.Helper()
	p := b.get(e.issuer + "/oauth2/authorize?" + q.Encode())
	if isLoginPage(p) {
		p = b.login(p, "alice", testPassword)
	}
	if isConsentPage(p) {
		return b.consent(p, "allow")
	}
	return p.location(t)
}

// fragment reads the answer in loc's fragment, and insists that nothing
// of it leaked into the query.
func fragment(t *testing.T, loc *url.URL) url.Values {
	t.Helper()
	if loc.RawQuery != "" {
		t.Errorf("the implicit answer has a query %q; everything belongs in the fragment", loc.RawQuery)
	}
	f, err := url.ParseQuery(loc.EscapedFragment())
	if err != nil {
		t.Fatalf("fragment of %s: %v", loc, err)
	}
	return f
}

// TestImplicitFlow: a client opted in to the implicit flow gets its tokens
// in the fragment only, an ID token only with a nonce, never a refresh
// token, and a short-lived access token; every other client is refused.
func TestImplicitFlow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	spa := implicitClient(t, e)
	alice := e.createUser(t, "alice")
	rs := e.resourceServer(t)
	b := newBrowser(t)
	base := func(responseType string, extra ...string) url.Values {
		q := url.Values{
			"response_type": {responseType}, "client_id": {spa.ClientID}, "redirect_uri": {legacySPACallback},
			"scope": {"openid profile"}, "state": {"st-1"},
		}
		for i := 0; i+1 < len(extra); i += 2 {
			q.Set(extra[i], extra[i+1])
		}
		return q
	}

	f := fragment(t, implicitAnswer(t, e, b, base("token")))
	if f.Get("access_token") == "" || f.Get("token_type") != "bearer" || f.Get("state") != "st-1" || f.Get("iss") != e.issuer {
		t.Fatalf("response_type=token answered %v", f)
	}
	if f.Has("refresh_token") || f.Has("id_token") || f.Has("code") {
		t.Errorf("response_type=token gave more than an access token: %v", f)
	}
	if exp, _ := strconv.Atoi(f.Get("expires_in")); exp <= 0 || exp > int(storage.ImplicitAccessTokenLifespan.Seconds()) {
		t.Errorf("expires_in = %s, want at most %v", f.Get("expires_in"), storage.ImplicitAccessTokenLifespan)
	}
	if info := e.introspect(t, f.Get("access_token"), rs.ClientID, rs.ClientSecret); info["active"] != true || info["sub"] != alice.ID {
		t.Errorf("the implicit access token at introspection: %v", info)
	}

	// An ID token needs a nonce.
	f = fragment(t, implicitAnswer(t, e, b, base("id_token token")))
	if f.Get("error") != "invalid_request" || f.Has("access_token") || f.Has("id_token") {
		t.Errorf("id_token token without nonce answered %v, want invalid_request and no tokens", f)
	}
	f = fragment(t, implicitAnswer(t, e, b, base("id_token token", "nonce", "n-0S6_WzA2Mj")))
	claims := verifyIDToken(t, e, f.Get("id_token"))
	sum := sha256.Sum256([]byte(f.Get("access_token")))
	if claims["nonce"] != "n-0S6_WzA2Mj" || claims["sub"] != alice.ID || !slices.Contains(strs(claims["aud"]), spa.ClientID) ||
		claims["at_hash"] != base64.RawURLEncoding.EncodeToString(sum[:16]) {
		t.Errorf("ID token of id_token token: %v", claims)
	}
	f = fragment(t, implicitAnswer(t, e, b, base("id_token", "nonce", "n-2")))
	if f.Get("id_token") == "" || f.Has("access_token") {
		t.Errorf("response_type=id_token answered %v", f)
	}

	// The fragment is the only place: a query response mode is refused
	// rather than putting a token in a URL servers log.
	loc := implicitAnswer(t, e, b, base("token", "response_mode", "query"))
	if loc.Query().Get("error") != "unsupported_response_mode" || loc.Query().Has("access_token") || loc.Fragment != "" {
		t.Errorf("response_mode=query: redirected to %s, want unsupported_response_mode and no token", loc)
	}

	// A client that did not opt in is refused, whatever it asks.
	code := e.confidential(t, "client_secret_basic")
	for _, rt := range []string{"token", "id_token token"} {
		loc := b.get(e.issuer + "/oauth2/authorize?" + url.Values{
			"response_type": {rt}, "client_id": {code.ClientID}, "redirect_uri": {"https://app.example.com/callback"},
			"scope": {"openid"}, "state": {"s"}, "nonce": {"n"},
		}.Encode()).location(t)
		got := loc.Query().Get("error")
		if got == "" {
			got = fragment(t, loc).Get("error")
		}
		if got != "unsupported_response_type" && got != "unauthorized_client" {
			t.Errorf("response_type=%s for a code client: redirected to %s", rt, loc)
		}
	}
}

// verifyIDToken verifies an ID token against the JWKS and returns its
// claims.
func verifyIDToken(t *testing.T, e *env, token string) map[string]any {
	t.Helper()
	if token == "" {
		t.Fatal("no id_token")
	}
	_, claims := verifyWithJWKS(t, e, token)
	return claims
}

// TestImplicitRegistration: a self-registered client may not take the
// implicit flow unless the operator allows it; the metadata must agree.
func TestImplicitRegistration(t *testing.T) {
	t.Parallel()
	implicit := map[string]any{
		"client_name": "Legacy SPA", "redirect_uris": []string{legacySPACallback}, "scope": "openid",
		"grant_types": []string{"implicit"}, "response_types": []string{"id_token token"}, "token_endpoint_auth_method": "none",
	}
	e := dcrEnv(t, authz.RegistrationOpen)
	wantRegError(t, e.dcrCall(t, http.MethodPost, "/oauth2/register", "", implicit), http.StatusBadRequest, "invalid_client_metadata", "AUTHZ_REGISTRATION_IMPLICIT")

	allowed := newEnv(t, func(c *authz.Config) { c.Registration, c.RegistrationImplicit = authz.RegistrationOpen, true })
	m := allowed.dcrRegister(t, "", implicit)
	if !slices.Equal(m.GrantTypes, []string{"implicit"}) || !slices.Equal(m.ResponseTypes, []string{"id_token token"}) {
		t.Errorf("registered implicit client: %+v", m)
	}
	bad := map[string]any{
		"client_name": "Half", "redirect_uris": []string{legacySPACallback}, "scope": "openid",
		"grant_types": []string{"authorization_code"}, "response_types": []string{"code", "token"},
	}
	wantRegError(t, allowed.dcrCall(t, http.MethodPost, "/oauth2/register", "", bad), http.StatusBadRequest, "invalid_client_metadata", "implicit")
	noOpenID := map[string]any{
		"client_name": "No openid", "redirect_uris": []string{legacySPACallback}, "scope": "profile",
		"grant_types": []string{"implicit"}, "response_types": []string{"id_token"}, "token_endpoint_auth_method": "none",
	}
	wantRegError(t, allowed.dcrCall(t, http.MethodPost, "/oauth2/register", "", noOpenID), http.StatusBadRequest, "invalid_client_metadata", "openid")
}

// TestImplicitLoopbackAsksConsent: a loopback redirect may use any port
// (RFC 8252 7.3), so any local program may receive what is sent there. A
// confidential client's code is useless to it without the secret, but an
// implicit token is not: the person is asked, even with skip_consent.
func TestImplicitLoopbackAsksConsent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.createClient(t, authz.ClientMetadata{
		ClientName: "Desktop app", ApplicationType: "native", RedirectURIs: []string{"http://127.0.0.1/cb"}, GrantTypes: []string{"implicit"},
		ResponseTypes: []string{"token"}, Scope: "openid profile", TokenEndpointAuthMethod: "client_secret_basic", SkipConsent: true,
	})
	e.createUser(t, "alice")
	b := newBrowser(t)
	p := b.get(e.issuer + "/oauth2/authorize?" + url.Values{
		"response_type": {"token"}, "client_id": {c.ClientID}, "redirect_uri": {"http://127.0.0.1:49152/cb"},
		"scope": {"profile"}, "state": {"s"},
	}.Encode())
	if isLoginPage(p) {
		p = b.login(p, "alice", testPassword)
	}
	if !isConsentPage(p) {
		t.Fatalf("an implicit token for another loopback port went out without asking: %d %s", p.status, p.header.Get("Location"))
	}
}
