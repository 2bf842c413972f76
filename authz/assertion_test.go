package authz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	josev4 "github.com/go-jose/go-jose/v4"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/storage"
)

// TestPrivateKeyJWTAccepted: a client registered with inline keys gets a
// token with a well-formed assertion, signed ES256 or RS256, addressed to
// the token endpoint or the issuer, with or without client_id in the form.
func TestPrivateKeyJWTAccepted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ec := newECKey(t, "ec-1")
	rsaKey := newRSAKey(t, "rsa-1")
	ecClient := e.keyClient(t, ec)
	rsClient := e.keyClient(t, rsaKey)

	cases := []struct {
		name   string
		key    *clientKey
		client string
		edit   func(claims map[string]any, form url.Values)
	}{
		{"ES256", ec, ecClient.ClientID, nil},
		{"RS256", rsaKey, rsClient.ClientID, nil},
		{"aud is the issuer", ec, ecClient.ClientID, func(c map[string]any, _ url.Values) { c["aud"] = e.issuer }},
		{"aud is a list naming the token endpoint", ec, ecClient.ClientID, func(c map[string]any, _ url.Values) {
			c["aud"] = []string{"https://other.example.com", e.url("/oauth2/token")}
		}},
		{"no client_id: sub names the client", ec, ecClient.ClientID, func(_ map[string]any, f url.Values) { f.Del("client_id") }},
		{"exp 59 minutes ahead", ec, ecClient.ClientID, func(c map[string]any, _ url.Values) {
			c["exp"] = time.Now().Add(59 * time.Minute).Unix()
		}},
	}
	rs := e.resourceServer(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			claims := assertionClaims(tc.client, e.url("/oauth2/token"))
			form := assertionForm(tc.client, "")
			if tc.edit != nil {
				tc.edit(claims, form)
			}
			form.Set("client_assertion", tc.key.sign(t, claims))
			tok := e.token(t, form, "", "")
			wantAssertionAccepted(t, tok)
			info := e.introspect(t, tok.AccessToken, rs.ClientID, rs.ClientSecret)
			if info["active"] != true || info["client_id"] != tc.client {
				t.Fatalf("introspection: %v", info)
			}
		})
	}
}

// TestPrivateKeyJWTRefused: every assertion that is not acceptable, and
// every other way a private_key_jwt client might try to authenticate, is
// 401 invalid_client (RFC 7523 3.2), never a 400 or 500.
func TestPrivateKeyJWTRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	key := newECKey(t, "ec-1")
	rsaInSet := newRSAKey(t, "rsa-1")
	client := e.keyClient(t, key, rsaInSet) // ES256
	other := e.keyClient(t, newECKey(t, "other-1"))
	secretClient := e.resourceServer(t)
	stranger := newECKey(t, "stranger")
	impostor := newECKey(t, key.kid) // our kid, another key

	sign := func(k *clientKey, edit func(map[string]any)) func(t *testing.T) string {
		return func(t *testing.T) string {
			c := assertionClaims(client.ClientID, e.url("/oauth2/token"))
			if edit != nil {
				edit(c)
			}
			return k.sign(t, c)
		}
	}
	cases := []struct {
		name      string
		assertion func(t *testing.T) string
	}{
		{"aud is another URL", sign(key, func(c map[string]any) { c["aud"] = "https://other.example.com/oauth2/token" })},
		{"aud is missing", sign(key, func(c map[string]any) { delete(c, "aud") })},
		{"expired", sign(key, func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() })},
		{"exp is missing", sign(key, func(c map[string]any) { delete(c, "exp") })},
		{"exp is 2 h ahead", sign(key, func(c map[string]any) { c["exp"] = time.Now().Add(2 * time.Hour).Unix() })},
		{"exp is 0", sign(key, func(c map[string]any) { c["exp"] = 0 })},
		{"iat in the future", sign(key, func(c map[string]any) { c["iat"] = time.Now().Add(time.Minute).Unix() })},
		{"nbf in the future", sign(key, func(c map[string]any) { c["nbf"] = time.Now().Add(time.Minute).Unix() })},
		{"exp is a string", sign(key, func(c map[string]any) { c["exp"] = "tomorrow" })},
		{"jti is missing", sign(key, func(c map[string]any) { delete(c, "jti") })},
		{"iss is another client", sign(key, func(c map[string]any) { c["iss"] = other.ClientID })},
		{"sub is another client", sign(key, func(c map[string]any) { c["sub"] = other.ClientID })},
		{"iss is missing", sign(key, func(c map[string]any) { delete(c, "iss") })},
		{"signed by a key with an unknown kid", sign(stranger, nil)},
		{"signed by another key under the client's kid", sign(impostor, nil)},
		{"alg is not the registered one", sign(rsaInSet, nil)},
		{"alg none", func(t *testing.T) string {
			return unsignedJWT(t, assertionClaims(client.ClientID, e.url("/oauth2/token")))
		}},
		{"HS256", func(t *testing.T) string {
			k := josev4.SigningKey{Algorithm: josev4.HS256, Key: bytes.Repeat([]byte("k"), 32)}
			return signJWS(t, k, key.kid, assertionClaims(client.ClientID, e.url("/oauth2/token")))
		}},
		{"not a JWT", func(*testing.T) string { return "not.a.jwt" }},
		{"signature cut off", func(t *testing.T) string {
			s := sign(key, nil)(t)
			return s[:strings.LastIndex(s, ".")+1]
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantAssertionRefused(t, e.token(t, assertionForm(client.ClientID, tc.assertion(t)), "", ""))
		})
	}

	// The other client's valid assertion does not authenticate this one.
	t.Run("client_id is not the assertion's client", func(t *testing.T) {
		a := key.sign(t, assertionClaims(client.ClientID, e.url("/oauth2/token")))
		wantAssertionRefused(t, e.token(t, assertionForm(other.ClientID, a), "", ""))
	})
	// A private_key_jwt client has no secret to present.
	cc := url.Values{"grant_type": {"client_credentials"}}
	t.Run("client_secret_basic with an empty secret", func(t *testing.T) {
		wantAssertionRefused(t, e.token(t, cc, client.ClientID, ""))
	})
	t.Run("client_secret_basic with a secret", func(t *testing.T) {
		wantAssertionRefused(t, e.token(t, cc, client.ClientID, "guess"))
	})
	t.Run("client_secret_post", func(t *testing.T) {
		wantAssertionRefused(t, e.token(t, url.Values{"grant_type": {"client_credentials"},
			"client_id": {client.ClientID}, "client_secret": {"guess"}}, "", ""))
	})
	t.Run("client_id alone", func(t *testing.T) {
		wantAssertionRefused(t, e.token(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {client.ClientID}}, "", ""))
	})
	// And a client with a secret cannot switch to an assertion.
	t.Run("a client_secret_basic client sending an assertion", func(t *testing.T) {
		a := key.sign(t, assertionClaims(secretClient.ClientID, e.url("/oauth2/token")))
		wantAssertionRefused(t, e.token(t, assertionForm(secretClient.ClientID, a), "", ""))
	})
}

// TestPrivateKeyJWTReplay: an assertion is accepted once. Sent again, or
// re-signed with the same jti, it is 401 invalid_client.
func TestPrivateKeyJWTReplay(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	key := newECKey(t, "ec-1")
	client := e.keyClient(t, key)
	claims := assertionClaims(client.ClientID, e.url("/oauth2/token"))
	a := key.sign(t, claims)
	wantAssertionAccepted(t, e.token(t, assertionForm(client.ClientID, a), "", ""))
	wantAssertionRefused(t, e.token(t, assertionForm(client.ClientID, a), "", ""))

	claims["exp"] = claims["exp"].(int64) - 1 // another assertion, same jti
	wantAssertionRefused(t, e.token(t, assertionForm(client.ClientID, key.sign(t, claims)), "", ""))
	// A fresh jti is fine.
	wantAssertionAccepted(t, e.token(t, assertionForm(client.ClientID, key.sign(t, assertionClaims(client.ClientID, e.issuer))), "", ""))
}

// TestPrivateKeyJWTConcurrentReplay: of two simultaneous requests with
// one assertion exactly one gets a token; the other is 401 invalid_client.
func TestPrivateKeyJWTConcurrentReplay(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	key := newECKey(t, "ec-1")
	client := e.keyClient(t, key)
	form := assertionForm(client.ClientID, key.sign(t, assertionClaims(client.ClientID, e.url("/oauth2/token"))))

	const n = 2
	var wg sync.WaitGroup
	start := make(chan struct{})
	results := make([]tokenResponse, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			resp, err := http.PostForm(e.url("/oauth2/token"), form)
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err == nil {
				err = json.Unmarshal(body, &results[i])
			}
			errs[i] = err
			results[i].status = resp.StatusCode
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for i, tr := range results {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if tr.status == http.StatusOK {
			ok++
			continue
		}
		wantAssertionRefused(t, tr)
	}
	if ok != 1 {
		t.Fatalf("%d of %d requests got a token, want exactly 1: %+v", ok, n, results)
	}
}

// TestPrivateKeyJWTIntrospectionAndRevocation: an assertion authenticates
// the client at the introspection and revocation endpoints too, and a
// replayed one is refused there as well.
func TestPrivateKeyJWTIntrospectionAndRevocation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	key := newECKey(t, "ec-1")
	client := e.keyClient(t, key)
	fresh := func() string { return key.sign(t, assertionClaims(client.ClientID, e.url("/oauth2/token"))) }
	tok := e.token(t, assertionForm(client.ClientID, fresh()), "", "")
	wantAssertionAccepted(t, tok)

	withAssertion := func(a string) url.Values {
		return url.Values{
			"token":                 {tok.AccessToken},
			"client_id":             {client.ClientID},
			"client_assertion_type": {jwtBearer},
			"client_assertion":      {a},
		}
	}
	introspect := func(a string) (int, map[string]any) {
		t.Helper()
		resp, body := postForm(t, e.url("/oauth2/introspect"), withAssertion(a), "", "")
		var out map[string]any
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("introspect %d: %v\n%s", resp.StatusCode, err, body)
		}
		return resp.StatusCode, out
	}

	a := fresh()
	if status, out := introspect(a); status != http.StatusOK || out["active"] != true || out["client_id"] != client.ClientID {
		t.Fatalf("introspect: %d %v", status, out)
	}
	if status, out := introspect(a); status != http.StatusUnauthorized || out["error"] != "invalid_client" {
		t.Fatalf("introspect with a replayed assertion: %d %v, want 401 invalid_client", status, out)
	}

	// Refused assertions are 401 invalid_client at both endpoints, and the
	// token is still active afterwards.
	stranger := newECKey(t, "stranger")
	edited := func(k *clientKey, edit func(map[string]any)) string {
		c := assertionClaims(client.ClientID, e.url("/oauth2/token"))
		edit(c)
		return k.sign(t, c)
	}
	refused := map[string]func() string{
		"replayed":    func() string { return a },
		"unknown kid": func() string { return stranger.sign(t, assertionClaims(client.ClientID, e.issuer)) },
		"expired": func() string {
			return edited(key, func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() })
		},
		"exp is 2 h ahead": func() string {
			return edited(key, func(c map[string]any) { c["exp"] = time.Now().Add(2 * time.Hour).Unix() })
		},
		"aud is another URL": func() string { return edited(key, func(c map[string]any) { c["aud"] = "https://other.example.com" }) },
	}
	for name, assertion := range refused {
		for _, path := range []string{"/oauth2/introspect", "/oauth2/revoke"} {
			resp, body := postForm(t, e.url(path), withAssertion(assertion()), "", "")
			var out struct{ Error string }
			_ = json.Unmarshal(body, &out)
			if resp.StatusCode != http.StatusUnauthorized || out.Error != "invalid_client" {
				t.Errorf("%s, %s: %d %s, want 401 invalid_client", path, name, resp.StatusCode, body)
			}
		}
	}
	if status, out := introspect(fresh()); status != http.StatusOK || out["active"] != true {
		t.Fatalf("introspect after refused revocations: %d %v", status, out)
	}

	a = fresh()
	if resp, body := postForm(t, e.url("/oauth2/revoke"), withAssertion(a), "", ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}
	resp, body := postForm(t, e.url("/oauth2/revoke"), withAssertion(a), "", "")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `"invalid_client"`) {
		t.Fatalf("revoke with a replayed assertion: %d %s, want 401 invalid_client", resp.StatusCode, body)
	}
	if status, out := introspect(fresh()); status != http.StatusOK || out["active"] != false {
		t.Fatalf("introspect after revocation: %d %v", status, out)
	}
}

// TestJWKSURICache: keys at a jwks_uri are fetched once, with Accept:
// application/json, and then served from the cache.
func TestJWKSURICache(t *testing.T) {
	t.Parallel()
	js := newJWKSServer(t)
	e := newEnv(t, fetchingFrom(js))
	key := newECKey(t, "ec-1")
	js.serve(http.StatusOK, publicJWKS(t, key))
	client := e.uriClient(t, js.url(), key.alg)

	for range 3 {
		wantAssertionAccepted(t, e.token(t, assertionForm(client.ClientID, key.sign(t, assertionClaims(client.ClientID, e.issuer))), "", ""))
	}
	if n := js.count(); n != 1 {
		t.Fatalf("jwks_uri fetched %d times, want 1", n)
	}
	if accept := js.lastAccept(); accept != "application/json" {
		t.Errorf("Accept: %q", accept)
	}
	// Once the cache has expired the keys are fetched again.
	e.clock.Advance(5*time.Minute + time.Second)
	wantAssertionAccepted(t, e.token(t, assertionForm(client.ClientID, key.sign(t, assertionClaims(client.ClientID, e.issuer))), "", ""))
	if n := js.count(); n != 2 {
		t.Fatalf("jwks_uri fetched %d times after the cache expired, want 2", n)
	}
}

// TestJWKSURIConcurrentFetch: simultaneous assertions of a client whose
// keys are not cached yet share one fetch (or find its result cached).
func TestJWKSURIConcurrentFetch(t *testing.T) {
	t.Parallel()
	js := newJWKSServer(t)
	e := newEnv(t, fetchingFrom(js))
	key := newECKey(t, "ec-1")
	js.serve(http.StatusOK, publicJWKS(t, key))
	client := e.uriClient(t, js.url(), key.alg)

	const n = 8
	forms := make([]url.Values, n)
	for i := range forms {
		forms[i] = assertionForm(client.ClientID, key.sign(t, assertionClaims(client.ClientID, e.issuer)))
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	statuses := make([]int, n)
	for i := range n {
		wg.Go(func() {
			<-start
			resp, err := http.PostForm(e.url("/oauth2/token"), forms[i])
			if err != nil {
				return
			}
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	close(start)
	wg.Wait()
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Errorf("request %d: status %d", i, s)
		}
	}
	if c := js.count(); c != 1 {
		t.Fatalf("jwks_uri fetched %d times, want 1", c)
	}
}

// TestJWKSURIKeyRotation: an assertion whose kid is not in the cached set
// makes the server fetch the jwks_uri again, but at most once every 30 s,
// so unknown kids cannot make it hammer the client's server.
func TestJWKSURIKeyRotation(t *testing.T) {
	t.Parallel()
	js := newJWKSServer(t)
	e := newEnv(t, fetchingFrom(js))
	oldKey, newKey := newECKey(t, "2024"), newECKey(t, "2025")
	js.serve(http.StatusOK, publicJWKS(t, oldKey))
	client := e.uriClient(t, js.url(), oldKey.alg)
	assert := func(k *clientKey) tokenResponse {
		return e.token(t, assertionForm(client.ClientID, k.sign(t, assertionClaims(client.ClientID, e.issuer))), "", "")
	}

	wantAssertionAccepted(t, assert(oldKey))
	if n := js.count(); n != 1 {
		t.Fatalf("fetched %d times, want 1", n)
	}
	// The client rotates: the new key replaces the old at its jwks_uri.
	js.serve(http.StatusOK, publicJWKS(t, newKey))
	e.clock.Advance(31 * time.Second)
	wantAssertionAccepted(t, assert(newKey))
	if n := js.count(); n != 2 {
		t.Fatalf("fetched %d times after a new kid, want 2", n)
	}
	// The old key is gone from the refetched set.
	wantAssertionRefused(t, assert(oldKey))

	// A kid the client never published: the set was fetched less than
	// 30 s ago, so the cached one answers and the server is not asked.
	stranger := newECKey(t, "2099")
	for range 3 {
		wantAssertionRefused(t, assert(stranger))
	}
	if n := js.count(); n != 2 {
		t.Fatalf("fetched %d times for unknown kids within 30 s, want 2", n)
	}
	e.clock.Advance(31 * time.Second)
	wantAssertionRefused(t, assert(stranger))
	if n := js.count(); n != 3 {
		t.Fatalf("fetched %d times for an unknown kid after 30 s, want 3", n)
	}
	wantAssertionAccepted(t, assert(newKey))
}

// TestJWKSURIFailures: whatever goes wrong fetching a client's keys, the
// client fails to authenticate (401 invalid_client); it is never a server
// error. A failure is not cached: once the keys are served, they work.
func TestJWKSURIFailures(t *testing.T) {
	t.Parallel()
	key := newECKey(t, "ec-1")
	good := publicJWKS(t, key)
	priv, err := json.Marshal(josev4.JSONWebKeySet{Keys: []josev4.JSONWebKey{{Key: key.priv, KeyID: key.kid, Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	withOct, err := json.Marshal(josev4.JSONWebKeySet{Keys: []josev4.JSONWebKey{key.public(), {Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "hmac"}}})
	if err != nil {
		t.Fatal(err)
	}
	huge := []byte(strings.TrimSuffix(string(good), "}") + `,"padding":"` + strings.Repeat("x", 64<<10) + `"}`)

	cases := []struct {
		name    string
		respond func(w http.ResponseWriter, r *http.Request)
	}{
		{"500", jwksAnswer(http.StatusInternalServerError, good)},
		{"404", jwksAnswer(http.StatusNotFound, good)},
		{"invalid JSON", jwksAnswer(http.StatusOK, []byte(`{"keys": [`))},
		{"HTML", jwksAnswer(http.StatusOK, []byte(`<html>hello</html>`))},
		{"no keys", jwksAnswer(http.StatusOK, []byte(`{"keys": []}`))},
		{"a private key", jwksAnswer(http.StatusOK, priv)},
		{"a symmetric key beside the public one", jwksAnswer(http.StatusOK, withOct)},
		{"only an encryption key", jwksAnswer(http.StatusOK, []byte(strings.Replace(string(good), `"use":"sig"`, `"use":"enc"`, 1)))},
		{"more than 64 KiB", jwksAnswer(http.StatusOK, huge)},
		{"a redirect to the keys", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/jwks" {
				http.Redirect(w, r, "/elsewhere", http.StatusFound)
				return
			}
			_, _ = w.Write(good)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			js := newJWKSServer(t)
			e := newEnv(t, fetchingFrom(js))
			js.handle(tc.respond)
			client := e.uriClient(t, js.url(), key.alg)
			assert := func() tokenResponse {
				return e.token(t, assertionForm(client.ClientID, key.sign(t, assertionClaims(client.ClientID, e.issuer))), "", "")
			}
			wantAssertionRefused(t, assert())
			if n := js.count(); n != 1 {
				t.Fatalf("fetched %d times, want 1", n)
			}
			// The failure is remembered for 30 seconds: a broken key server
			// is not asked again by every request.
			js.serve(http.StatusOK, good)
			wantAssertionRefused(t, assert())
			if n := js.count(); n != 1 {
				t.Fatalf("fetched %d times within 30 s of a failure, want 1", n)
			}
			e.clock.Advance(31 * time.Second)
			wantAssertionAccepted(t, assert())
			if n := js.count(); n != 2 {
				t.Fatalf("fetched %d times, want 2", n)
			}
		})
	}

	t.Run("server unreachable", func(t *testing.T) {
		t.Parallel()
		js := newJWKSServer(t)
		e := newEnv(t, fetchingFrom(js))
		client := e.uriClient(t, js.url(), key.alg)
		js.srv.Close()
		wantAssertionRefused(t, e.token(t, assertionForm(client.ClientID, key.sign(t, assertionClaims(client.ClientID, e.issuer))), "", ""))
	})

	// Registration refuses a jwks_uri that is not https; one stored anyway
	// is not fetched.
	t.Run("http jwks_uri", func(t *testing.T) {
		t.Parallel()
		fetched := make(chan struct{}, 1)
		plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			select {
			case fetched <- struct{}{}:
			default:
			}
			_, _ = w.Write(good)
		}))
		t.Cleanup(plain.Close)
		e := newEnv(t)
		c := &storage.Client{
			ID: "plain-http-keys", Name: "Batch job", GrantTypes: []string{"client_credentials"},
			TokenEndpointAuthMethod: "private_key_jwt", JWKSURI: plain.URL + "/jwks", TokenEndpointAuthSigningAlg: "ES256",
		}
		if err := e.store.CreateClient(context.Background(), c); err != nil {
			t.Fatal(err)
		}
		wantAssertionRefused(t, e.token(t, assertionForm(c.ID, key.sign(t, assertionClaims(c.ID, e.issuer))), "", ""))
		select {
		case <-fetched:
			t.Fatal("the http jwks_uri was fetched")
		default:
		}
	})
}

func jwksAnswer(code int, body []byte) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write(body)
	}
}

// TestJWKSURIPrivateAddress: by default the server does not connect to a
// jwks_uri on its own network, so a client that registered itself cannot
// make it probe internal services.
func TestJWKSURIPrivateAddress(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepted atomic.Int32
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1) // before Close: the client's error comes after this
			conn.Close()
		}
	}()
	key := newECKey(t, "ec-1")
	jwksURI := "https://" + ln.Addr().String() + "/jwks"

	e := newEnv(t)
	client := e.uriClient(t, jwksURI, key.alg)
	wantAssertionRefused(t, e.token(t, assertionForm(client.ClientID, key.sign(t, assertionClaims(client.ClientID, e.issuer))), "", ""))
	if n := accepted.Load(); n != 0 {
		t.Fatalf("the server connected %d times to a jwks_uri on a loopback address", n)
	}

	// An operator who wants that allows it.
	e = newEnv(t, func(c *authz.Config) { c.JWKSPrivateNetworks = true })
	client = e.uriClient(t, jwksURI, key.alg)
	wantAssertionRefused(t, e.token(t, assertionForm(client.ClientID, key.sign(t, assertionClaims(client.ClientID, e.issuer))), "", ""))
	if n := accepted.Load(); n != 1 {
		t.Fatalf("with AUTHZ_JWKS_PRIVATE_NETWORKS the server connected %d times, want 1", n)
	}
}

// TestJWKSURIFetchHoldsNoConnection: the token endpoint fetches a client's
// jwks_uri before it opens its transaction, so a slow key server cannot tie
// up the database pool (enough such requests would stop every endpoint).
func TestJWKSURIFetchHoldsNoConnection(t *testing.T) {
	t.Parallel()
	key := newECKey(t, "ec-1")
	js := newJWKSServer(t)
	release := make(chan struct{})
	js.handle(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(publicJWKS(t, key))
	})
	e := newEnv(t, fetchingFrom(js))
	client := e.uriClient(t, js.url(), key.alg)

	done := make(chan tokenResponse, 1)
	go func() {
		done <- e.token(t, assertionForm(client.ClientID, key.sign(t, assertionClaims(client.ClientID, e.issuer))), "", "")
	}()
	for deadline := time.Now().Add(10 * time.Second); js.count() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the jwks_uri was not fetched within 10 s")
		}
		time.Sleep(5 * time.Millisecond) // polling for the fetch to start
	}
	if n := e.pool.Stat().AcquiredConns(); n != 0 {
		t.Errorf("%d database connections held while the jwks_uri is fetched, want 0", n)
	}
	close(release)
	wantAssertionAccepted(t, <-done)
}

// TestPrivateKeyJWTJTIs: a jti is at most 256 bytes (a long one was a 500
// from the index), and each client has its own: one client cannot use up
// another's.
func TestPrivateKeyJWTJTIs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ka, kb := newECKey(t, "a"), newECKey(t, "b")
	a, b := e.keyClient(t, ka), e.keyClient(t, kb)

	long := assertionClaims(a.ClientID, e.issuer)
	long["jti"] = strings.Repeat("x", 8000)
	wantAssertionRefused(t, e.token(t, assertionForm(a.ClientID, ka.sign(t, long)), "", ""))

	ca, cb := assertionClaims(a.ClientID, e.issuer), assertionClaims(b.ClientID, e.issuer)
	ca["jti"], cb["jti"] = "predictable-1", "predictable-1"
	wantAssertionAccepted(t, e.token(t, assertionForm(a.ClientID, ka.sign(t, ca)), "", ""))
	wantAssertionAccepted(t, e.token(t, assertionForm(b.ClientID, kb.sign(t, cb)), "", ""))
	cb["exp"] = time.Now().Add(6 * time.Minute).Unix() // a new signature, the same jti
	wantAssertionRefused(t, e.token(t, assertionForm(b.ClientID, kb.sign(t, cb)), "", ""))
}
