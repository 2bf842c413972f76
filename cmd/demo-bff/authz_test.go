package main

// A real authorization server for the tests, on its own PostgreSQL
// database, and an ordinary cookie-keeping client that signs in through its
// pages. The pattern follows authz/e2e_helpers_test.go.

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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/net/html"

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

func (a *authzServer) createUser(t *testing.T, username, name string) *storage.User {
	t.Helper()
	u := &storage.User{Username: username, Email: username + "@example.com", Name: name}
	if err := a.store.CreateUser(context.Background(), u, testPassword); err != nil {
		t.Fatalf("create user: %v", err)
	}
	return u
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

// htmlForm is a <form> of a page: its method, action, named inputs and the
// ids of its elements.
type htmlForm struct {
	method, action string
	values         url.Values
	ids            []string
}

func (p *page) forms(t *testing.T) []*htmlForm {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(p.body))
	if err != nil {
		t.Fatal(err)
	}
	var out []*htmlForm
	var walk func(n *html.Node, f *htmlForm)
	walk = func(n *html.Node, f *htmlForm) {
		if n.Type == html.ElementNode {
			if n.Data == "form" { // HTML forms do not nest
				f = &htmlForm{method: strings.ToUpper(attr(n, "method")), action: attr(n, "action"), values: url.Values{}}
				out = append(out, f)
			}
			if f != nil {
				if id := attr(n, "id"); id != "" {
					f.ids = append(f.ids, id)
				}
				if name := attr(n, "name"); n.Data == "input" && name != "" {
					f.values.Add(name, attr(n, "value"))
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, f)
		}
	}
	walk(doc, nil)
	return out
}

// form returns the page's form holding the element with the given id, or
// with id "", its only form.
func (p *page) form(t *testing.T, id string) htmlForm {
	t.Helper()
	forms := p.forms(t)
	for _, f := range forms {
		if id == "" && len(forms) == 1 || id != "" && slices.Contains(f.ids, id) {
			return *f
		}
	}
	t.Fatalf("no form with #%s on the page (%d):\n%s", id, p.status, p.body)
	return htmlForm{}
}

// submit sends the page's form that holds #id (or its only form) with the
// given fields set.
func (b *browser) submit(p *page, id string, set map[string]string) *page {
	b.t.Helper()
	f := p.form(b.t, id)
	for k, v := range set {
		f.values.Set(k, v)
	}
	target, err := p.url.Parse(f.action)
	if err != nil {
		b.t.Fatal(err)
	}
	if f.method == http.MethodGet {
		target.RawQuery = f.values.Encode()
		return b.get(target.String())
	}
	resp, err := b.c.PostForm(target.String(), f.values)
	if err != nil {
		b.t.Fatalf("POST %s: %v", target, err)
	}
	return readPage(b.t, resp)
}

// follow follows redirects from p until a page that is not one.
func (b *browser) follow(p *page) *page {
	b.t.Helper()
	for range 20 {
		if p.status != http.StatusSeeOther && p.status != http.StatusFound && p.status != http.StatusTemporaryRedirect {
			return p
		}
		p = b.get(p.location(b.t).String())
	}
	b.t.Fatalf("too many redirects, at %s", p.url)
	return nil
}

// text returns the text of the element with the given id, and whether the
// page has one.
func (p *page) text(t *testing.T, id string) (string, bool) {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(p.body))
	if err != nil {
		t.Fatal(err)
	}
	var found *html.Node
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if found != nil {
			return
		}
		if n.Type == html.ElementNode && attr(n, "id") == id {
			found = n
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	if found == nil {
		return "", false
	}
	var sb strings.Builder
	var collect func(n *html.Node)
	collect = func(n *html.Node) {
		if n.Type == html.TextNode {
			sb.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			collect(c)
		}
	}
	collect(found)
	return strings.Join(strings.Fields(sb.String()), " "), true
}

// cookies are the cookies a response sets.
func (p *page) cookies() map[string]*http.Cookie {
	out := map[string]*http.Cookie{}
	for _, c := range (&http.Response{Header: p.header}).Cookies() {
		out[c.Name] = c
	}
	return out
}

func attr(n *html.Node, name string) string {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}

// introspect asks the authorization server whether a token is active.
func (a *authzServer) active(t *testing.T, c authz.ClientMetadata, token string) bool {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, a.URL+"/oauth2/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ClientID), url.QueryEscape(c.ClientSecret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Active bool `json:"active"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("introspect: %s %v", resp.Status, err)
	}
	return out.Active
}
