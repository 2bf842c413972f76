package bff

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/demo/api"
	"github.com/authz/authz/internal/demo/demotest"
	"github.com/authz/authz/storage"
	"github.com/authz/authz/storage/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// Shorter names for the harness's types.
type (
	browser = demotest.Browser
	page    = demotest.Page
)

var (
	newBrowser = demotest.NewBrowser
	testLogger = demotest.Logger
)

// contactsAPI is the real contacts API (package api, no cache, so every
// request is introspected; or verifying JWT access tokens for its URL)
// with a record of the access tokens it was shown.
type contactsAPI struct {
	URL  string
	mu   sync.Mutex
	h    http.Handler
	seen []string
}

func startContactsAPI(t *testing.T, a *demotest.Authz, rs authz.ClientMetadata, jwt bool) *contactsAPI {
	t.Helper()
	x := &contactsAPI{}
	// The server starts first: its URL is the resource JWTs must be for.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x.mu.Lock()
		if token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			x.seen = append(x.seen, token)
		}
		h := x.h
		x.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	cfg := api.Config{Issuer: a.URL, ClientID: rs.ClientID, ClientSecret: rs.ClientSecret}
	if jwt {
		cfg.Verify, cfg.Resource = api.VerifyJWT, srv.URL
	}
	h, err := api.NewHandler(t.Context(), cfg, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	x.mu.Lock()
	x.h = h
	x.mu.Unlock()
	x.URL = srv.URL
	return x
}

// tokens returns the access tokens the API was shown, in order.
func (x *contactsAPI) tokens() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.seen)
}

// contacts asks the API for the contacts, with token, as the BFF would,
// but unrecorded.
func (x *contactsAPI) contacts(t *testing.T, token string) *contactsDoc {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/contacts", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	x.mu.Lock()
	h := x.h
	x.mu.Unlock()
	h.ServeHTTP(w, req)
	var doc contactsDoc
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil || w.Code != http.StatusOK || len(doc.Contacts) != 3 {
		t.Fatalf("GET /contacts: %d %v\n%s", w.Code, err, w.Body)
	}
	return &doc
}

// rig is the three servers of the demo: the authorization server, the
// contacts API and the BFF under test, with the BFF's client, the API's
// client and a user registered.
type rig struct {
	authz  *demotest.Authz
	api    *contactsAPI
	bff    *Server
	url    string // the BFF's
	web    authz.ClientMetadata
	rs     authz.ClientMetadata
	alice  *storage.User
	clock  *demotest.Clock // the BFF's
	scopes []string
}

func newRig(t *testing.T, opts ...func(*Config)) *rig {
	t.Helper()
	return newRigFor(t, false, opts...)
}

// newJWTRig is newRig with JWT access tokens: demo-bff gets them for the
// API's URL, which the BFF asks for as its resource, and the API verifies
// them itself.
func newJWTRig(t *testing.T, opts ...func(*Config)) *rig {
	t.Helper()
	return newRigFor(t, true, opts...)
}

func newRigFor(t *testing.T, jwt bool, opts ...func(*Config)) *rig {
	t.Helper()
	a := demotest.StartAuthz(t, nil)
	rs := a.CreateClient(t, authz.ClientMetadata{ClientID: "demo-api", ClientName: "Contacts API", GrantTypes: []string{"client_credentials"}})
	x := startContactsAPI(t, a, rs, jwt)

	// The BFF's server starts first, so that its URL is known for the
	// client's registration; the handler is attached once built.
	var (
		mu      sync.Mutex
		handler http.Handler = http.NotFoundHandler()
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		h := handler
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	m := authz.ClientMetadata{
		ClientID:               "demo-bff",
		ClientName:             "Contacts demo",
		RedirectURIs:           []string{srv.URL + "/callback"},
		PostLogoutRedirectURIs: []string{srv.URL + "/"},
		Scope:                  DefaultScope,
	}
	if jwt {
		m.AccessTokenStrategy, m.Audience = "jwt", []string{x.URL}
	}
	web := a.CreateClient(t, m)
	clk := &demotest.Clock{}
	cfg := Config{
		Issuer: a.URL, ClientID: web.ClientID, ClientSecret: web.ClientSecret,
		RedirectURI: srv.URL + "/callback", APIURL: x.URL, Scopes: strings.Fields(DefaultScope),
		Now: clk.Now,
	}
	if jwt {
		cfg.Resource = x.URL
	}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := NewServer(t.Context(), cfg, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	handler = s
	mu.Unlock()
	return &rig{
		authz: a, api: x, bff: s, url: srv.URL, web: web, rs: rs, clock: clk, scopes: cfg.Scopes,
		alice: a.CreateUser(t, "alice", "Alice Liddell"),
	}
}

// through goes on from p across the servers as alice, answering the
// consent page with decision.
func (r *rig) through(b *browser, p *page, decision string) (*page, []*page) {
	return b.Through(p, "alice", demotest.Password, decision)
}

// signIn clicks "Get contacts" on the home page of a signed-out browser and
// signs in, answering the consent page with Allow, and returns the
// contacts page.
func (r *rig) signIn(t *testing.T, b *browser) *page {
	t.Helper()
	home := b.Get(r.url + "/")
	p, _ := r.through(b, b.Submit(home, "get-contacts", nil), "allow")
	if _, ok := p.Text(t, "contacts"); p.Status != http.StatusOK || !ok {
		t.Fatalf("want the contacts page, got %d at %s:\n%s", p.Status, p.URL, p.Body)
	}
	return p
}

// session returns the BFF's session of the browser.
func (r *rig) session(b *browser) *session {
	u, _ := url.Parse(r.url)
	for _, c := range b.Client.Jar.Cookies(u) {
		if c.Name == sessionCookie {
			if s, ok := r.bff.sessions.get(c.Value); ok {
				return s
			}
		}
	}
	return nil
}
