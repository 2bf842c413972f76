package authz_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/authz/authz/authz"
)

// oidcClient registers a confidential OpenID Connect client and returns
// the x/oauth2 configuration a Go relying party would use, from discovery.
func oidcClient(t *testing.T, e *env) (authz.ClientMetadata, *oidc.Provider, *oauth2.Config) {
	t.Helper()
	c := e.createClient(t, authz.ClientMetadata{
		ClientName:             "Go RP",
		RedirectURIs:           []string{"https://rp.example.com/callback"},
		PostLogoutRedirectURIs: []string{"https://rp.example.com/signed-out"},
		Scope:                  "openid profile email offline_access",
	})
	provider, err := oidc.NewProvider(t.Context(), e.issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	return c, provider, &oauth2.Config{
		ClientID: c.ClientID, ClientSecret: c.ClientSecret,
		Endpoint:    provider.Endpoint(),
		RedirectURL: "https://rp.example.com/callback",
		Scopes:      []string{oidc.ScopeOpenID, "profile", "email"},
	}
}

// signIn runs the code flow as the user with a fresh browser and returns
// the tokens and the verified ID token.
func signIn(t *testing.T, e *env, b *browser, provider *oidc.Provider, conf *oauth2.Config, user string, extra ...oauth2.AuthCodeOption) (*oauth2.Token, *oidc.IDToken, string) {
	t.Helper()
	nonce := "n-" + strings.Repeat("x", 4) + user
	verifier := oauth2.GenerateVerifier()
	opts := append([]oauth2.AuthCodeOption{oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)}, extra...)
	p := b.get(conf.AuthCodeURL("state-"+user, opts...))
	if isLoginPage(p) {
		p = b.login(p, user, testPassword)
	}
	var loc *url.URL
	if isConsentPage(p) {
		loc = b.consent(p, "allow")
	} else {
		loc = p.location(t)
	}
	if loc.Query().Get("iss") != e.issuer {
		t.Errorf("authorization response iss = %q, want %q (RFC 9207)", loc.Query().Get("iss"), e.issuer)
	}
	tok, err := conf.Exchange(t.Context(), loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v (redirect %s)", err, loc)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		t.Fatal("no id_token in the token response")
	}
	idt, err := provider.Verifier(&oidc.Config{ClientID: conf.ClientID}).Verify(t.Context(), raw)
	if err != nil {
		t.Fatalf("verify id_token: %v", err)
	}
	if idt.Nonce != nonce {
		t.Errorf("nonce = %q, want %q", idt.Nonce, nonce)
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Errorf("at_hash: %v", err)
	}
	return tok, idt, raw
}

func jwtHeader(t *testing.T, raw string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestOpenIDConnect(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, provider, conf := oidcClient(t, e)
	alice := e.createUser(t, "alice")
	tok, idt, raw := signIn(t, e, newBrowser(t), provider, conf, "alice")

	if idt.Subject != alice.ID || idt.Issuer != e.issuer || len(idt.Audience) != 1 || idt.Audience[0] != conf.ClientID {
		t.Errorf("id token sub %q iss %q aud %v", idt.Subject, idt.Issuer, idt.Audience)
	}
	if life := idt.Expiry.Sub(idt.IssuedAt); life != e.cfg.IDTokenLifespan {
		t.Errorf("id token lives %s (iat %s, exp %s), want %s", life, idt.IssuedAt, idt.Expiry, e.cfg.IDTokenLifespan)
	}
	if h := jwtHeader(t, raw); h["kid"] == "" || h["alg"] != "RS256" {
		t.Errorf("id token header %v, want a kid and RS256", h)
	}
	var claims struct {
		AuthTime          int64    `json:"auth_time"`
		AMR               []string `json:"amr"`
		Email             string   `json:"email"`
		EmailVerified     *bool    `json:"email_verified"`
		PreferredUsername string   `json:"preferred_username"`
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if claims.AuthTime == 0 || time.Since(time.Unix(claims.AuthTime, 0)) > time.Minute || len(claims.AMR) == 0 {
		t.Errorf("auth_time %d amr %v", claims.AuthTime, claims.AMR)
	}
	if claims.Email != "alice@example.com" || claims.EmailVerified == nil || claims.PreferredUsername != "alice" {
		t.Errorf("profile/email claims: %+v", claims)
	}

	// userinfo with the access token.
	info, err := provider.UserInfo(t.Context(), oauth2.StaticTokenSource(tok))
	if err != nil {
		t.Fatal(err)
	}
	if info.Subject != alice.ID || info.Email != "alice@example.com" {
		t.Errorf("userinfo %+v", info)
	}

	// A refresh brings a new ID token for the same user.
	fresh, err := conf.TokenSource(t.Context(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		t.Fatal(err)
	}
	raw2, _ := fresh.Extra("id_token").(string)
	idt2, err := provider.Verifier(&oidc.Config{ClientID: conf.ClientID}).Verify(t.Context(), raw2)
	if err != nil {
		t.Fatalf("refreshed id token: %v", err)
	}
	if idt2.Subject != alice.ID {
		t.Errorf("refreshed id token sub %q", idt2.Subject)
	}
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	get := func(path string) map[string]any {
		resp, err := http.Get(e.url(path))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		var doc map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
			t.Fatal(err)
		}
		return doc
	}
	oidcDoc, rfc8414 := get("/.well-known/openid-configuration"), get("/.well-known/oauth-authorization-server")
	for _, doc := range []map[string]any{oidcDoc, rfc8414} {
		if doc["issuer"] != e.issuer {
			t.Errorf("issuer %v", doc["issuer"])
		}
		for key, want := range map[string]string{
			"authorization_endpoint": "/oauth2/authorize", "token_endpoint": "/oauth2/token",
			"introspection_endpoint": "/oauth2/introspect", "revocation_endpoint": "/oauth2/revoke",
			"userinfo_endpoint": "/userinfo", "end_session_endpoint": "/oauth2/logout", "jwks_uri": "/.well-known/jwks.json",
		} {
			if doc[key] != e.issuer+want {
				t.Errorf("%s = %v", key, doc[key])
			}
		}
		for _, key := range []string{"scopes_supported", "response_types_supported", "grant_types_supported",
			"code_challenge_methods_supported", "token_endpoint_auth_methods_supported",
			"id_token_signing_alg_values_supported", "subject_types_supported", "claims_supported"} {
			if v, ok := doc[key].([]any); !ok || len(v) == 0 {
				t.Errorf("%s missing or empty: %v", key, doc[key])
			}
		}
		if doc["authorization_response_iss_parameter_supported"] != true {
			t.Error("authorization_response_iss_parameter_supported is not true")
		}
		if m := doc["code_challenge_methods_supported"].([]any); len(m) != 1 || m[0] != "S256" {
			t.Errorf("code_challenge_methods_supported %v, want [S256]", m)
		}
	}
	jwks := get("/.well-known/jwks.json")
	keys, _ := jwks["keys"].([]any)
	if len(keys) == 0 {
		t.Fatal("empty JWKS")
	}
	for _, k := range keys {
		key := k.(map[string]any)
		if key["kid"] == "" || key["alg"] == "" || key["use"] != "sig" {
			t.Errorf("key %v lacks kid/alg/use", key)
		}
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if _, ok := key[private]; ok {
				t.Errorf("JWKS publishes private member %q", private)
			}
		}
	}
}

func TestKeyRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, provider, conf := oidcClient(t, e)
	e.createUser(t, "alice")
	b := newBrowser(t)
	_, _, before := signIn(t, e, b, provider, conf, "alice")

	if _, err := authz.RotateSigningKey(t.Context(), e.store, e.cfg, "RS256"); err != nil {
		t.Fatal(err)
	}
	// Past the new key's activation. The browser stays signed in, so no
	// login happens at the moved time (fosite checks auth_time against the
	// real clock).
	e.clock.Advance(authz.KeyActivationDelay)

	_, _, after := signIn(t, e, b, provider, conf, "alice")
	oldKID, newKID := jwtHeader(t, before)["kid"], jwtHeader(t, after)["kid"]
	if oldKID == newKID {
		t.Fatalf("after rotation the ID token still has kid %v", oldKID)
	}
	// A verifier that fetches the JWKS now accepts both.
	fresh, err := oidc.NewProvider(context.Background(), e.issuer)
	if err != nil {
		t.Fatal(err)
	}
	v := fresh.Verifier(&oidc.Config{ClientID: conf.ClientID})
	for name, raw := range map[string]string{"old": before, "new": after} {
		if _, err := v.Verify(t.Context(), raw); err != nil {
			t.Errorf("%s key's ID token no longer verifies: %v", name, err)
		}
	}
}
