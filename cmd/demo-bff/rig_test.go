package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/storage"
)

// contactsAPI stands in for cmd/demo-api, a main package of its own that
// cannot be imported here. Like it, it checks every bearer token with the
// real authorization server's introspection endpoint (no cache) and
// answers in its format. It records the access tokens it was shown.
type contactsAPI struct {
	URL  string
	mu   sync.Mutex
	seen []string
}

func startContactsAPI(t *testing.T, a *authzServer, rs authz.ClientMetadata) *contactsAPI {
	t.Helper()
	api := &contactsAPI{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if r.URL.Path != "/contacts" || !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="contacts"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		api.mu.Lock()
		api.seen = append(api.seen, token)
		api.mu.Unlock()
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, a.URL+"/oauth2/introspect", strings.NewReader(url.Values{"token": {token}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(rs.ClientID), url.QueryEscape(rs.ClientSecret))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		var info struct {
			Active   bool   `json:"active"`
			Scope    string `json:"scope"`
			Sub      string `json:"sub"`
			Username string `json:"username"`
			TokenUse string `json:"token_use"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		switch {
		case !info.Active || info.TokenUse != "access_token":
			w.Header().Set("WWW-Authenticate", `Bearer realm="contacts", error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
		case !slices.Contains(strings.Fields(info.Scope), "contacts"):
			w.Header().Set("WWW-Authenticate", `Bearer realm="contacts", error="insufficient_scope", scope="contacts"`)
			w.WriteHeader(http.StatusForbidden)
		default:
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{
				"sub": info.Sub, "username": info.Username,
				"contacts": []map[string]string{
					{"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+1 555 0101"},
					{"name": "Alan Turing", "email": "alan@example.com", "phone": "+1 555 0102"},
					{"name": "Grace Hopper", "email": "grace@example.com", "phone": "+1 555 0103"},
				},
			})
		}
	}))
	t.Cleanup(srv.Close)
	api.URL = srv.URL
	return api
}

// tokens returns the access tokens the API was shown, in order.
func (api *contactsAPI) tokens() []string {
	api.mu.Lock()
	defer api.mu.Unlock()
	return slices.Clone(api.seen)
}

// rig is the three servers of the demo: the authorization server, the
// contacts API and the BFF under test, with the BFF's client, the API's
// client and a user registered.
type rig struct {
	authz  *authzServer
	api    *contactsAPI
	bff    *Server
	url    string // the BFF's
	web    authz.ClientMetadata
	rs     authz.ClientMetadata
	alice  *storage.User
	clock  *clock // the BFF's
	scopes []string
}

func newRig(t *testing.T, opts ...func(*Config)) *rig {
	t.Helper()
	a := startAuthz(t, nil)
	rs := a.createClient(t, authz.ClientMetadata{ClientID: "demo-api", ClientName: "Contacts API", GrantTypes: []string{"client_credentials"}})
	api := startContactsAPI(t, a, rs)

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
	web := a.createClient(t, authz.ClientMetadata{
		ClientID:               "demo-bff",
		ClientName:             "Contacts demo",
		RedirectURIs:           []string{srv.URL + "/callback"},
		PostLogoutRedirectURIs: []string{srv.URL + "/"},
		Scope:                  DefaultScope,
	})
	clk := &clock{}
	cfg := Config{
		Issuer: a.URL, ClientID: web.ClientID, ClientSecret: web.ClientSecret,
		RedirectURI: srv.URL + "/callback", APIURL: api.URL, Scopes: strings.Fields(DefaultScope),
		Now: clk.Now,
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
		authz: a, api: api, bff: s, url: srv.URL, web: web, rs: rs, clock: clk, scopes: cfg.Scopes,
		alice: a.createUser(t, "alice", "Alice Liddell"),
	}
}

// through goes on from p across the servers: it follows redirects, signs
// in as alice on the login page and answers the consent page with
// decision, until a page that is none of these. It returns that page and
// every page on the way.
func (r *rig) through(b *browser, p *page, decision string) (*page, []*page) {
	b.t.Helper()
	var trail []*page
	for range 20 {
		trail = append(trail, p)
		switch {
		case p.status == http.StatusSeeOther || p.status == http.StatusFound || p.status == http.StatusTemporaryRedirect:
			p = b.get(p.location(b.t).String())
		case p.isLogin():
			p = b.submit(p, "", map[string]string{"username": "alice", "password": testPassword, "action": "login"})
		case p.isConsent():
			p = b.submit(p, "", map[string]string{"action": decision})
		default:
			return p, trail
		}
	}
	b.t.Fatalf("no end in sight at %s", p.url)
	return nil, nil
}

// signIn clicks "Get contacts" on the home page of a signed-out browser and
// signs in, answering the consent page with Allow, and returns the
// contacts page.
func (r *rig) signIn(b *browser) *page {
	b.t.Helper()
	home := b.get(r.url + "/")
	p, _ := r.through(b, b.submit(home, "get-contacts", nil), "allow")
	if _, ok := p.text(b.t, "contacts"); p.status != http.StatusOK || !ok {
		b.t.Fatalf("want the contacts page, got %d at %s:\n%s", p.status, p.url, p.body)
	}
	return p
}

// session returns the BFF's session of the browser.
func (r *rig) session(b *browser) *session {
	b.t.Helper()
	u, _ := url.Parse(r.url)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == sessionCookie {
			if s, ok := r.bff.sessions.get(c.Value); ok {
				return s
			}
		}
	}
	return nil
}
