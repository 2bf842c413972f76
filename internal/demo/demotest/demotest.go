// Package demotest is the test harness of the demo apps (internal/demo/bff,
// internal/demo/api) and of the commands that run them: a real
// authorization server on its own PostgreSQL database, and an ordinary
// cookie-keeping browser that signs in through its pages. The pattern
// follows authz/e2e_helpers_test.go.
//
// It is for tests only: no other code may import it. The databases come
// from storage/pgtest, so a test package that starts a server must run
// pgtest.Main from its TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
package demotest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/storage"
	"github.com/authz/authz/storage/pgtest"
)

// Password is the password of every user CreateUser makes.
const Password = "correct horse battery staple"

// Demo client registrations as authz dev seeds them. Nothing listens at
// DemoRedirect in the API's tests: UserToken reads the code from the
// redirect.
const (
	DemoRedirect   = "http://localhost:3000/callback"
	DemoPostLogout = "http://localhost:3000/"
	DemoScope      = "openid profile email offline_access contacts"
)

// Logger logs to stderr at debug level with go test -v, and nowhere
// otherwise.
func Logger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Clock is real time moved forward by Advance.
type Clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// SyncBuffer is a bytes.Buffer that a running server may write while the
// test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Authz is one running authorization server.
type Authz struct {
	URL   string // the issuer
	Store *storage.Store
	// Unavailable is how many of the next requests get 503, as from a
	// server that is still starting.
	Unavailable atomic.Int64
}

// StartAuthz starts an authorization server on a fresh database, stopped
// when the test ends. The HTTP server starts first, so that its URL can be
// the issuer; the handler is attached once built. now is its clock (nil:
// time.Now); opts change its configuration.
func StartAuthz(t testing.TB, now func() time.Time, opts ...func(*authz.Config)) *Authz {
	t.Helper()
	pool, err := storage.NewPool(context.Background(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	var (
		mu      sync.Mutex
		handler http.Handler
		a       = &Authz{}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.Unavailable.Add(-1) >= 0 {
			http.Error(w, "starting up", http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		h := handler
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	cfg, err := authz.ConfigFromEnv(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Issuer = srv.URL
	cfg.Secrets = [][]byte{[]byte("test-secret-test-secret-test-secret-0123")}
	cfg.Now = now
	for _, o := range opts {
		o(&cfg)
	}
	var storeOpts []storage.Option
	if now != nil {
		storeOpts = append(storeOpts, storage.WithClock(now))
	}
	store := storage.New(pool, storeOpts...)
	h, err := authz.New(cfg, store, Logger())
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	handler = h
	mu.Unlock()
	a.URL, a.Store = srv.URL, store
	return a
}

// CreateClient registers a client and returns it with its secret.
func (a *Authz) CreateClient(t testing.TB, m authz.ClientMetadata) authz.ClientMetadata {
	t.Helper()
	out, err := authz.CreateClient(context.Background(), a.Store, m)
	if err != nil {
		t.Fatalf("create client: %v", err)
	}
	return out
}

// CreateUser adds a user with Password and an email at example.com.
func (a *Authz) CreateUser(t testing.TB, username, name string) *storage.User {
	t.Helper()
	u := &storage.User{Username: username, Email: username + "@example.com", Name: name}
	if err := a.Store.CreateUser(context.Background(), u, Password); err != nil {
		t.Fatalf("create user: %v", err)
	}
	return u
}

// SeedDemo registers the demo clients as authz dev does: demo-bff at
// DemoRedirect and demo-api for introspection. Their secrets are
// generated: an operator-chosen one would get Argon2id and slow every
// request down.
func (a *Authz) SeedDemo(t testing.TB) (web, api authz.ClientMetadata) {
	t.Helper()
	web = a.CreateClient(t, authz.ClientMetadata{
		ClientID:               "demo-bff",
		ClientName:             "Contacts demo",
		RedirectURIs:           []string{DemoRedirect},
		PostLogoutRedirectURIs: []string{DemoPostLogout},
		Scope:                  DemoScope,
	})
	api = a.CreateClient(t, authz.ClientMetadata{
		ClientID:   "demo-api",
		ClientName: "Contacts API",
		GrantTypes: []string{"client_credentials"},
	})
	return web, api
}

// UserToken signs username in with the web client at its first redirect
// URI (authorize → login → consent → code → exchange) and returns the
// tokens. Nothing need listen at the redirect URI. opts go with both the
// authorization request and the exchange, such as Resource's.
func (a *Authz) UserToken(t testing.TB, web authz.ClientMetadata, username, scope string, opts ...oauth2.AuthCodeOption) *oauth2.Token {
	t.Helper()
	conf := &oauth2.Config{
		ClientID: web.ClientID, ClientSecret: web.ClientSecret, RedirectURL: web.RedirectURIs[0],
		Endpoint: oauth2.Endpoint{AuthURL: a.URL + "/oauth2/authorize", TokenURL: a.URL + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader},
		Scopes:   strings.Fields(scope),
	}
	b := NewBrowser(t)
	verifier := oauth2.GenerateVerifier()
	p := b.Get(conf.AuthCodeURL("some-state", append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}, opts...)...))
	if !p.IsLogin() {
		t.Fatalf("want the login page, got %d:\n%s", p.Status, p.Body)
	}
	p = b.Submit(p, "", map[string]string{"username": username, "password": Password, "action": "login"})
	if p.IsConsent() { // not asked again for a remembered consent
		p = b.Submit(p, "", map[string]string{"action": "allow"})
	}
	loc := p.Location(t)
	code := loc.Query().Get("code")
	if code == "" || loc.Query().Get("state") != "some-state" {
		t.Fatalf("no code in %s", loc)
	}
	tok, err := conf.Exchange(context.Background(), code, append([]oauth2.AuthCodeOption{oauth2.VerifierOption(verifier)}, opts...)...)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return tok
}

// Resource asks for an access token for resource (RFC 8707), in
// UserToken.
func Resource(resource string) oauth2.AuthCodeOption {
	return oauth2.SetAuthURLParam("resource", resource)
}

// ClientToken gets a client_credentials token.
func (a *Authz) ClientToken(t testing.TB, c authz.ClientMetadata) *oauth2.Token {
	t.Helper()
	cc := clientcredentials.Config{ClientID: c.ClientID, ClientSecret: c.ClientSecret, TokenURL: a.URL + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader}
	tok, err := cc.Token(context.Background())
	if err != nil {
		t.Fatalf("client_credentials: %v", err)
	}
	return tok
}

// Revoke revokes a token as client c (RFC 7009).
func (a *Authz) Revoke(t testing.TB, c authz.ClientMetadata, token string) {
	t.Helper()
	resp := a.post(t, "/oauth2/revoke", c, token)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %s", resp.Status)
	}
}

// Active asks, as client c, whether a token is active (RFC 7662).
func (a *Authz) Active(t testing.TB, c authz.ClientMetadata, token string) bool {
	t.Helper()
	resp := a.post(t, "/oauth2/introspect", c, token)
	defer resp.Body.Close()
	var out struct {
		Active bool `json:"active"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("introspect: %s %v", resp.Status, err)
	}
	return out.Active
}

// post posts token to path, authenticated as c with client_secret_basic.
func (a *Authz) post(t testing.TB, path string, c authz.ClientMetadata, token string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, a.URL+path, strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ClientID), url.QueryEscape(c.ClientSecret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}
