package authz_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/authz/authz/authz"
)

// TestIDTokenSigningAlgorithms: a client registered with
// id_token_signed_response_alg gets ID tokens signed with that algorithm,
// by the key of that algorithm the JWKS publishes, from the code exchange
// and from a refresh, and verified by go-oidc told to accept only that
// algorithm; a client that chose none gets RS256. Each token also serves
// as an id_token_hint at logout, which verifies it by its kid.
func TestIDTokenSigningAlgorithms(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createUser(t, "alice")
	provider, err := oidc.NewProvider(t.Context(), e.issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	jwks := jwksByKID(t, e)

	for _, alg := range []string{"RS256", "PS256", "ES256", "EdDSA", ""} {
		name := alg
		if alg == "" {
			name = "none registered"
		}
		t.Run(name, func(t *testing.T) {
			c := e.createClient(t, authz.ClientMetadata{
				ClientName:               "RP " + name,
				RedirectURIs:             []string{"https://rp.example.com/callback"},
				PostLogoutRedirectURIs:   []string{"https://rp.example.com/signed-out"},
				Scope:                    "openid profile offline_access",
				IDTokenSignedResponseAlg: alg,
			})
			want := alg
			if want == "" {
				want = "RS256"
			}
			conf := &oauth2.Config{
				ClientID: c.ClientID, ClientSecret: c.ClientSecret,
				Endpoint:    provider.Endpoint(),
				RedirectURL: "https://rp.example.com/callback",
				Scopes:      []string{oidc.ScopeOpenID, "profile", "offline_access"},
			}
			// Only the registered algorithm: a token signed with any
			// other fails verification.
			verifier := provider.Verifier(&oidc.Config{ClientID: c.ClientID, SupportedSigningAlgs: []string{want}})
			tok := codeFlow(t, newBrowser(t), conf, "alice")
			fresh, err := conf.TokenSource(t.Context(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			for step, tok := range map[string]*oauth2.Token{"code exchange": tok, "refresh": fresh} {
				raw, _ := tok.Extra("id_token").(string)
				idt, err := verifier.Verify(t.Context(), raw)
				if err != nil {
					t.Fatalf("%s: go-oidc does not verify the ID token as %s: %v", step, want, err)
				}
				h := jwtHeader(t, raw)
				kid, _ := h["kid"].(string)
				if h["alg"] != want || jwks[kid]["alg"] != want {
					t.Errorf("%s: ID token header %v, its JWKS key %v; want alg %s for both", step, h, jwks[kid], want)
				}
				// at_hash, when present, must be right for the alg;
				// fosite's would not be for EdDSA, so there is none.
				var claims struct {
					AtHash string `json:"at_hash"`
				}
				if err := idt.Claims(&claims); err != nil {
					t.Fatal(err)
				}
				if want == "EdDSA" {
					if claims.AtHash != "" {
						t.Errorf("%s: EdDSA ID token carries at_hash %q, a SHA-256 one", step, claims.AtHash)
					}
				} else if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
					t.Errorf("%s: at_hash: %v", step, err)
				}
			}

			// The ID token is a good id_token_hint: logout finds its
			// client and redirects where that client registered.
			raw, _ := fresh.Extra("id_token").(string)
			p := newBrowser(t).get(e.url("/oauth2/logout?" + url.Values{
				"id_token_hint":            {raw},
				"post_logout_redirect_uri": {"https://rp.example.com/signed-out"},
			}.Encode()))
			if p.status == http.StatusBadRequest || strings.Contains(p.body, "not an ID token issued by this server") {
				t.Errorf("logout with a %s id_token_hint: %d\n%s", want, p.status, p.body)
			}
		})
	}
}

// codeFlow signs user in with a fresh browser, consents, and exchanges
// the code; the caller checks the ID token.
func codeFlow(t *testing.T, b *browser, conf *oauth2.Config, user string) *oauth2.Token {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	p := b.get(conf.AuthCodeURL("state-"+user, oidc.Nonce("nonce-"+user), oauth2.S256ChallengeOption(verifier)))
	if isLoginPage(p) {
		p = b.login(p, user, testPassword)
	}
	var loc *url.URL
	if isConsentPage(p) {
		loc = b.consent(p, "allow")
	} else {
		loc = p.location(t)
	}
	tok, err := conf.Exchange(t.Context(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v (redirect %s)", err, loc)
	}
	if raw, _ := tok.Extra("id_token").(string); raw == "" || tok.RefreshToken == "" {
		t.Fatalf("token response without id_token or refresh_token: %+v", tok)
	}
	return tok
}

// jwksByKID reads the JWKS as JSON members, by kid, and checks that it has
// exactly one key per algorithm (none rotated yet), each with the key type
// and curve of its algorithm, use sig, and no private member.
func jwksByKID(t *testing.T, e *env) map[string]map[string]any {
	t.Helper()
	resp, err := http.Get(e.url("/.well-known/jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("JWKS: %d %s (%v)", resp.StatusCode, body, err)
	}
	want := map[string]string{"RS256": "RSA", "PS256": "RSA", "ES256": "EC P-256", "EdDSA": "OKP Ed25519"}
	byKID := map[string]map[string]any{}
	for _, k := range set.Keys {
		alg, _ := k["alg"].(string)
		kty, _ := k["kty"].(string)
		if crv, ok := k["crv"].(string); ok {
			kty += " " + crv
		}
		if w, ok := want[alg]; !ok || kty != w || k["use"] != "sig" || k["kid"] == nil {
			t.Errorf("JWKS key %v: want kty/crv %q for alg %q, use sig, a kid", k, w, alg)
		}
		if _, ok := k["d"]; ok {
			t.Errorf("JWKS key %v has a private member", k["kid"])
		}
		delete(want, alg)
		kid, _ := k["kid"].(string)
		byKID[kid] = k
	}
	if len(want) != 0 || len(set.Keys) != 4 {
		t.Errorf("JWKS %s: want one key for each of RS256, PS256, ES256, EdDSA", body)
	}
	return byKID
}

// TestDiscoveryIDTokenAlgorithms: discovery lists every algorithm a client
// may register, which is every algorithm the server has a key of.
func TestDiscoveryIDTokenAlgorithms(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	resp, err := http.Get(e.url("/.well-known/openid-configuration"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Algs []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(doc.Algs, " "); got != strings.Join(authz.SigningAlgorithms(), " ") || got != "RS256 PS256 ES256 EdDSA" {
		t.Errorf("id_token_signing_alg_values_supported = %v, want [RS256 PS256 ES256 EdDSA]", doc.Algs)
	}
}
