package authz_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/net/html"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/storage"
	"github.com/authz/authz/storage/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const testPassword = "correct horse battery staple"

// env is one running authorization server on its own database.
type env struct {
	clock  *testClock
	srv    *httptest.Server
	store  *storage.Store
	pool   *pgxpool.Pool
	cfg    authz.Config
	issuer string
	h      *authz.Handler
}

type envOption func(*authz.Config)

// newEnv starts the server first, so that its URL can be the issuer, then
// attaches the handler.
func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	dbURL := pgtest.NewDatabase(t)
	pool, err := storage.NewPool(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return newEnvOnPool(t, pool, opts...)
}

// newEnvOnPool starts another server instance on an existing database, as a
// second replica or a restarted process would be.
func newEnvOnPool(t *testing.T, pool *pgxpool.Pool, opts ...envOption) *env {
	t.Helper()
	var (
		mu      sync.Mutex
		handler http.Handler
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
	clock := &testClock{}
	cfg.Now = clock.Now
	for _, o := range opts {
		o(&cfg)
	}
	store := storage.New(pool, storage.WithClock(cfg.Now))
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	h, err := authz.New(cfg, store, logger)
	if err != nil {
		t.Fatal(err)
	}
	// As authz serve does. It stops before the database is dropped:
	// cleanups run last registered first.
	t.Cleanup(store.StartClientCache(listenConfig(t, pool), logger))
	mu.Lock()
	handler = h
	mu.Unlock()
	return &env{clock: clock, srv: srv, store: store, pool: pool, cfg: cfg, issuer: cfg.Issuer, h: h}
}

// listenConfig is where the client cache listens: the database itself,
// past the pooler AUTHZ_TEST_POOLER may have put in between.
func listenConfig(t *testing.T, pool *pgxpool.Pool) *pgx.ConnConfig {
	t.Helper()
	cfg, err := pgx.ParseConfig(pgtest.DirectURL(pool.Config().ConnString()))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// testClock is the server's clock: real time moved forward by Advance.
type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

func (e *env) url(path string) string { return e.issuer + path }

func (e *env) createClient(t *testing.T, m authz.ClientMetadata) authz.ClientMetadata {
	t.Helper()
	out, err := authz.CreateClient(context.Background(), e.store, m)
	if err != nil {
		t.Fatalf("create client: %v", err)
	}
	return out
}

func (e *env) createUser(t *testing.T, username string) *storage.User {
	t.Helper()
	u := &storage.User{Username: username, Email: username + "@example.com"}
	if err := e.store.CreateUser(context.Background(), u, testPassword); err != nil {
		t.Fatalf("create user: %v", err)
	}
	return u
}

// confidential registers a BFF-style client with client_secret_basic.
func (e *env) confidential(t *testing.T, method string) authz.ClientMetadata {
	return e.createClient(t, authz.ClientMetadata{
		ClientName:              "Contacts BFF",
		RedirectURIs:            []string{"https://app.example.com/callback"},
		Scope:                   "openid profile contacts",
		TokenEndpointAuthMethod: method,
	})
}

// browser is an ordinary cookie-keeping HTTP client that stops at every
// redirect, so each hop can be asserted.
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

// page is a fetched response with its body read.
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

func (b *browser) post(rawURL string, form url.Values) *page {
	b.t.Helper()
	resp, err := b.c.PostForm(rawURL, form)
	if err != nil {
		b.t.Fatalf("POST %s: %v", rawURL, err)
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

// form is the one <form> of a page: its action and every named input.
type form struct {
	action string
	values url.Values
}

func (p *page) form(t *testing.T) form {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(p.body))
	if err != nil {
		t.Fatal(err)
	}
	f := form{values: url.Values{}}
	found := false
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "form":
				found = true
				f.action = attr(n, "action")
			case "input":
				if name := attr(n, "name"); name != "" {
					f.values.Add(name, attr(n, "value"))
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if !found {
		t.Fatalf("no form on the page (status %d):\n%s", p.status, p.body)
	}
	return f
}

func attr(n *html.Node, name string) string {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}

// submit posts the form with the given fields set, relative to the page.
func (b *browser) submit(p *page, f form, set map[string]string) *page {
	b.t.Helper()
	vals := url.Values{}
	for k, v := range f.values {
		vals[k] = append([]string(nil), v...)
	}
	for k, v := range set {
		vals.Set(k, v)
	}
	target, err := p.url.Parse(f.action)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.post(target.String(), vals)
}

func isLoginPage(p *page) bool {
	return p.status == http.StatusOK && strings.Contains(p.body, `name="password"`)
}

func isConsentPage(p *page) bool {
	return p.status == http.StatusOK && strings.Contains(p.body, `value="allow"`)
}

// login fills the login form on p and returns what the server answers: the
// flow goes on in that response (the consent page, or the redirect to the
// client).
func (b *browser) login(p *page, username, password string) *page {
	b.t.Helper()
	if !isLoginPage(p) {
		b.t.Fatalf("want the login page, got %d:\n%s", p.status, p.body)
	}
	return b.submit(p, p.form(b.t), map[string]string{"username": username, "password": password, "action": "login"})
}

// consent presses Allow or Deny on the consent page and returns the redirect.
func (b *browser) consent(p *page, decision string) *url.URL {
	b.t.Helper()
	if !isConsentPage(p) {
		b.t.Fatalf("want the consent page, got %d:\n%s", p.status, p.body)
	}
	return b.submit(p, p.form(b.t), map[string]string{"action": decision}).location(b.t)
}

// authorizeURL builds an authorization request.
func authorizeURL(issuer string, params map[string]string) string {
	q := url.Values{}
	for k, v := range params {
		q.Set(k, v)
	}
	return issuer + "/oauth2/authorize?" + q.Encode()
}

// tokenResponse is the token endpoint's JSON, success or error.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	Scope        string `json:"scope"`
	Error        string `json:"error"`
	Description  string `json:"error_description"`
	status       int
	header       http.Header
}

// postForm posts a form with optional HTTP Basic client credentials,
// encoded as RFC 6749 2.3.1 asks.
func postForm(t *testing.T, endpoint string, form url.Values, basicID, basicSecret string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basicID != "" {
		req.SetBasicAuth(url.QueryEscape(basicID), url.QueryEscape(basicSecret))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func (e *env) token(t *testing.T, form url.Values, id, secret string) tokenResponse {
	t.Helper()
	resp, body := postForm(t, e.url("/oauth2/token"), form, id, secret)
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		t.Fatalf("token response %d is not JSON: %v\n%s", resp.StatusCode, err, body)
	}
	tr.status = resp.StatusCode
	tr.header = resp.Header
	return tr
}

func (e *env) introspect(t *testing.T, token, id, secret string) map[string]any {
	t.Helper()
	return e.introspectHinted(t, token, "", id, secret)
}

// introspectHinted is introspect with a token_type_hint ("": none).
func (e *env) introspectHinted(t *testing.T, token, hint, id, secret string) map[string]any {
	t.Helper()
	form := url.Values{"token": {token}}
	if hint != "" {
		form.Set("token_type_hint", hint)
	}
	resp, body := postForm(t, e.url("/oauth2/introspect"), form, id, secret)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("introspect: %d %s", resp.StatusCode, body)
	}
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("introspect: %v\n%s", err, body)
	}
	return out
}

// resourceServer registers a client that only introspects.
func (e *env) resourceServer(t *testing.T) authz.ClientMetadata {
	return e.createClient(t, authz.ClientMetadata{
		ClientName:              "Contacts API",
		GrantTypes:              []string{"client_credentials"},
		TokenEndpointAuthMethod: "client_secret_basic",
	})
}

func authzPublicClient() authz.ClientMetadata {
	return authz.ClientMetadata{
		ClientName:              "Contacts SPA",
		RedirectURIs:            []string{"http://127.0.0.1:5173/callback"},
		Scope:                   "openid profile contacts",
		TokenEndpointAuthMethod: "none",
	}
}
