package authz_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	josev4 "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/authz/authz/authz"
)

// Dynamic client registration (RFC 7591) and management (RFC 7592), over
// HTTP against a real database: the policies, every refusal with its exact
// status and error code, and registered clients running the whole
// authorization-code flow.

func regPath(id string) string { return "/oauth2/register/" + url.PathEscape(id) }

func TestRegistrationDiscovery(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{authz.RegistrationOff, authz.RegistrationToken, authz.RegistrationOpen} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			e := dcrEnv(t, policy)
			r := send(t, newRequest(t, http.MethodGet, e.url("/.well-known/openid-configuration"), "", ""))
			var doc map[string]any
			if err := json.Unmarshal(r.body, &doc); err != nil || r.status != http.StatusOK {
				t.Fatalf("discovery: %v\n%s", err, r)
			}
			endpoint, advertised := doc["registration_endpoint"]
			if policy != authz.RegistrationOff {
				if endpoint != e.issuer+"/oauth2/register" {
					t.Fatalf("registration_endpoint = %v, want %s", endpoint, e.issuer+"/oauth2/register")
				}
				return
			}
			if advertised {
				t.Fatalf("registration is off but discovery advertises %v", endpoint)
			}
			for _, r := range []reply{
				e.dcrCall(t, http.MethodPost, "/oauth2/register", "", dcrWebApp()),
				e.dcrCall(t, http.MethodPost, "/oauth2/register", dcrInitialToken, dcrWebApp()),
				e.dcrCall(t, http.MethodGet, regPath("some-client"), "some-token", nil),
			} {
				if r.status != http.StatusNotFound {
					t.Errorf("with registration off: status %d, want 404\n%s", r.status, r)
				}
			}
			if n := e.count(t, `SELECT count(*) FROM clients`); n != 0 {
				t.Fatalf("%d clients exist", n)
			}
		})
	}
}

func TestRegistrationInitialAccessToken(t *testing.T) {
	t.Parallel()
	e := dcrEnv(t, authz.RegistrationToken)

	refused := []struct {
		name, authorization string
	}{
		{"no token", ""},
		{"wrong token", "Bearer not-an-initial-access-token-0123456789"},
		{"a prefix of the right token", "Bearer " + dcrInitialToken[:20]},
		{"the right token with something after it", "Bearer " + dcrInitialToken + "x"},
		{"the right token under Basic", "Basic " + base64.StdEncoding.EncodeToString([]byte(dcrInitialToken+":"))},
		{"the right token without a scheme", dcrInitialToken},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			req := newRequest(t, http.MethodPost, e.url("/oauth2/register"), "application/json", `{"redirect_uris":["https://app.example.com/callback"]}`)
			if tc.authorization != "" {
				req.Header.Set("Authorization", tc.authorization)
			}
			wantRegError(t, send(t, req), http.StatusUnauthorized, "invalid_token", "initial access token")
		})
	}
	if n := e.count(t, `SELECT count(*) FROM clients`); n != 0 {
		t.Fatalf("refused registrations created %d clients", n)
	}

	// Either configured token works; the scheme is case-insensitive.
	web := e.dcrRegister(t, dcrInitialToken, dcrWebApp())
	if web.ClientSecret == "" || web.TokenEndpointAuthMethod != "client_secret_basic" ||
		!slices.Equal(web.GrantTypes, []string{"authorization_code", "refresh_token"}) ||
		!slices.Equal(web.ResponseTypes, []string{"code"}) || !slices.Equal(web.RedirectURIs, []string{appCallback}) ||
		web.Scope != "openid profile" || web.ClientName != "Registered Web App" {
		t.Errorf("registered metadata: %+v", web)
	}
	req := newRequest(t, http.MethodPost, e.url("/oauth2/register"), "application/json; charset=utf-8", `{"redirect_uris":["https://app.example.com/callback"]}`)
	req.Header.Set("Authorization", "bearer "+dcrOtherToken)
	if r := send(t, req); r.status != http.StatusCreated {
		t.Fatalf("second initial access token: %s", r)
	}

	// With an initial access token a machine client may register, and its
	// secret works at once.
	machine := e.dcrRegister(t, dcrInitialToken, map[string]any{"client_name": "Batch job", "grant_types": []string{"client_credentials"}})
	if len(machine.RedirectURIs) != 0 || machine.ClientSecret == "" {
		t.Fatalf("machine client: %+v", machine)
	}
	tok := e.token(t, url.Values{"grant_type": {"client_credentials"}}, machine.ClientID, machine.ClientSecret)
	if tok.status != http.StatusOK || tok.AccessToken == "" {
		t.Fatalf("client_credentials for a registered machine client: %d %+v", tok.status, tok)
	}
}

func TestRegistrationOpen(t *testing.T) {
	t.Parallel()
	e := dcrEnv(t, authz.RegistrationOpen)

	// No token needed; with no scope asked for, a sign-in client gets what
	// the policy allows.
	c := e.dcrRegister(t, "", map[string]any{"redirect_uris": []string{appCallback}})
	if want := strings.Join(e.cfg.RegistrationScopes, " "); c.Scope != want {
		t.Errorf("default scope %q, want the policy's %q", c.Scope, want)
	}

	// Anyone could mint machine tokens: client_credentials needs an initial
	// access token.
	for _, grants := range [][]string{{"client_credentials"}, {"authorization_code", "client_credentials"}} {
		r := e.dcrCall(t, http.MethodPost, "/oauth2/register", "", map[string]any{"redirect_uris": []string{appCallback}, "grant_types": grants})
		wantRegError(t, r, http.StatusBadRequest, "invalid_client_metadata", "client_credentials")
	}
	if n := e.count(t, `SELECT count(*) FROM clients`); n != 1 {
		t.Fatalf("%d clients, want 1", n)
	}
}

// TestRegistrationScopePolicy narrows AUTHZ_REGISTRATION_SCOPES: a client
// registering without a scope gets only what is allowed, and one asking for
// more is refused.
func TestRegistrationScopePolicy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *authz.Config) {
		c.Registration = authz.RegistrationOpen
		c.RegistrationScopes = []string{"openid", "contacts"}
	})
	c := e.dcrRegister(t, "", map[string]any{"redirect_uris": []string{appCallback}})
	if c.Scope != "openid contacts" {
		t.Errorf("default scope %q, want %q", c.Scope, "openid contacts")
	}
	if c := e.dcrRegister(t, "", map[string]any{"redirect_uris": []string{appCallback}, "scope": " contacts  openid "}); c.Scope != "contacts openid" {
		t.Errorf("scope %q, want %q", c.Scope, "contacts openid")
	}
	r := e.dcrCall(t, http.MethodPost, "/oauth2/register", "", map[string]any{"redirect_uris": []string{appCallback}, "scope": "openid profile"})
	wantRegError(t, r, http.StatusBadRequest, "invalid_client_metadata", `"profile"`)
}

func TestRegistrationRejectsMetadata(t *testing.T) {
	t.Parallel()
	e := dcrEnv(t, authz.RegistrationToken)
	with := func(kv ...any) map[string]any {
		m := dcrWebApp()
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
				continue
			}
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privateJWKS := josev4.JSONWebKeySet{Keys: []josev4.JSONWebKey{{Key: ecKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}}

	const (
		badRequest = http.StatusBadRequest
		metadata   = "invalid_client_metadata"
		redirect   = "invalid_redirect_uri"
	)
	cases := []struct {
		name     string
		body     any
		status   int
		code     string
		mentions string
	}{
		// The body itself.
		{"invalid JSON", `{"redirect_uris": [`, badRequest, "invalid_request", "not valid JSON"},
		{"not JSON at all", `redirect_uris=https://app.example.com/callback`, badRequest, "invalid_request", "not valid JSON"},
		{"an array, not an object", `["https://app.example.com/callback"]`, badRequest, "invalid_request", "JSON object"},
		{"empty body", ``, badRequest, "invalid_request", "empty"},
		{"data after the object", `{"redirect_uris":["https://app.example.com/callback"]} {}`, badRequest, "invalid_request", "after"},
		// Wrong types and unknown fields.
		{"redirect_uris a string", `{"redirect_uris": "https://x.example/cb"}`, badRequest, metadata, `"redirect_uris" must be an array of strings`},
		{"client_name a number", `{"redirect_uris": ["https://x.example/cb"], "client_name": 5}`, badRequest, metadata, `"client_name" must be a string`},
		{"scope an array", `{"redirect_uris": ["https://x.example/cb"], "scope": ["openid"]}`, badRequest, metadata, `"scope"`},
		{"grant_types a string", `{"redirect_uris": ["https://x.example/cb"], "grant_types": "authorization_code"}`, badRequest, metadata, `"grant_types"`},
		{"request_uris (not supported)", with("request_uris", []string{"https://app.example.com/request"}), badRequest, metadata, "request_uris"},
		// Redirect URIs.
		{"http redirect to another host", with("redirect_uris", []string{"http://evil.example/cb"}), badRequest, redirect, "https"},
		{"one bad redirect among good ones", with("redirect_uris", []string{appCallback, "http://evil.example/cb"}), badRequest, redirect, "evil.example"},
		{"fragment", with("redirect_uris", []string{"https://app.example.com/callback#frag"}), badRequest, redirect, "fragment"},
		{"empty fragment", with("redirect_uris", []string{"https://app.example.com/callback#"}), badRequest, redirect, "fragment"},
		{"relative", with("redirect_uris", []string{"/callback"}), badRequest, redirect, "absolute"},
		{"no scheme", with("redirect_uris", []string{"app.example.com/callback"}), badRequest, redirect, "absolute"},
		{"javascript", with("redirect_uris", []string{"javascript:alert(1)"}), badRequest, redirect, "scheme"},
		{"private-use scheme that is not a reverse domain", with("redirect_uris", []string{"myapp:/callback"}), badRequest, redirect, "reverse domain"},
		{"wildcard host", with("redirect_uris", []string{"https://*.example.com/callback"}), badRequest, redirect, "*.example.com"},
		{"no redirect URI", with("redirect_uris", nil), badRequest, redirect, "at least one"},
		{"empty redirect URI list", with("redirect_uris", []string{}), badRequest, redirect, "at least one"},
		// Scopes.
		{"scope outside the policy", with("scope", "openid admin"), badRequest, metadata, `"admin"`},
		{"scope with a quote", with("scope", `openid "x"`), badRequest, metadata, "scope"},
		// What only an operator may set.
		{"client_id", with("client_id", "my-chosen-id"), badRequest, metadata, "client_id"},
		{"client_secret", with("client_secret", "my-chosen-secret-0123456789abcdef"), badRequest, metadata, "client_secret"},
		{"skip_consent", with("skip_consent", true), badRequest, metadata, "skip_consent"},
		{"skip_consent of the wrong type", with("skip_consent", "yes"), badRequest, metadata, "skip_consent"},
		{"audience", with("audience", []string{"https://api.example.com"}), badRequest, metadata, "audience"},
		{"access_token_lifespan", with("access_token_lifespan", 86400), badRequest, metadata, "access_token_lifespan"},
		{"refresh_token_lifespan", with("refresh_token_lifespan", 60), badRequest, metadata, "refresh_token_lifespan"},
		{"id_token_lifespan", with("id_token_lifespan", 60), badRequest, metadata, "id_token_lifespan"},
		// Grants, response types and authentication methods.
		{"public client with client_credentials", with("token_endpoint_auth_method", "none", "grant_types", []string{"authorization_code", "client_credentials"}), badRequest, metadata, "client_credentials"},
		{"unknown grant type", with("grant_types", []string{"password"}), badRequest, metadata, `"password"`},
		{"implicit response type", with("response_types", []string{"token"}), badRequest, metadata, "need grant type implicit"},
		{"code response type without the code grant", with("grant_types", []string{"client_credentials"}, "response_types", []string{"code"}), badRequest, metadata, "go together"},
		{"refresh_token alone", with("grant_types", []string{"refresh_token"}), badRequest, metadata, "refresh_token"},
		{"unknown auth method", with("token_endpoint_auth_method", "tls_client_auth"), badRequest, metadata, "token_endpoint_auth_method"},
		{"private_key_jwt without keys", with("token_endpoint_auth_method", "private_key_jwt"), badRequest, metadata, "jwks"},
		{"private_key_jwt with a private key", with("token_endpoint_auth_method", "private_key_jwt", "jwks", privateJWKS), badRequest, metadata, "private"},
		{"private_key_jwt with a key of another algorithm", with("token_endpoint_auth_method", "private_key_jwt", "jwks", josev4.JSONWebKeySet{Keys: []josev4.JSONWebKey{{Key: &ecKey.PublicKey, KeyID: "k1", Use: "sig"}}}, "token_endpoint_auth_signing_alg", "RS256"), badRequest, metadata, "RS256"},
		{"jwks without private_key_jwt", with("jwks", josev4.JSONWebKeySet{Keys: []josev4.JSONWebKey{{Key: &ecKey.PublicKey, KeyID: "k1", Use: "sig"}}}), badRequest, metadata, "private_key_jwt"},
		{"jwks_uri over http", with("token_endpoint_auth_method", "private_key_jwt", "jwks_uri", "http://keys.example.com/jwks.json"), badRequest, metadata, "jwks_uri"},
		// Other metadata.
		{"logo_uri over http", with("logo_uri", "http://app.example.com/logo.png"), badRequest, metadata, "logo_uri"},
		{"client_name with a control character", with("client_name", "App\u0007"), badRequest, metadata, "client_name"},
		{"too many redirect URIs", with("redirect_uris", slices.Repeat([]string{appCallback}, 21)), badRequest, redirect, "at most"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := e.dcrCall(t, http.MethodPost, "/oauth2/register", dcrInitialToken, tc.body)
			wantRegError(t, r, tc.status, tc.code, tc.mentions)
		})
	}
	t.Run("wrong Content-Type", func(t *testing.T) {
		t.Parallel()
		req := newRequest(t, http.MethodPost, e.url("/oauth2/register"), "application/x-www-form-urlencoded", `redirect_uris=https://app.example.com/callback`)
		req.Header.Set("Authorization", "Bearer "+dcrInitialToken)
		wantRegError(t, send(t, req), http.StatusUnsupportedMediaType, "invalid_request", "application/json")
	})
	t.Run("body too large", func(t *testing.T) {
		t.Parallel()
		body := `{"client_name": "` + strings.Repeat("x", 70<<10) + `"}`
		wantRegError(t, e.dcrCall(t, http.MethodPost, "/oauth2/register", dcrInitialToken, body), http.StatusRequestEntityTooLarge, "invalid_request", "larger")
	})
	t.Cleanup(func() {
		if n := e.count(t, `SELECT count(*) FROM clients`); n != 0 {
			t.Errorf("refused registrations created %d clients", n)
		}
	})
}

// TestRegistrationNativeApp registers the redirect URIs of RFC 8252: a
// private-use scheme and loopback addresses over plain http, on any port.
func TestRegistrationNativeApp(t *testing.T) {
	t.Parallel()
	e := dcrEnv(t, authz.RegistrationOpen)
	uris := []string{"com.example.app:/oauth/callback", "http://127.0.0.1:49152/cb", "http://127.0.0.1/cb", "http://localhost:8400/cb", "http://[::1]:8400/cb"}
	c := e.dcrRegister(t, "", map[string]any{
		"client_name": "Native App", "application_type": "native", "redirect_uris": uris, "token_endpoint_auth_method": "none",
		"scope": "openid offline_access",
	})
	if !slices.Equal(c.RedirectURIs, uris) || c.TokenEndpointAuthMethod != "none" {
		t.Fatalf("registered %+v", c)
	}
	if c.ClientSecret != "" || c.ClientSecretExpiresAt != nil {
		t.Fatalf("a public client got a secret: %+v", c)
	}
}

// TestRegistrationTokenStoredHashed: neither the registration access token
// nor the client secret is stored; the token's SHA-256 is.
func TestRegistrationTokenStoredHashed(t *testing.T) {
	t.Parallel()
	e := dcrEnv(t, authz.RegistrationToken)
	c := e.dcrRegister(t, dcrInitialToken, dcrWebApp())
	var hash string
	if err := e.pool.QueryRow(context.Background(), `SELECT registration_token_hash FROM clients WHERE id = $1`, c.ClientID).Scan(&hash); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(hash) || hash == c.RegistrationAccessToken {
		t.Fatalf("registration_token_hash %q is not a SHA-256 in hex", hash)
	}
	if sum := sha256.Sum256([]byte(c.RegistrationAccessToken)); hash != hex.EncodeToString(sum[:]) {
		t.Fatalf("registration_token_hash is not the SHA-256 of the token")
	}
	for what, plain := range map[string]string{"registration access token": c.RegistrationAccessToken, "client secret": c.ClientSecret} {
		if n := e.count(t, `SELECT count(*) FROM clients c WHERE strpos(c::text, $1) > 0`, plain); n != 0 {
			t.Errorf("the %s is stored in plain text", what)
		}
	}
	// Operator-made clients have no registration token.
	op := e.confidential(t, "client_secret_basic")
	if n := e.count(t, `SELECT count(*) FROM clients WHERE id = $1 AND registration_token_hash = ''`, op.ClientID); n != 1 {
		t.Fatalf("an operator-made client has a registration token hash")
	}
}

func TestRegistrationRead(t *testing.T) {
	t.Parallel()
	e := dcrEnv(t, authz.RegistrationToken)
	c := e.dcrRegister(t, dcrInitialToken, dcrWebApp())
	got := dcrClient(t, e.dcrCall(t, http.MethodGet, regPath(c.ClientID), c.RegistrationAccessToken, nil), http.StatusOK)
	if got.ClientID != c.ClientID || got.ClientName != c.ClientName || !slices.Equal(got.RedirectURIs, c.RedirectURIs) ||
		got.Scope != c.Scope || got.TokenEndpointAuthMethod != c.TokenEndpointAuthMethod || got.ClientIDIssuedAt != c.ClientIDIssuedAt ||
		!slices.Equal(got.GrantTypes, c.GrantTypes) {
		t.Errorf("GET returned %+v, registered %+v", got, c)
	}
	if got.RegistrationAccessToken != c.RegistrationAccessToken || got.RegistrationClientURI != c.RegistrationClientURI {
		t.Errorf("GET registration fields %q %q, want %q %q", got.RegistrationAccessToken, got.RegistrationClientURI, c.RegistrationAccessToken, c.RegistrationClientURI)
	}
	if got.ClientSecret != "" {
		t.Errorf("GET shows a client secret; only its hash is stored")
	}
}

// TestRegistrationManagementRefused: every way of presenting the wrong
// registration access token is the same 401, so the endpoint tells nobody
// which clients exist, and nothing changes.
func TestRegistrationManagementRefused(t *testing.T) {
	t.Parallel()
	e := dcrEnv(t, authz.RegistrationToken)
	a := e.dcrRegister(t, dcrInitialToken, dcrWebApp())
	b := e.dcrRegister(t, dcrInitialToken, dcrWebApp())
	op := e.confidential(t, "client_secret_basic")

	cases := []struct {
		name, id, authorization string
	}{
		{"no token", a.ClientID, ""},
		{"wrong token", a.ClientID, "Bearer not-the-registration-access-token"},
		{"initial access token", a.ClientID, "Bearer " + dcrInitialToken},
		{"token of another client", a.ClientID, "Bearer " + b.RegistrationAccessToken},
		{"client secret as token", a.ClientID, "Bearer " + a.ClientSecret},
		{"right token under Basic", a.ClientID, "Basic " + base64.StdEncoding.EncodeToString([]byte(a.ClientID+":"+a.RegistrationAccessToken))},
		{"unknown client", "no-such-client", "Bearer " + a.RegistrationAccessToken},
		{"operator-made client", op.ClientID, "Bearer " + a.RegistrationAccessToken},
		{"operator-made client, its secret as token", op.ClientID, "Bearer " + op.ClientSecret},
		{"operator-made client, empty token", op.ClientID, "Bearer "},
	}
	var first []byte
	for _, method := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		for _, tc := range cases {
			t.Run(method+" "+tc.name, func(t *testing.T) {
				body := ""
				if method == http.MethodPut {
					b, _ := json.Marshal(map[string]any{"client_id": tc.id, "redirect_uris": []string{appCallback}, "client_name": "Hijacked"})
					body = string(b)
				}
				req := newRequest(t, method, e.url(regPath(tc.id)), "application/json", body)
				if tc.authorization != "" {
					req.Header.Set("Authorization", tc.authorization)
				}
				r := send(t, req)
				wantRegError(t, r, http.StatusUnauthorized, "invalid_token", "registration access token")
				if first == nil {
					first = r.body
				} else if string(r.body) != string(first) {
					t.Errorf("answers differ, which tells what exists:\n%s\n%s", first, r.body)
				}
			})
		}
	}
	for _, id := range []string{a.ClientID, b.ClientID, op.ClientID} {
		if n := e.count(t, `SELECT count(*) FROM clients WHERE id = $1 AND name <> 'Hijacked'`, id); n != 1 {
			t.Fatalf("client %s was changed or deleted by a refused request", id)
		}
	}
	dcrClient(t, e.dcrCall(t, http.MethodGet, regPath(a.ClientID), a.RegistrationAccessToken, nil), http.StatusOK)
}

// TestRegistrationUpdate replaces a client's metadata (RFC 7592 2.2): the
// client sends back what it read, changed; refusals leave it as it was.
func TestRegistrationUpdate(t *testing.T) {
	t.Parallel()
	e := dcrEnv(t, authz.RegistrationToken)
	c := e.dcrRegister(t, dcrInitialToken, dcrWebApp())
	b := e.dcrRegister(t, dcrInitialToken, dcrWebApp())
	path := regPath(c.ClientID)

	// What GET returned, as a client library would hold it.
	read := func(t *testing.T) map[string]any {
		t.Helper()
		r := e.dcrCall(t, http.MethodGet, path, c.RegistrationAccessToken, nil)
		var m map[string]any
		if err := json.Unmarshal(r.body, &m); err != nil || r.status != http.StatusOK {
			t.Fatalf("GET: %v\n%s", err, r)
		}
		return m
	}
	with := func(base map[string]any, kv ...any) map[string]any {
		m := map[string]any{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
				continue
			}
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	before := read(t)

	const (
		metadata = "invalid_client_metadata"
		redirect = "invalid_redirect_uri"
	)
	refused := []struct {
		name     string
		body     any
		code     string
		mentions string
	}{
		{"no client_id", with(before, "client_id", nil, "client_name", "Changed"), metadata, "client_id"},
		{"another client's id", with(before, "client_id", b.ClientID, "client_name", "Changed"), metadata, "client_id"},
		{"wrong client_secret", with(before, "client_secret", "not-the-secret", "client_name", "Changed"), metadata, "client_secret"},
		{"another client's secret", with(before, "client_secret", b.ClientSecret, "client_name", "Changed"), metadata, "client_secret"},
		{"http redirect", with(before, "redirect_uris", []string{"http://evil.example/cb"}), redirect, "https"},
		{"fragment", with(before, "redirect_uris", []string{appCallback + "#x"}), redirect, "fragment"},
		{"scope outside the policy", with(before, "scope", "openid admin"), metadata, `"admin"`},
		{"skip_consent", with(before, "skip_consent", true), metadata, "skip_consent"},
		{"audience", with(before, "audience", []string{"https://api.example.com"}), metadata, "audience"},
		{"wrong type", with(before, "redirect_uris", appCallback), metadata, "redirect_uris"},
		{"public client with client_credentials", with(before, "token_endpoint_auth_method", "none", "grant_types", []string{"authorization_code", "client_credentials"}), metadata, "client_credentials"},
		{"invalid JSON", `{"client_id": "` + c.ClientID + `",`, "invalid_request", "JSON"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			wantRegError(t, e.dcrCall(t, http.MethodPut, path, c.RegistrationAccessToken, tc.body), http.StatusBadRequest, tc.code, tc.mentions)
		})
	}
	if after := read(t); !jsonEqual(t, before, after) {
		t.Fatalf("refused updates changed the client:\nbefore %v\nafter  %v", before, after)
	}

	// The registration response itself, sent back as it came (with its
	// secret and read-only fields), changes nothing.
	echo := dcrClient(t, e.dcrCall(t, http.MethodPut, path, c.RegistrationAccessToken, c), http.StatusOK)
	if echo.ClientName != c.ClientName || !slices.Equal(echo.RedirectURIs, c.RedirectURIs) || echo.Scope != c.Scope {
		t.Fatalf("PUT of the registration response: %+v", echo)
	}

	// The client echoes everything it read, with its secret, and changes
	// its name and redirect URIs.
	newURIs := []string{"https://app.example.com/cb2", "https://app.example.com/cb3"}
	r := e.dcrCall(t, http.MethodPut, path, c.RegistrationAccessToken,
		with(before, "client_secret", c.ClientSecret, "client_name", "Renamed App", "redirect_uris", newURIs))
	got := dcrClient(t, r, http.StatusOK)
	if got.ClientName != "Renamed App" || !slices.Equal(got.RedirectURIs, newURIs) || got.ClientID != c.ClientID ||
		got.RegistrationAccessToken != c.RegistrationAccessToken || got.RegistrationClientURI != c.RegistrationClientURI {
		t.Fatalf("PUT returned %+v", got)
	}
	if got.ClientSecret != "" {
		t.Errorf("PUT returned a secret though the client kept its own")
	}
	if m := read(t); m["client_name"] != "Renamed App" {
		t.Fatalf("GET after PUT: %v", m)
	}
	wantActive(t, e, c, "not-a-token", false, "introspection with the kept secret")

	// A full replacement: what is left out takes its default.
	got = dcrClient(t, e.dcrCall(t, http.MethodPut, path, c.RegistrationAccessToken,
		map[string]any{"client_id": c.ClientID, "redirect_uris": newURIs}), http.StatusOK)
	if got.ClientName != "" || got.Scope != strings.Join(e.cfg.RegistrationScopes, " ") {
		t.Errorf("a PUT leaving fields out kept them: %+v", got)
	}

	// Becoming a public client drops the secret; coming back gets a new one,
	// shown once in the PUT response.
	got = dcrClient(t, e.dcrCall(t, http.MethodPut, path, c.RegistrationAccessToken,
		map[string]any{"client_id": c.ClientID, "redirect_uris": newURIs, "token_endpoint_auth_method": "none"}), http.StatusOK)
	if got.TokenEndpointAuthMethod != "none" || got.ClientSecret != "" {
		t.Fatalf("PUT to a public client: %+v", got)
	}
	if n := e.count(t, `SELECT count(*) FROM clients WHERE id = $1 AND secret_hash = ''`, c.ClientID); n != 1 {
		t.Fatalf("a public client kept its secret's hash")
	}
	got = dcrClient(t, e.dcrCall(t, http.MethodPut, path, c.RegistrationAccessToken,
		map[string]any{"client_id": c.ClientID, "redirect_uris": newURIs, "token_endpoint_auth_method": "client_secret_post"}), http.StatusOK)
	if got.ClientSecret == "" || got.ClientSecret == c.ClientSecret || got.ClientSecretExpiresAt == nil || *got.ClientSecretExpiresAt != 0 {
		t.Fatalf("PUT back to a confidential client: want a new secret, got %+v", got)
	}
	wantActive(t, e, got, "not-a-token", false, "introspection with the new secret")
}

// jsonEqual compares two decoded JSON documents.
func jsonEqual(t *testing.T, a, b map[string]any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(ja) == string(jb)
}

// TestRegistrationOperatorSettingsKept: what an operator gave a registered
// client (skip_consent, an audience, a lifespan, a scope beyond the policy)
// survives the client's own updates; the client may echo it, not change it.
func TestRegistrationOperatorSettingsKept(t *testing.T) {
	t.Parallel()
	e := dcrEnv(t, authz.RegistrationOpen)
	c := e.dcrRegister(t, "", dcrWebApp())
	if _, err := authz.UpdateClient(context.Background(), e.store, c.ClientID, authz.ClientMetadata{
		ClientName: "Registered Web App", RedirectURIs: []string{appCallback}, Scope: "openid profile contacts",
		SkipConsent: true, Audience: []string{"https://api.example.com"}, AccessTokenLifespan: 600,
	}); err != nil {
		t.Fatal(err)
	}
	path := regPath(c.ClientID)
	r := e.dcrCall(t, http.MethodGet, path, c.RegistrationAccessToken, nil)
	var read map[string]any
	if err := json.Unmarshal(r.body, &read); err != nil || r.status != http.StatusOK {
		t.Fatalf("GET after the operator's change: %v\n%s", err, r)
	}
	if read["skip_consent"] != true || read["access_token_lifespan"] != float64(600) {
		t.Fatalf("GET does not show the operator's settings: %v", read)
	}

	// Echoing everything back is fine.
	read["client_name"] = "Renamed"
	got := dcrClient(t, e.dcrCall(t, http.MethodPut, path, c.RegistrationAccessToken, read), http.StatusOK)
	if got.ClientName != "Renamed" || !got.SkipConsent || !slices.Equal(got.Audience, []string{"https://api.example.com"}) ||
		got.AccessTokenLifespan != 600 || got.Scope != "openid profile contacts" {
		t.Fatalf("echo PUT: %+v", got)
	}
	// Leaving them out keeps them.
	got = dcrClient(t, e.dcrCall(t, http.MethodPut, path, c.RegistrationAccessToken,
		map[string]any{"client_id": c.ClientID, "redirect_uris": []string{appCallback}, "scope": "openid"}), http.StatusOK)
	if !got.SkipConsent || len(got.Audience) != 1 || got.AccessTokenLifespan != 600 || got.Scope != "openid" {
		t.Fatalf("PUT without the operator's fields: %+v", got)
	}
	// Changing them is refused, and a scope once dropped cannot come back.
	for _, tc := range []struct {
		field string
		value any
	}{
		{"skip_consent", false},
		{"audience", []string{"https://other.example.com"}},
		{"access_token_lifespan", 86400},
		{"scope", "openid contacts"},
	} {
		body := map[string]any{"client_id": c.ClientID, "redirect_uris": []string{appCallback}, tc.field: tc.value}
		r := e.dcrCall(t, http.MethodPut, path, c.RegistrationAccessToken, body)
		wantRegError(t, r, http.StatusBadRequest, "invalid_client_metadata", tc.field)
	}
}

func TestRegistrationDelete(t *testing.T) {
	t.Parallel()
	e := dcrEnv(t, authz.RegistrationToken)
	c := e.dcrRegister(t, dcrInitialToken, dcrWebApp())
	other := e.dcrRegister(t, dcrInitialToken, dcrWebApp())
	rs := e.resourceServer(t)
	e.createUser(t, "alice")

	// Tokens issued before the deletion.
	loc := authorizeCode(t, e, newBrowser(t), c.ClientID, map[string]string{
		"response_type": "code", "client_id": c.ClientID, "scope": "openid",
		"redirect_uri": appCallback, "state": "state-1",
	}, "alice")
	tok := e.token(t, exchangeForm(loc.Query().Get("code"), appCallback), c.ClientID, c.ClientSecret)
	if tok.status != http.StatusOK || tok.AccessToken == "" || tok.RefreshToken == "" {
		t.Fatalf("token exchange: %d %+v", tok.status, tok)
	}
	wantActive(t, e, rs, tok.AccessToken, true, "the access token before the deletion")

	r := e.dcrCall(t, http.MethodDelete, regPath(c.ClientID), c.RegistrationAccessToken, nil)
	if r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("DELETE: want 204 with no body, got %s", r)
	}
	for _, method := range []string{http.MethodGet, http.MethodDelete} {
		wantRegError(t, e.dcrCall(t, method, regPath(c.ClientID), c.RegistrationAccessToken, nil), http.StatusUnauthorized, "invalid_token", "registration access token")
	}
	wantRegError(t, e.dcrCall(t, http.MethodPut, regPath(c.ClientID), c.RegistrationAccessToken, map[string]any{"client_id": c.ClientID, "redirect_uris": []string{appCallback}}),
		http.StatusUnauthorized, "invalid_token", "registration access token")

	// The client cannot get tokens, and what it had is gone.
	wantOAuthError(t, post(t, e.url("/oauth2/token"), refreshForm(tok.RefreshToken), c.ClientID, c.ClientSecret), http.StatusUnauthorized, "invalid_client")
	wantOAuthError(t, post(t, e.url("/oauth2/token"), url.Values{"grant_type": {"client_credentials"}}, c.ClientID, c.ClientSecret), http.StatusUnauthorized, "invalid_client")
	p := newBrowser(t).get(authorizeURL(e.issuer, map[string]string{"response_type": "code", "client_id": c.ClientID, "redirect_uri": appCallback, "scope": "openid", "state": "s"}))
	if p.status < 400 || p.header.Get("Location") != "" {
		t.Fatalf("authorize for a deleted client: want an error page, got %d %s", p.status, p.header.Get("Location"))
	}
	wantActive(t, e, rs, tok.AccessToken, false, "the access token of a deleted client")
	if n := e.count(t, `SELECT count(*) FROM clients WHERE id = $1`, c.ClientID); n != 0 {
		t.Fatalf("the client is still stored")
	}
	// Another registered client is untouched.
	dcrClient(t, e.dcrCall(t, http.MethodGet, regPath(other.ClientID), other.RegistrationAccessToken, nil), http.StatusOK)
}

func TestRegistrationCORS(t *testing.T) {
	t.Parallel()
	e := dcrEnv(t, authz.RegistrationOpen)
	for _, path := range []string{"/oauth2/register", regPath("some-client")} {
		req := newRequest(t, http.MethodOptions, e.url(path), "", "")
		req.Header.Set("Origin", "https://spa.example")
		req.Header.Set("Access-Control-Request-Method", http.MethodPut)
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		r := send(t, req)
		if r.status != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("preflight for %s: %s", path, r)
		}
	}
}

// TestRegisteredPublicClientFlow: a native app registers itself and signs a
// person in with the authorization code flow and PKCE.
func TestRegisteredPublicClientFlow(t *testing.T) {
	t.Parallel()
	e := dcrEnv(t, authz.RegistrationOpen)
	app := e.dcrRegister(t, "", map[string]any{
		"client_name":                "Native App",
		"application_type":           "native",
		"redirect_uris":              []string{spaCallback, "com.example.app:/oauth/callback"},
		"token_endpoint_auth_method": "none",
		"scope":                      "openid profile offline_access",
	})
	if app.ClientSecret != "" {
		t.Fatalf("a public client got a secret")
	}
	rs := e.resourceServer(t)
	alice := e.createUser(t, "alice")
	b := newBrowser(t)

	// Without PKCE the request is refused before anyone signs in.
	loc := b.get(authorizeURL(e.issuer, map[string]string{
		"response_type": "code", "client_id": app.ClientID, "redirect_uri": spaCallback, "scope": "openid", "state": "no-pkce",
	})).location(t)
	if loc.Query().Get("error") != "invalid_request" || loc.Query().Get("code") != "" {
		t.Fatalf("authorize without PKCE: redirected to %s", loc)
	}

	verifier, challenge := pkcePair()
	loc = authorizeCode(t, e, b, app.ClientID, map[string]string{
		"response_type": "code", "client_id": app.ClientID, "redirect_uri": spaCallback,
		"scope": "openid profile offline_access", "state": "with-pkce",
		"code_challenge": challenge, "code_challenge_method": "S256",
	}, "alice")
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != spaCallback || loc.Query().Get("state") != "with-pkce" {
		t.Fatalf("redirected to %s", loc)
	}
	form := exchangeForm(loc.Query().Get("code"), spaCallback)
	form.Set("client_id", app.ClientID)
	form.Set("code_verifier", verifier)
	tok := e.token(t, form, "", "")
	if tok.status != http.StatusOK || tok.AccessToken == "" || tok.RefreshToken == "" {
		t.Fatalf("token exchange: %d %+v", tok.status, tok)
	}
	info := e.introspect(t, tok.AccessToken, rs.ClientID, rs.ClientSecret)
	if info["active"] != true || info["client_id"] != app.ClientID || info["sub"] != alice.ID || info["scope"] != "openid profile offline_access" {
		t.Fatalf("introspection: %v", info)
	}
	refresh := refreshForm(tok.RefreshToken)
	refresh.Set("client_id", app.ClientID)
	if tok2 := e.token(t, refresh, "", ""); tok2.status != http.StatusOK || tok2.AccessToken == "" {
		t.Fatalf("refresh: %d %+v", tok2.status, tok2)
	}
}

// dcrAssertion is a private_key_jwt client assertion (RFC 7523 3) signed
// with key.
func dcrAssertion(t *testing.T, key *ecdsa.PrivateKey, kid, clientID, audience string) string {
	t.Helper()
	signer, err := josev4.NewSigner(josev4.SigningKey{Algorithm: josev4.ES256, Key: key},
		(&josev4.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s, err := jwt.Signed(signer).Claims(jwt.Claims{
		Issuer: clientID, Subject: clientID, Audience: jwt.Audience{audience}, ID: rand.Text(),
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute)),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func withAssertion(form url.Values, assertion string) url.Values {
	form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
	form.Set("client_assertion", assertion)
	return form
}

// TestRegisteredPrivateKeyJWTClientFlow: a client registers its public key
// and signs people in with PKCE, authenticating at the token endpoint with
// a signed assertion instead of a secret.
func TestRegisteredPrivateKeyJWTClientFlow(t *testing.T) {
	t.Parallel()
	e := dcrEnv(t, authz.RegistrationToken)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks := josev4.JSONWebKeySet{Keys: []josev4.JSONWebKey{{Key: &key.PublicKey, KeyID: "app-key-1", Algorithm: "ES256", Use: "sig"}}}
	app := e.dcrRegister(t, dcrInitialToken, map[string]any{
		"client_name":                "Key-holding App",
		"redirect_uris":              []string{appCallback},
		"scope":                      "openid profile",
		"token_endpoint_auth_method": "private_key_jwt",
		"jwks":                       jwks,
	})
	if app.ClientSecret != "" || app.TokenEndpointAuthSigningAlg != "ES256" || len(app.JWKS) == 0 {
		t.Fatalf("registered %+v", app)
	}
	rs := e.resourceServer(t)
	alice := e.createUser(t, "alice")
	tokenURL := e.url("/oauth2/token")

	verifier, challenge := pkcePair()
	loc := authorizeCode(t, e, newBrowser(t), app.ClientID, map[string]string{
		"response_type": "code", "client_id": app.ClientID, "redirect_uri": appCallback,
		"scope": "openid profile", "state": "pkj-state",
		"code_challenge": challenge, "code_challenge_method": "S256",
	}, "alice")
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in %s", loc)
	}

	// A key the client never registered does not authenticate it (and does
	// not spend the code).
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	form := exchangeForm(code, appCallback)
	form.Set("code_verifier", verifier)
	wantOAuthError(t, post(t, tokenURL, withAssertion(form, dcrAssertion(t, other, "app-key-1", app.ClientID, tokenURL)), "", ""),
		http.StatusUnauthorized, "invalid_client")

	assertion := dcrAssertion(t, key, "app-key-1", app.ClientID, tokenURL)
	tok := e.token(t, withAssertion(form, assertion), "", "")
	if tok.status != http.StatusOK || tok.AccessToken == "" {
		t.Fatalf("token exchange with a client assertion: %d %+v", tok.status, tok)
	}
	info := e.introspect(t, tok.AccessToken, rs.ClientID, rs.ClientSecret)
	if info["active"] != true || info["client_id"] != app.ClientID || info["sub"] != alice.ID || info["scope"] != "openid profile" {
		t.Fatalf("introspection: %v", info)
	}

	// The same assertion cannot be used twice (its jti is remembered).
	wantOAuthError(t, post(t, e.url("/oauth2/introspect"), withAssertion(url.Values{"token": {tok.AccessToken}}, assertion), "", ""),
		http.StatusUnauthorized, "invalid_client")
	r := post(t, e.url("/oauth2/introspect"), withAssertion(url.Values{"token": {tok.AccessToken}}, dcrAssertion(t, key, "app-key-1", app.ClientID, tokenURL)), "", "")
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"active":true`) {
		t.Fatalf("introspection authenticated by a fresh assertion: %s", r)
	}
}

// TestRegistrationJWKSBytes: a key set holding what PostgreSQL's jsonb
// cannot store (a NUL) was a 500; a NUL in a key's kid is refused, and
// members go-jose does not know are not stored at all.
func TestRegistrationJWKSBytes(t *testing.T) {
	t.Parallel()
	e := dcrEnv(t, authz.RegistrationOpen)
	key := newECKey(t, "k1")
	jwk, err := json.Marshal(key.public())
	if err != nil {
		t.Fatal(err)
	}
	withMember := func(member string) string {
		return `{"client_name": "Keys", "redirect_uris": ["` + appCallback + `"], "token_endpoint_auth_method": "private_key_jwt",
			"jwks": {"keys": [` + strings.TrimSuffix(string(jwk), "}") + `, ` + member + `}]}}`
	}
	r := e.dcrCall(t, http.MethodPost, "/oauth2/register", "", strings.Replace(withMember(`"note": 1`), `"kid":"k1"`, `"kid":"k\u0000"`, 1))
	wantRegError(t, r, http.StatusBadRequest, "invalid_client_metadata", "control characters")

	m := dcrClient(t, e.dcrCall(t, http.MethodPost, "/oauth2/register", "", withMember(`"note": "\u0000"`)), http.StatusCreated)
	if strings.Contains(string(m.JWKS), `"note"`) {
		t.Errorf("an unknown key member was stored: %s", m.JWKS)
	}
	// The client authenticates with the key it registered.
	c := assertionClaims(m.ClientID, e.issuer)
	resp, body := postForm(t, e.url("/oauth2/revoke"), url.Values{
		"token": {"unknown"}, "client_id": {m.ClientID},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {key.sign(t, c)},
	}, "", "")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("revoke with the registered key: %d %s", resp.StatusCode, body)
	}
}

// TestRegisteredClientLogoutRedirect: after logout, a self-registered
// client's post_logout_redirect_uri is offered as a link, not followed, so
// that open registration does not make the server an open redirector.
func TestRegisteredClientLogoutRedirect(t *testing.T) {
	t.Parallel()
	e := dcrEnv(t, authz.RegistrationOpen)
	m := e.dcrRegister(t, "", map[string]any{
		"client_name": "Phisher", "redirect_uris": []string{"https://evil.example/cb"},
		"post_logout_redirect_uris": []string{"https://evil.example/phish"}, "token_endpoint_auth_method": "none",
	})
	p := newBrowser(t).get(logoutURL(e, map[string]string{
		"client_id": m.ClientID, "post_logout_redirect_uri": "https://evil.example/phish", "state": "s1",
	}))
	if p.status != http.StatusOK {
		t.Fatalf("logout for a self-registered client: %d, want the signed-out page (Location %q)", p.status, p.header.Get("Location"))
	}
	if !strings.Contains(p.body, `href="https://evil.example/phish?state=s1"`) || !strings.Contains(p.body, "Continue to Phisher") {
		t.Errorf("the signed-out page does not offer the client's address:\n%s", p.body)
	}
}
