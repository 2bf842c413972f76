package api

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/demo/demotest"
)

// fakeIssuer serves a discovery document and a JWKS that tests change,
// and mints tokens with its keys, as authz would.
type fakeIssuer struct {
	url string

	mu           sync.Mutex
	published    []jose.JSONWebKey // public keys in the JWKS
	cacheControl string
	down         bool // the JWKS answers 500

	fetches atomic.Int64 // JWKS requests
}

// signer is a private key (or an HMAC secret) with its kid and alg.
type signer struct {
	kid string
	alg jose.SignatureAlgorithm
	key any
}

func newSigner(t *testing.T, kid string, alg jose.SignatureAlgorithm) signer {
	t.Helper()
	var (
		k   crypto.Signer
		err error
	)
	switch alg {
	case jose.RS256, jose.PS256:
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.EdDSA:
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("alg %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid: kid, alg: alg, key: k}
}

func (s signer) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: s.key.(crypto.Signer).Public(), KeyID: s.kid, Algorithm: string(s.alg), Use: "sig"}
}

func startFakeIssuer(t *testing.T) *fakeIssuer {
	t.Helper()
	f := &fakeIssuer{cacheControl: "public, max-age=120"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"issuer": f.url, "jwks_uri": f.url + "/jwks", "introspection_endpoint": f.url + "/introspect"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		f.fetches.Add(1)
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.down {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", f.cacheControl)
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: f.published})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func (f *fakeIssuer) publish(keys ...jose.JSONWebKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.published = append(f.published, keys...)
}

func (f *fakeIssuer) setCacheControl(v string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cacheControl = v
}

func (f *fakeIssuer) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

const testResource = "http://localhost:4000"

// claims are a good access token's claims for alice, issued at now.
func (f *fakeIssuer) claims(now time.Time) map[string]any {
	return map[string]any{
		"iss": f.url, "sub": "alice-id", "aud": []string{testResource}, "client_id": "demo-bff",
		"scope": "openid contacts", "jti": "jti-1", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"auth_time": now.Unix(), "amr": []string{"pwd"},
	}
}

// mint signs claims with s; typ is the typ header ("" for none).
func mint(t *testing.T, s signer, typ string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithHeader("kid", s.kid)
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: s.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := sig.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// startJWTAPI starts the API in jwt mode against f, on clock clk.
func startJWTAPI(t *testing.T, f *fakeIssuer, clk *demotest.Clock) *api {
	t.Helper()
	ct := &countingTransport{}
	h, err := NewHandler(t.Context(), Config{
		Issuer: f.url, Verify: VerifyJWT, Resource: testResource,
		HTTPClient: &http.Client{Transport: ct}, Now: clk.Now,
	}, demotest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &api{url: srv.URL, srv: h, calls: ct, baseline: ct.n.Load()}
}

// wantStatus checks an answer's status and, for 401, the RFC 6750
// invalid_token challenge.
func wantStatus(t *testing.T, got answer, status int) {
	t.Helper()
	if got.status != status {
		t.Fatalf("status %d, want %d: %s", got.status, status, got.raw)
	}
	if status == http.StatusUnauthorized && !strings.HasPrefix(got.challenge, `Bearer realm="contacts", error="invalid_token"`) {
		t.Errorf("WWW-Authenticate %q, want error=\"invalid_token\"", got.challenge)
	}
}

func TestJWTAccepted(t *testing.T) {
	t.Parallel()
	f := startFakeIssuer(t)
	clk := &demotest.Clock{}
	var signers []signer
	for _, alg := range jwtAlgs {
		s := newSigner(t, "k-"+string(alg), alg)
		signers = append(signers, s)
		f.publish(s.jwk())
	}
	x := startJWTAPI(t, f, clk)
	for _, s := range signers {
		for _, typ := range []string{"at+jwt", "application/at+jwt", "AT+JWT"} {
			t.Run(string(s.alg)+" "+typ, func(t *testing.T) {
				got := x.get(t, bearer(mint(t, s, typ, f.claims(clk.Now()))))
				wantStatus(t, got, http.StatusOK)
				if got.body["sub"] != "alice-id" || len(got.body["contacts"].([]any)) != 3 {
					t.Errorf("body %s", got.raw)
				}
			})
		}
	}
	// aud may name other resources too; a single string aud is fine.
	c := f.claims(clk.Now())
	c["aud"] = []string{"https://other.example", testResource}
	wantStatus(t, x.get(t, bearer(mint(t, signers[0], "at+jwt", c))), http.StatusOK)
	c["aud"] = testResource
	wantStatus(t, x.get(t, bearer(mint(t, signers[0], "at+jwt", c))), http.StatusOK)
	if n := f.fetches.Load(); n != 1 {
		t.Errorf("%d JWKS fetches, want 1: the JWKS is cached", n)
	}
}

// Each check a token must pass, and the 401 when it does not.
func TestJWTRefused(t *testing.T) {
	t.Parallel()
	f := startFakeIssuer(t)
	clk := &demotest.Clock{}
	rs := newSigner(t, "rs", jose.RS256)
	es := newSigner(t, "es", jose.ES256)
	f.publish(rs.jwk(), es.jwk())
	x := startJWTAPI(t, f, clk)
	now := clk.Now()
	with := func(name string, v any) map[string]any {
		c := f.claims(now)
		if v == nil {
			delete(c, name)
		} else {
			c[name] = v
		}
		return c
	}
	good := f.claims(now)
	// Another key under rs's kid: a signature the published key does not
	// verify.
	forged := newSigner(t, "rs", jose.RS256)
	tampered := func() string {
		parts := strings.Split(mint(t, rs, "at+jwt", good), ".")
		other := strings.Split(mint(t, rs, "at+jwt", with("sub", "mallory")), ".")
		return parts[0] + "." + other[1] + "." + parts[2]
	}()
	for _, tc := range []struct {
		name, token string
	}{
		{"opaque token", "ory_at_abcdef.ghijkl"},
		{"no typ (an ID token)", mint(t, rs, "", good)},
		{"typ JWT (an ID token)", mint(t, rs, "JWT", with("aud", "demo-bff"))},
		{"typ JWT with the right claims", mint(t, rs, "JWT", good)},
		{"wrong aud", mint(t, rs, "at+jwt", with("aud", []string{"https://other.example"}))},
		{"aud is the issuer (no resource asked for)", mint(t, rs, "at+jwt", with("aud", []string{f.url}))},
		{"aud is a prefix of the resource", mint(t, rs, "at+jwt", with("aud", []string{testResource + "/contacts"}))},
		{"no aud", mint(t, rs, "at+jwt", with("aud", nil))},
		{"wrong iss", mint(t, rs, "at+jwt", with("iss", "https://evil.example"))},
		{"iss with a final slash", mint(t, rs, "at+jwt", with("iss", f.url+"/"))},
		{"no exp", mint(t, rs, "at+jwt", with("exp", nil))},
		{"expired beyond the leeway", mint(t, rs, "at+jwt", with("exp", now.Add(-JWTLeeway-time.Second).Unix()))},
		{"not yet valid", mint(t, rs, "at+jwt", with("nbf", now.Add(time.Hour).Unix()))},
		{"no client_id", mint(t, rs, "at+jwt", with("client_id", nil))},
		{"no sub", mint(t, rs, "at+jwt", with("sub", nil))},
		{"bad signature (another key, same kid)", mint(t, forged, "at+jwt", good)},
		{"tampered payload", tampered},
		{"alg does not fit the key (RS256 header, EC key)", mint(t, signer{kid: "es", alg: jose.RS256, key: rs.key}, "at+jwt", good)},
		{"alg is not the key's alg (PS256 with an RS256 key)", mint(t, signer{kid: "rs", alg: jose.PS256, key: rs.key}, "at+jwt", good)},
		{"HS256", mint(t, signer{kid: "rs", alg: jose.HS256, key: []byte("a secret that is 32 bytes long!!")}, "at+jwt", good)},
		{"unknown kid", mint(t, newSigner(t, "nope", jose.ES256), "at+jwt", good)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantStatus(t, x.get(t, bearer(tc.token)), http.StatusUnauthorized)
		})
	}
	// The same checks pass a good token, so each refusal above is its own.
	wantStatus(t, x.get(t, bearer(mint(t, rs, "at+jwt", good))), http.StatusOK)
	wantStatus(t, x.get(t, bearer(mint(t, es, "at+jwt", good))), http.StatusOK)
}

func TestJWTScope(t *testing.T) {
	t.Parallel()
	f := startFakeIssuer(t)
	clk := &demotest.Clock{}
	s := newSigner(t, "k", jose.ES256)
	f.publish(s.jwk())
	x := startJWTAPI(t, f, clk)

	c := f.claims(clk.Now())
	c["scope"] = "openid profile"
	got := x.get(t, bearer(mint(t, s, "at+jwt", c)))
	wantStatus(t, got, http.StatusForbidden)
	if !strings.Contains(got.challenge, `error="insufficient_scope"`) {
		t.Errorf("WWW-Authenticate %q", got.challenge)
	}
	// client_credentials: sub is the client (RFC 9068 2.2), no user.
	c = f.claims(clk.Now())
	c["sub"] = c["client_id"]
	delete(c, "auth_time")
	got = x.get(t, bearer(mint(t, s, "at+jwt", c)))
	wantStatus(t, got, http.StatusForbidden)
	if !strings.Contains(got.challenge, `error="insufficient_scope"`) {
		t.Errorf("WWW-Authenticate %q", got.challenge)
	}
}

// Expiry is by the API's clock, with JWTLeeway.
func TestJWTExpiry(t *testing.T) {
	t.Parallel()
	f := startFakeIssuer(t)
	clk := &demotest.Clock{}
	s := newSigner(t, "k", jose.EdDSA)
	f.publish(s.jwk())
	f.setCacheControl("max-age=3600")
	x := startJWTAPI(t, f, clk)
	c := f.claims(clk.Now())
	c["exp"] = clk.Now().Add(time.Minute).Unix()
	tok := mint(t, s, "at+jwt", c)

	wantStatus(t, x.get(t, bearer(tok)), http.StatusOK)
	clk.Advance(time.Minute + JWTLeeway - 2*time.Second)
	wantStatus(t, x.get(t, bearer(tok)), http.StatusOK)
	clk.Advance(3 * time.Second)
	wantStatus(t, x.get(t, bearer(tok)), http.StatusUnauthorized)
}

// A new key: an unknown kid fetches the JWKS again, at most once per
// jwksRefetch; a known kid does not fetch until the cache's max-age.
func TestJWTKeyRotation(t *testing.T) {
	t.Parallel()
	f := startFakeIssuer(t)
	clk := &demotest.Clock{}
	old := newSigner(t, "old", jose.RS256)
	f.publish(old.jwk())
	x := startJWTAPI(t, f, clk)
	if n := f.fetches.Load(); n != 0 {
		t.Fatalf("%d JWKS fetches before the first token, want 0", n)
	}
	wantStatus(t, x.get(t, bearer(mint(t, old, "at+jwt", f.claims(clk.Now())))), http.StatusOK)
	if n := f.fetches.Load(); n != 1 {
		t.Fatalf("%d JWKS fetches, want 1", n)
	}

	// The issuer rotates: a new key signs, unknown to the cached JWKS.
	next := newSigner(t, "next", jose.ES256)
	f.publish(next.jwk())
	clk.Advance(jwksRefetch)
	wantStatus(t, x.get(t, bearer(mint(t, next, "at+jwt", f.claims(clk.Now())))), http.StatusOK)
	if n := f.fetches.Load(); n != 2 {
		t.Fatalf("%d JWKS fetches, want 2: the unknown kid fetches it again", n)
	}
	// Another unknown kid right after: refused without a fetch.
	stranger := newSigner(t, "stranger", jose.ES256)
	for range 3 {
		wantStatus(t, x.get(t, bearer(mint(t, stranger, "at+jwt", f.claims(clk.Now())))), http.StatusUnauthorized)
	}
	if n := f.fetches.Load(); n != 2 {
		t.Fatalf("%d JWKS fetches, want 2: refetching is rate-limited", n)
	}
	// Once the limit has passed, it may fetch again (and still not find it).
	clk.Advance(jwksRefetch)
	wantStatus(t, x.get(t, bearer(mint(t, stranger, "at+jwt", f.claims(clk.Now())))), http.StatusUnauthorized)
	if n := f.fetches.Load(); n != 3 {
		t.Fatalf("%d JWKS fetches, want 3", n)
	}
}

// The JWKS is kept for its max-age, bounded by jwksMaxTTL.
func TestJWTJWKSMaxAge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cacheControl string
		ttl          time.Duration
	}{
		{"public, max-age=120", 120 * time.Second},
		{"max-age=86400", jwksMaxTTL},
		{"max-age=0", jwksMinTTL},
		{"no-store", jwksMinTTL},
		{"", jwksDefaultTTL},
	} {
		t.Run(tc.cacheControl, func(t *testing.T) {
			t.Parallel()
			f := startFakeIssuer(t)
			clk := &demotest.Clock{}
			s := newSigner(t, "k", jose.ES256)
			f.publish(s.jwk())
			f.setCacheControl(tc.cacheControl)
			x := startJWTAPI(t, f, clk)
			claims := f.claims(clk.Now())
			claims["exp"] = clk.Now().Add(48 * time.Hour).Unix()
			tok := mint(t, s, "at+jwt", claims)

			wantStatus(t, x.get(t, bearer(tok)), http.StatusOK)
			clk.Advance(tc.ttl - time.Second)
			wantStatus(t, x.get(t, bearer(tok)), http.StatusOK)
			if n := f.fetches.Load(); n != 1 {
				t.Fatalf("%d JWKS fetches within %s, want 1", n, tc.ttl)
			}
			clk.Advance(time.Second)
			wantStatus(t, x.get(t, bearer(tok)), http.StatusOK)
			if n := f.fetches.Load(); n != 2 {
				t.Fatalf("%d JWKS fetches after %s, want 2", n, tc.ttl)
			}
		})
	}
}

// When the JWKS cannot be fetched, a token that may be fine is neither
// accepted nor refused: 503, until a fetch succeeds again.
func TestJWTJWKSDown(t *testing.T) {
	t.Parallel()
	f := startFakeIssuer(t)
	clk := &demotest.Clock{}
	s := newSigner(t, "k", jose.ES256)
	f.publish(s.jwk())
	f.setDown(true)
	x := startJWTAPI(t, f, clk)
	tok := mint(t, s, "at+jwt", f.claims(clk.Now()))

	got := x.get(t, bearer(tok))
	wantStatus(t, got, http.StatusServiceUnavailable)
	if got.challenge != "" || got.body["error"] != "temporarily_unavailable" {
		t.Errorf("503 with WWW-Authenticate %q, body %s", got.challenge, got.raw)
	}
	// Within jwksRetry, no new fetch: still 503.
	wantStatus(t, x.get(t, bearer(tok)), http.StatusServiceUnavailable)
	if n := f.fetches.Load(); n != 1 {
		t.Fatalf("%d JWKS fetches, want 1: failures back off", n)
	}
	f.setDown(false)
	clk.Advance(jwksRetry)
	wantStatus(t, x.get(t, bearer(tok)), http.StatusOK)

	// Down again: a cached key still verifies; an unknown kid that needs a
	// fetch is 503, not 401.
	f.setDown(true)
	clk.Advance(jwksRefetch)
	wantStatus(t, x.get(t, bearer(tok)), http.StatusOK)
	rotated := newSigner(t, "rotated", jose.ES256)
	wantStatus(t, x.get(t, bearer(mint(t, rotated, "at+jwt", f.claims(clk.Now())))), http.StatusServiceUnavailable)
	// And once the cache is too old, every token is 503.
	clk.Advance(2 * time.Minute)
	wantStatus(t, x.get(t, bearer(tok)), http.StatusServiceUnavailable)
}

func TestJWTConfig(t *testing.T) {
	t.Parallel()
	base := Config{Issuer: "http://localhost:8080", Verify: VerifyJWT, Resource: testResource}
	if err := base.Validate(); err != nil {
		t.Fatalf("jwt mode needs no client: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"no resource", func(c *Config) { c.Resource = "" }},
		{"relative resource", func(c *Config) { c.Resource = "/contacts" }},
		{"resource with a fragment", func(c *Config) { c.Resource = testResource + "#x" }},
		{"unknown mode", func(c *Config) { c.Verify = "offline" }},
		{"introspect without a client", func(c *Config) { c.Verify = VerifyIntrospect }},
	} {
		c := base
		tc.edit(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
}

// Against the real authorization server: JWT access tokens of clients
// that sign with each algorithm, asked for with the API's resource, are
// verified here without introspection; one for no resource, an ID token,
// an expired one are refused; a revoked one still works until exp (an
// offline verifier cannot know).
func TestJWTWithAuthz(t *testing.T) {
	t.Parallel()
	a := demotest.StartAuthz(t, nil)
	alice := a.CreateUser(t, "alice", "")
	clk := &demotest.Clock{}
	ct := &countingTransport{}
	h, err := NewHandler(t.Context(), Config{
		Issuer: a.URL, Verify: VerifyJWT, Resource: testResource, HTTPClient: &http.Client{Transport: ct}, Now: clk.Now,
	}, demotest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	x := &api{url: srv.URL, srv: h, calls: ct}

	var web authz.ClientMetadata
	for _, alg := range []string{"RS256", "PS256", "ES256", "EdDSA"} {
		c := a.CreateClient(t, authz.ClientMetadata{
			ClientID: "web-" + alg, ClientName: "Contacts demo", RedirectURIs: []string{demotest.DemoRedirect},
			Scope: demotest.DemoScope, AccessTokenStrategy: "jwt", Audience: []string{testResource},
			IDTokenSignedResponseAlg: alg,
		})
		tok := a.UserToken(t, c, "alice", "openid contacts", demotest.Resource(testResource))
		got := x.get(t, bearer(tok.AccessToken))
		if got.status != http.StatusOK || got.body["sub"] != alice.ID {
			t.Fatalf("%s: %d %s", alg, got.status, got.raw)
		}
		web = c
	}
	tok := a.UserToken(t, web, "alice", "openid contacts", demotest.Resource(testResource))
	noResource := a.UserToken(t, web, "alice", "openid contacts")
	wantStatus(t, x.get(t, bearer(noResource.AccessToken)), http.StatusUnauthorized)
	idToken, _ := tok.Extra("id_token").(string)
	wantStatus(t, x.get(t, bearer(idToken)), http.StatusUnauthorized)
	wantStatus(t, x.get(t, bearer(tok.RefreshToken)), http.StatusUnauthorized)

	a.Revoke(t, web, tok.RefreshToken)
	if a.Active(t, web, tok.AccessToken) {
		t.Fatal("the revoked token is active at introspection")
	}
	wantStatus(t, x.get(t, bearer(tok.AccessToken)), http.StatusOK) // documented: until exp
	clk.Advance(time.Until(tok.Expiry) + JWTLeeway + time.Second)
	wantStatus(t, x.get(t, bearer(tok.AccessToken)), http.StatusUnauthorized)
	for _, path := range ct.paths() {
		if path != "/.well-known/openid-configuration" && path != "/.well-known/jwks.json" {
			t.Errorf("the API asked authz %s", path)
		}
	}
}
