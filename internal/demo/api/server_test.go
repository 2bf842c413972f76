package api

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/demo/demotest"
	"github.com/authz/authz/storage/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// countingTransport counts the requests that go through it, and keeps
// their paths.
type countingTransport struct {
	n  atomic.Int64
	mu sync.Mutex
	p  []string
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	c.mu.Lock()
	c.p = append(c.p, r.URL.Path)
	c.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (c *countingTransport) paths() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.p)
}

// api is a running contacts API and a count of its requests to the
// authorization server.
type api struct {
	url      string
	srv      *Server
	calls    *countingTransport
	baseline int64 // requests made before the first test request (discovery)
}

func startAPI(t *testing.T, a *demotest.Authz, client authz.ClientMetadata, cache time.Duration, now func() time.Time) *api {
	t.Helper()
	ct := &countingTransport{}
	h, err := NewHandler(t.Context(), Config{
		Issuer: a.URL, ClientID: client.ClientID, ClientSecret: client.ClientSecret,
		Cache: cache, HTTPClient: &http.Client{Transport: ct}, Now: now,
	}, demotest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &api{url: srv.URL, srv: h, calls: ct, baseline: ct.n.Load()}
}

// introspections is how many times the API asked the authorization server
// since it started.
func (x *api) introspections() int64 { return x.calls.n.Load() - x.baseline }

type answer struct {
	status    int
	challenge string
	body      map[string]any
	raw       string
}

// get calls GET /contacts with the given Authorization header ("" for none).
func (x *api) get(t *testing.T, authorization string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, x.url+"/contacts", nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{status: resp.StatusCode, challenge: resp.Header.Get("WWW-Authenticate"), raw: string(raw)}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if err := json.Unmarshal(raw, &a.body); err != nil {
		t.Fatalf("%d: body is not JSON: %v\n%s", resp.StatusCode, err, raw)
	}
	return a
}

func bearer(token string) string { return "Bearer " + token }

func TestContacts(t *testing.T) {
	t.Parallel()
	a := demotest.StartAuthz(t, nil)
	web, apiClient := a.SeedDemo(t)
	alice := a.CreateUser(t, "alice", "")
	bob := a.CreateUser(t, "bob", "")
	// Another client's client_credentials tokens: one without the contacts
	// scope and one with it, but for no user.
	reports := a.CreateClient(t, authz.ClientMetadata{ClientName: "Reports", GrantTypes: []string{"client_credentials"}})
	robot := a.CreateClient(t, authz.ClientMetadata{ClientName: "Robot", GrantTypes: []string{"client_credentials"}, Scope: "contacts"})

	aliceTok := a.UserToken(t, web, "alice", "openid profile email offline_access contacts")
	aliceNoContacts := a.UserToken(t, web, "alice", "openid profile")
	bobTok := a.UserToken(t, web, "bob", "openid contacts")
	x := startAPI(t, a, apiClient, 0, nil)

	const noError = `Bearer realm="contacts"`
	for _, tc := range []struct {
		name          string
		authorization string
		status        int
		challenge     string // the whole WWW-Authenticate, or its error
	}{
		{"no token", "", 401, noError},
		{"another scheme", "Basic ZGVtbzpkZW1v", 401, noError},
		{"empty bearer", "Bearer ", 400, "invalid_request"},
		{"two words", "Bearer abc def", 400, "invalid_request"},
		{"garbage", bearer("not-a-token-at-all"), 401, "invalid_token"},
		{"refresh token", bearer(aliceTok.RefreshToken), 401, "invalid_token"},
		{"client token without contacts", bearer(a.ClientToken(t, reports).AccessToken), 403, "insufficient_scope"},
		{"client token with contacts, no user", bearer(a.ClientToken(t, robot).AccessToken), 403, "insufficient_scope"},
		{"user token without contacts", bearer(aliceNoContacts.AccessToken), 403, "insufficient_scope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := x.get(t, tc.authorization)
			if got.status != tc.status {
				t.Fatalf("status %d, want %d: %s", got.status, tc.status, got.raw)
			}
			if strings.HasPrefix(tc.challenge, "Bearer") {
				if got.challenge != tc.challenge {
					t.Errorf("WWW-Authenticate %q, want %q", got.challenge, tc.challenge)
				}
				return
			}
			if !strings.HasPrefix(got.challenge, `Bearer realm="contacts", error="`+tc.challenge+`"`) || got.body["error"] != tc.challenge {
				t.Errorf("WWW-Authenticate %q, body %s; want error %s", got.challenge, got.raw, tc.challenge)
			}
			if tc.challenge == "insufficient_scope" && !strings.HasSuffix(got.challenge, `scope="contacts"`) {
				t.Errorf("WWW-Authenticate %q does not name the scope", got.challenge)
			}
		})
	}

	t.Run("user token", func(t *testing.T) {
		got := x.get(t, bearer(aliceTok.AccessToken))
		if got.status != 200 || got.challenge != "" {
			t.Fatalf("%d %q: %s", got.status, got.challenge, got.raw)
		}
		var doc contactsResponse
		if err := json.Unmarshal([]byte(got.raw), &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Sub != alice.ID || doc.Username != "alice" || len(doc.Contacts) != 3 {
			t.Fatalf("want alice's sub, username and 3 contacts, got %+v", doc)
		}
		for _, c := range doc.Contacts {
			if c.Name == "" || !strings.HasSuffix(c.Email, "@example.com") || !strings.HasPrefix(c.Phone, "+1 555 01") {
				t.Errorf("contact %+v", c)
			}
		}
		// Deterministic per user, and another user has other contacts.
		if again := contactsFor(alice.ID); !reflect.DeepEqual(again, doc.Contacts) {
			t.Errorf("contacts differ between calls: %v, %v", doc.Contacts, again)
		}
		bobs := x.get(t, bearer(bobTok.AccessToken))
		if bobs.status != 200 || bobs.body["sub"] != bob.ID {
			t.Fatalf("bob: %d %s", bobs.status, bobs.raw)
		}
		if reflect.DeepEqual(contactsFor(bob.ID), doc.Contacts) {
			t.Errorf("alice and bob have the same contacts")
		}
	})
}

// A positive answer is reused for the cache window, so a token revoked in
// the meantime still works until the window ends.
func TestCache(t *testing.T) {
	t.Parallel()
	a := demotest.StartAuthz(t, nil)
	web, apiClient := a.SeedDemo(t)
	a.CreateUser(t, "alice", "")
	tok := a.UserToken(t, web, "alice", "openid contacts")
	clk := &demotest.Clock{}
	x := startAPI(t, a, apiClient, 5*time.Second, clk.Now)

	for range 3 {
		if got := x.get(t, bearer(tok.AccessToken)); got.status != 200 {
			t.Fatalf("%d %s", got.status, got.raw)
		}
	}
	if n := x.introspections(); n != 1 {
		t.Fatalf("%d introspections for 3 requests within the cache window, want 1", n)
	}
	x.srv.introspect.mu.Lock()
	_, keyed := x.srv.introspect.cache[sha256.Sum256([]byte(tok.AccessToken))]
	x.srv.introspect.mu.Unlock()
	if !keyed {
		t.Error("the cache is not keyed by the token's SHA-256")
	}

	a.Revoke(t, web, tok.RefreshToken) // revokes the grant's access token too
	clk.Advance(4 * time.Second)
	if got := x.get(t, bearer(tok.AccessToken)); got.status != 200 {
		t.Fatalf("within the cache window a revoked token still works (documented); got %d %s", got.status, got.raw)
	}
	if n := x.introspections(); n != 1 {
		t.Fatalf("%d introspections, want 1", n)
	}

	clk.Advance(time.Second)
	if got := x.get(t, bearer(tok.AccessToken)); got.status != 401 {
		t.Fatalf("after the cache window a revoked token must fail; got %d %s", got.status, got.raw)
	}
	if n := x.introspections(); n != 2 {
		t.Fatalf("%d introspections, want 2", n)
	}
	// Inactive answers are not cached.
	x.get(t, bearer(tok.AccessToken))
	if n := x.introspections(); n != 3 {
		t.Fatalf("%d introspections, want 3: an inactive answer was cached", n)
	}
}

func TestCacheDisabled(t *testing.T) {
	t.Parallel()
	a := demotest.StartAuthz(t, nil)
	web, apiClient := a.SeedDemo(t)
	a.CreateUser(t, "alice", "")
	tok := a.UserToken(t, web, "alice", "openid contacts")
	x := startAPI(t, a, apiClient, 0, nil)

	if got := x.get(t, bearer(tok.AccessToken)); got.status != 200 {
		t.Fatalf("%d %s", got.status, got.raw)
	}
	a.Revoke(t, web, tok.RefreshToken)
	if got := x.get(t, bearer(tok.AccessToken)); got.status != 401 || !strings.Contains(got.challenge, `error="invalid_token"`) {
		t.Fatalf("a revoked token with the cache off: %d %q %s", got.status, got.challenge, got.raw)
	}
	if n := x.introspections(); n != 2 {
		t.Fatalf("%d introspections for 2 requests, want 2", n)
	}
}

// A cached answer never outlives the token's exp, however long the cache.
func TestCacheBoundedByExpiry(t *testing.T) {
	t.Parallel()
	a := demotest.StartAuthz(t, nil, func(c *authz.Config) { c.AccessTokenLifespan = time.Minute })
	web, apiClient := a.SeedDemo(t)
	a.CreateUser(t, "alice", "")
	tok := a.UserToken(t, web, "alice", "openid contacts")
	clk := &demotest.Clock{}
	x := startAPI(t, a, apiClient, time.Hour, clk.Now)

	x.get(t, bearer(tok.AccessToken))
	x.get(t, bearer(tok.AccessToken))
	if n := x.introspections(); n != 1 {
		t.Fatalf("%d introspections, want 1", n)
	}
	x.srv.introspect.mu.Lock()
	entry := x.srv.introspect.cache[sha256.Sum256([]byte(tok.AccessToken))]
	x.srv.introspect.mu.Unlock()
	if exp := time.Unix(entry.info.Exp, 0); !entry.until.Equal(exp) || exp.After(clk.Now().Add(2*time.Minute)) {
		t.Fatalf("cached until %s, want the token's exp %s", entry.until, exp)
	}
	// Past exp by the API's clock the token is asked about again (the
	// authorization server, on real time, still finds it active).
	clk.Advance(time.Minute + time.Second)
	if got := x.get(t, bearer(tok.AccessToken)); got.status != 200 {
		t.Fatalf("%d %s", got.status, got.raw)
	}
	if n := x.introspections(); n != 2 {
		t.Fatalf("%d introspections, want 2: the cache outlived exp", n)
	}
}

// Wrong credentials of the API itself are the API's problem: 502, not a
// verdict on the caller's token.
func TestWrongAPICredentials(t *testing.T) {
	t.Parallel()
	a := demotest.StartAuthz(t, nil)
	web, apiClient := a.SeedDemo(t)
	a.CreateUser(t, "alice", "")
	tok := a.UserToken(t, web, "alice", "openid contacts")
	apiClient.ClientSecret = "wrong"
	x := startAPI(t, a, apiClient, time.Minute, nil)
	got := x.get(t, bearer(tok.AccessToken))
	if got.status != http.StatusBadGateway || got.challenge != "" {
		t.Fatalf("%d %q %s", got.status, got.challenge, got.raw)
	}
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	a := demotest.StartAuthz(t, nil)
	_, apiClient := a.SeedDemo(t)
	cfg := func(issuer string, timeout time.Duration) Config {
		return Config{Issuer: issuer, ClientID: apiClient.ClientID, ClientSecret: apiClient.ClientSecret, StartupTimeout: timeout}
	}

	t.Run("waits for the issuer", func(t *testing.T) {
		a.Unavailable.Store(1)
		s, err := NewHandler(t.Context(), cfg(a.URL, 10*time.Second), demotest.Logger())
		if err != nil {
			t.Fatal(err)
		}
		if s.introspect.endpoint != a.URL+"/oauth2/introspect" {
			t.Errorf("introspection endpoint %q", s.introspect.endpoint)
		}
		if n := a.Unavailable.Load(); n >= 0 {
			t.Errorf("the failing request was not made (unavailable = %d)", n)
		}
	})
	t.Run("gives up at the deadline", func(t *testing.T) {
		gone := httptest.NewServer(http.NotFoundHandler())
		gone.Close()
		_, err := NewHandler(t.Context(), cfg(gone.URL, 300*time.Millisecond), demotest.Logger())
		if err == nil || !strings.Contains(err.Error(), "gave up after 300ms") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("another issuer fails at once", func(t *testing.T) {
		other := strings.Replace(a.URL, "127.0.0.1", "localhost", 1)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err := NewHandler(ctx, cfg(other, time.Minute), demotest.Logger())
		if err == nil || !strings.Contains(err.Error(), "names issuer") {
			t.Fatalf("got %v", err)
		}
	})
}
