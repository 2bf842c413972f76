package authz_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/authz/authz/authz"
)

// authorizeCode runs the browser part of the flow for a fresh user session:
// authorize → login page → POST → 303 → consent page → Allow → redirect.
func authorizeCode(t *testing.T, e *env, b *browser, client string, params map[string]string, username string) *url.URL {
	t.Helper()
	p := b.get(authorizeURL(e.issuer, params))
	if isLoginPage(p) {
		p = b.login(p, username, testPassword)
	}
	if isConsentPage(p) {
		return b.consent(p, "allow")
	}
	return p.location(t)
}

func TestConfidentialFlow(t *testing.T) {
	t.Parallel()
	for _, method := range []string{"client_secret_basic", "client_secret_post"} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			client := e.confidential(t, method)
			rs := e.resourceServer(t)
			alice := e.createUser(t, "alice")
			b := newBrowser(t)

			state := "xyz-ÄÖ +/=&state"
			loc := authorizeCode(t, e, b, client.ClientID, map[string]string{
				"response_type": "code", "client_id": client.ClientID, "scope": "openid contacts",
				"redirect_uri": "https://app.example.com/callback", "state": state,
			}, "alice")
			if got := loc.Scheme + "://" + loc.Host + loc.Path; got != "https://app.example.com/callback" {
				t.Fatalf("redirected to %s", loc)
			}
			if loc.Query().Get("state") != state {
				t.Fatalf("state = %q, want %q", loc.Query().Get("state"), state)
			}
			code := loc.Query().Get("code")
			if code == "" {
				t.Fatalf("no code in %s", loc)
			}

			form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {"https://app.example.com/callback"}}
			var id, secret string
			if method == "client_secret_basic" {
				id, secret = client.ClientID, client.ClientSecret
			} else {
				form.Set("client_id", client.ClientID)
				form.Set("client_secret", client.ClientSecret)
			}
			tok := e.token(t, form, id, secret)
			if tok.status != http.StatusOK || tok.AccessToken == "" || tok.RefreshToken == "" {
				t.Fatalf("token exchange: %d %+v", tok.status, tok)
			}
			if cc := tok.header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
			if !strings.EqualFold(tok.TokenType, "bearer") || tok.Scope != "openid contacts" {
				t.Errorf("token_type %q scope %q", tok.TokenType, tok.Scope)
			}

			info := e.introspect(t, tok.AccessToken, rs.ClientID, rs.ClientSecret)
			if info["active"] != true || info["sub"] != alice.ID || info["client_id"] != client.ClientID ||
				info["scope"] != "openid contacts" || info["token_type"] != "Bearer" || info["iss"] != e.issuer {
				t.Fatalf("introspection: %v", info)
			}
			if _, ok := info["exp"].(float64); !ok {
				t.Errorf("introspection has no exp: %v", info)
			}

			// Refresh: a new pair; the old refresh token is spent.
			refreshForm := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}
			if method == "client_secret_post" {
				refreshForm.Set("client_id", client.ClientID)
				refreshForm.Set("client_secret", client.ClientSecret)
			}
			tok2 := e.token(t, refreshForm, id, secret)
			if tok2.status != http.StatusOK || tok2.AccessToken == "" || tok2.RefreshToken == "" || tok2.RefreshToken == tok.RefreshToken {
				t.Fatalf("refresh: %d %+v", tok2.status, tok2)
			}
			if info := e.introspect(t, tok.AccessToken, rs.ClientID, rs.ClientSecret); info["active"] != false {
				t.Errorf("the access token of a rotated refresh token is still active: %v", info)
			}
			// Refresh tokens are active only to the client that owns them.
			wantActive(t, e, client, tok2.RefreshToken, true, "the new refresh token, to its own client")
			wantActive(t, e, rs, tok2.RefreshToken, false, "a refresh token, to a client it was not issued to")
			wantActive(t, e, client, tok.RefreshToken, false, "a rotated refresh token")
			if info := e.introspect(t, tok2.AccessToken, rs.ClientID, rs.ClientSecret); info["active"] != true {
				t.Fatalf("refreshed access token inactive: %v", info)
			}

			// Revoke the refresh token: the grant's access token goes too.
			revokeForm := url.Values{"token": {tok2.RefreshToken}}
			if method == "client_secret_post" {
				revokeForm.Set("client_id", client.ClientID)
				revokeForm.Set("client_secret", client.ClientSecret)
			}
			resp, body := postForm(t, e.url("/oauth2/revoke"), revokeForm, id, secret)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("revoke: %d %s", resp.StatusCode, body)
			}
			wantActive(t, e, rs, tok2.AccessToken, false, "the access token of a revoked refresh token")
			wantActive(t, e, client, tok2.RefreshToken, false, "a revoked refresh token, to its own client")
		})
	}
}

func pkcePair() (verifier, challenge string) {
	verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-long-enough-verifier"
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

func TestPublicClientPKCE(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	spa := e.createClient(t, authzPublicClient())
	e.createUser(t, "bob")
	b := newBrowser(t)
	verifier, challenge := pkcePair()

	// No state at all: allowed because PKCE protects the flow (OAuth 2.1).
	loc := authorizeCode(t, e, b, spa.ClientID, map[string]string{
		"response_type": "code", "client_id": spa.ClientID, "scope": "openid",
		"redirect_uri": "http://127.0.0.1:5173/callback", "code_challenge": challenge, "code_challenge_method": "S256",
	}, "bob")
	if _, ok := loc.Query()["state"]; ok {
		t.Errorf("state appeared from nowhere: %s", loc)
	}
	tok := e.token(t, url.Values{
		"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "client_id": {spa.ClientID},
		"redirect_uri": {"http://127.0.0.1:5173/callback"}, "code_verifier": {verifier},
	}, "", "")
	if tok.status != http.StatusOK || tok.AccessToken == "" {
		t.Fatalf("public exchange: %d %+v", tok.status, tok)
	}
}

// TestOAuth2Library drives the exchange with golang.org/x/oauth2, as a Go
// relying party would.
func TestOAuth2Library(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := e.confidential(t, "client_secret_basic")
	e.createUser(t, "carol")
	conf := &oauth2.Config{
		ClientID: client.ClientID, ClientSecret: client.ClientSecret,
		Endpoint:    oauth2.Endpoint{AuthURL: e.url("/oauth2/authorize"), TokenURL: e.url("/oauth2/token"), AuthStyle: oauth2.AuthStyleInHeader},
		RedirectURL: "https://app.example.com/callback",
		Scopes:      []string{"openid", "contacts"},
	}
	verifier := oauth2.GenerateVerifier()
	b := newBrowser(t)
	p := b.get(conf.AuthCodeURL("some-state-value", oauth2.S256ChallengeOption(verifier)))
	loc := b.consent(b.login(p, "carol", testPassword), "allow")
	tok, err := conf.Exchange(t.Context(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	if !tok.Valid() || tok.RefreshToken == "" {
		t.Fatalf("token %+v", tok)
	}
	// The token source refreshes an expired token.
	tok.Expiry = tok.Expiry.Add(-2 * 3600e9)
	fresh, err := conf.TokenSource(t.Context(), tok).Token()
	if err != nil {
		t.Fatal(err)
	}
	if fresh.AccessToken == tok.AccessToken {
		t.Fatal("token source did not refresh")
	}
}

// TestIssuerWithPath: an issuer with a path (https://example.com/auth)
// serves every endpoint, page and stylesheet under that path.
func TestIssuerWithPath(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *authz.Config) { c.Issuer += "/auth" })
	client := e.confidential(t, "client_secret_basic")
	e.createUser(t, "alice")
	b := newBrowser(t)

	p := b.get(authorizeURL(e.issuer, map[string]string{
		"response_type": "code", "client_id": client.ClientID, "scope": "openid contacts",
		"redirect_uri": "https://app.example.com/callback", "state": "state-with-path",
	}))
	if !isLoginPage(p) {
		t.Fatalf("want the login page under the issuer's path, got %d:\n%s", p.status, p.body)
	}
	for _, asset := range []string{"/auth/static/style.css", "/auth/static/favicon.svg"} {
		if !strings.Contains(p.body, `href="`+asset+`"`) {
			t.Errorf("the login page does not link %s", asset)
		}
		if got := b.get(e.srv.URL + asset); got.status != http.StatusOK {
			t.Errorf("GET %s: %d", asset, got.status)
		}
	}
	if f := p.form(t); f.action != "/auth/oauth2/authorize" {
		t.Errorf("login form posts to %q", f.action)
	}
	loc := b.consent(b.login(p, "alice", testPassword), "allow")
	if loc.Query().Get("code") == "" || loc.Query().Get("iss") != e.issuer {
		t.Fatalf("redirect %s", loc)
	}
	tok := e.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"redirect_uri": {"https://app.example.com/callback"}}, client.ClientID, client.ClientSecret)
	if tok.status != http.StatusOK || tok.AccessToken == "" {
		t.Fatalf("exchange under the issuer's path: %d %+v", tok.status, tok)
	}
	resp, err := http.Get(e.issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || doc["issuer"] != e.issuer || doc["token_endpoint"] != e.issuer+"/oauth2/token" {
		t.Fatalf("discovery under the issuer's path: %v %v", err, doc)
	}
}
