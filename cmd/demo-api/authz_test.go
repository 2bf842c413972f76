package main

// A real authorization server for the tests, on its own PostgreSQL
// database, and an ordinary cookie-keeping client that signs in through its
// pages. The pattern follows authz/e2e_helpers_test.go.

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/net/html"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/storage"
	"github.com/authz/authz/storage/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const testPassword = "correct horse battery staple"

// clock is real time moved forward by Advance.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// authzServer is one running authorization server.
type authzServer struct {
	URL   string
	store *storage.Store
	// unavailable is how many of the next requests get 503, as from a
	// server that is still starting.
	unavailable atomic.Int64
}

// startAuthz starts the server first, so its URL can be the issuer, then
// attaches the handler. now is its clock (nil: time.Now).
func startAuthz(t *testing.T, now func() time.Time, opts ...func(*authz.Config)) *authzServer {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	var (
		mu      sync.Mutex
		handler http.Handler
		a       = &authzServer{}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.unavailable.Add(-1) >= 0 {
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
	h, err := authz.New(cfg, store, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	handler = h
	mu.Unlock()
	a.URL, a.store = srv.URL, store
	return a
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (a *authzServer) createClient(t *testing.T, m authz.ClientMetadata) authz.ClientMetadata {
	t.Helper()
	out, err := authz.CreateClient(context.Background(), a.store, m)
	if err != nil {
		t.Fatalf("create client: %v", err)
	}
	return out
}

// seed registers the clients authz dev seeds (with generated secrets:
// an operator-chosen one would get Argon2id and slow every request down).
func (a *authzServer) seed(t *testing.T) (web, api authz.ClientMetadata) {
	t.Helper()
	web = a.createClient(t, authz.ClientMetadata{
		ClientID:               "demo-bff",
		ClientName:             "Contacts demo",
		RedirectURIs:           []string{webRedirect},
		PostLogoutRedirectURIs: []string{"http://localhost:3000/"},
		Scope:                  "openid profile email offline_access contacts",
	})
	api = a.createClient(t, authz.ClientMetadata{
		ClientID:   "demo-api",
		ClientName: "Contacts API",
		GrantTypes: []string{"client_credentials"},
	})
	return web, api
}

// webRedirect is the web client's redirect URI. Nothing listens there: the
// test client reads the code from the redirect.
const webRedirect = "http://localhost:3000/callback"

func (a *authzServer) createUser(t *testing.T, username string) *storage.User {
	t.Helper()
	u := &storage.User{Username: username, Email: username + "@example.com"}
	if err := a.store.CreateUser(context.Background(), u, testPassword); err != nil {
		t.Fatalf("create user: %v", err)
	}
	return u
}

// userToken signs username in with the web client (authorize → login →
// consent → code → exchange) and returns its tokens.
func (a *authzServer) userToken(t *testing.T, web authz.ClientMetadata, username, scope string) *oauth2.Token {
	t.Helper()
	conf := &oauth2.Config{
		ClientID: web.ClientID, ClientSecret: web.ClientSecret, RedirectURL: webRedirect,
		Endpoint: oauth2.Endpoint{AuthURL: a.URL + "/oauth2/authorize", TokenURL: a.URL + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader},
		Scopes:   strings.Fields(scope),
	}
	b := newBrowser(t)
	verifier := oauth2.GenerateVerifier()
	p := b.get(conf.AuthCodeURL("some-state", oauth2.S256ChallengeOption(verifier)))
	if !p.isLogin() {
		t.Fatalf("want the login page, got %d:\n%s", p.status, p.body)
	}
	p = b.submit(p, map[string]string{"username": username, "password": testPassword, "action": "login"})
	if p.isConsent() { // not asked again for a remembered consent
		p = b.submit(p, map[string]string{"action": "allow"})
	}
	loc := p.location(t)
	code := loc.Query().Get("code")
	if code == "" || loc.Query().Get("state") != "some-state" {
		t.Fatalf("no code in %s", loc)
	}
	tok, err := conf.Exchange(context.Background(), code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	return tok
}

// clientToken gets a client_credentials token.
func (a *authzServer) clientToken(t *testing.T, c authz.ClientMetadata) *oauth2.Token {
	t.Helper()
	cc := clientcredentials.Config{ClientID: c.ClientID, ClientSecret: c.ClientSecret, TokenURL: a.URL + "/oauth2/token", AuthStyle: oauth2.AuthStyleInHeader}
	tok, err := cc.Token(context.Background())
	if err != nil {
		t.Fatalf("client_credentials: %v", err)
	}
	return tok
}

// revoke revokes a token at the authorization server (RFC 7009).
func (a *authzServer) revoke(t *testing.T, c authz.ClientMetadata, token string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, a.URL+"/oauth2/revoke", strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ClientID), url.QueryEscape(c.ClientSecret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %s", resp.Status)
	}
}

// countingTransport counts the requests that go through it.
type countingTransport struct {
	n atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

// browser keeps cookies and stops at every redirect.
type browser struct {
	t *testing.T
	c *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, c: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type page struct {
	status int
	header http.Header
	body   string
	url    *url.URL
}

func (b *browser) get(rawURL string) *page {
	b.t.Helper()
	resp, err := b.c.Get(rawURL)
	if err != nil {
		b.t.Fatalf("GET %s: %v", rawURL, err)
	}
	return readPage(b.t, resp)
}

func readPage(t *testing.T, resp *http.Response) *page {
	t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return &page{status: resp.StatusCode, header: resp.Header, body: string(body), url: resp.Request.URL}
}

func (p *page) isLogin() bool {
	return p.status == http.StatusOK && strings.Contains(p.body, `name="password"`)
}

func (p *page) isConsent() bool {
	return p.status == http.StatusOK && strings.Contains(p.body, `value="allow"`)
}

func (p *page) location(t *testing.T) *url.URL {
	t.Helper()
	if p.status != http.StatusSeeOther && p.status != http.StatusFound {
		t.Fatalf("want a redirect, got %d:\n%s", p.status, p.body)
	}
	loc, err := p.url.Parse(p.header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// submit posts the page's one form with its inputs and the given fields.
func (b *browser) submit(p *page, set map[string]string) *page {
	b.t.Helper()
	doc, err := html.Parse(strings.NewReader(p.body))
	if err != nil {
		b.t.Fatal(err)
	}
	action, vals, found := "", url.Values{}, false
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "form":
				found, action = true, attr(n, "action")
			case "input":
				if name := attr(n, "name"); name != "" {
					vals.Add(name, attr(n, "value"))
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if !found {
		b.t.Fatalf("no form on the page (%d):\n%s", p.status, p.body)
	}
	for k, v := range set {
		vals.Set(k, v)
	}
	target, err := p.url.Parse(action)
	if err != nil {
		b.t.Fatal(err)
	}
	resp, err := b.c.PostForm(target.String(), vals)
	if err != nil {
		b.t.Fatalf("POST %s: %v", target, err)
	}
	return readPage(b.t, resp)
}

func attr(n *html.Node, name string) string {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}
