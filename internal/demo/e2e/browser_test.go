package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/browsertest"
	"github.com/authz/authz/internal/demo/api"
	"github.com/authz/authz/internal/demo/bff"
	"github.com/authz/authz/internal/demo/demotest"
)

// TestDemoInBrowser clicks through the demo in headless Chromium, as a
// person trying it would: the BFF's "Get contacts", authz's login and
// consent pages, the contacts; Deny, which leads back to the BFF's home
// page with a notice; and Sign out, after which "Get contacts" asks for
// the password again. Every page must load without
// console errors, CSP violations or failed requests.
func TestDemoInBrowser(t *testing.T) {
	t.Parallel()
	env := browsertest.Require(t, "demo.mjs")
	clickThrough(t, env, startDemo(t, false))
}

// TestDemoInBrowserJWT is the same with JWT access tokens, as "make demo
// DEMO_TOKENS=jwt" runs it: the BFF's client gets RFC 9068 access tokens
// for the API's URL (RFC 8707 resource), and the contacts API verifies
// them itself against the JWKS, never asking authz about a token.
func TestDemoInBrowserJWT(t *testing.T) {
	t.Parallel()
	env := browsertest.Require(t, "demo.mjs")
	d := startDemo(t, true)
	clickThrough(t, env, d)
	if n := d.apiCalls.count("/oauth2/introspect"); n != 0 {
		t.Errorf("the API introspected %d times, want 0: it verifies JWTs itself", n)
	}
	if n := d.apiCalls.count("/.well-known/jwks.json"); n == 0 {
		t.Errorf("the API never fetched the JWKS")
	}
}

// clickThrough runs demo.mjs against d and checks what it saw.
func clickThrough(t *testing.T, env browsertest.Env, d *demo) {
	t.Helper()
	res := new(demoResult)
	env.Run(t, browsertest.Script{
		Name:    "demo.mjs",
		Timeout: 90 * time.Second,
		Input: map[string]any{
			// The BFF's 127.0.0.1 address: it must send the browser on to
			// localhost, its redirect URI's host, where its cookies live.
			"bff":         d.bffLoopback + "/",
			"issuer":      d.issuer,
			"allow":       map[string]string{"username": "alice", "password": demotest.Password},
			"deny":        map[string]string{"username": "bob", "password": demotest.Password},
			"screenshots": browsertest.ScreenshotDir(t),
			"chromium":    env.Chromium,
			"timeoutMs":   75000,
		},
	}, res)

	if res.BFFOrigin != d.bff {
		t.Errorf("opening %s/ ended at %s, want the redirect URI's origin %s", d.bffLoopback, res.BFFOrigin, d.bff)
	}

	// 1. Get contacts → login → Allow → the contacts.
	a := res.Allow
	if !a.Home.HasSignIn || a.Home.Who != "" {
		t.Errorf("the BFF's home page of a new browser: %+v, want Sign in and no name", a.Home)
	}
	if a.Login.Origin != d.issuer || a.Login.Path != "/oauth2/authorize" {
		t.Errorf("Get contacts led to %s%s, want authz's /oauth2/authorize", a.Login.Origin, a.Login.Path)
	}
	if a.Consent.Heading != "Contacts demo wants to access your account" {
		t.Errorf("consent page heading %q", a.Consent.Heading)
	}
	c := a.Contacts
	if c.Origin != d.bff || c.Path != "/contacts" || c.Error != "" {
		t.Fatalf("after Allow the browser shows %s%s, error %q; want the BFF's /contacts", c.Origin, c.Path, c.Error)
	}
	if c.Who != "Alice Example" || !c.HasSignOut {
		t.Errorf("the contacts page names %q (Sign out: %v), want Alice Example and Sign out", c.Who, c.HasSignOut)
	}
	if want := d.contactsOf(t, "alice"); !reflect.DeepEqual(c.Contacts, want) {
		t.Errorf("the contacts table shows %+v, want the API's contacts of alice %+v", c.Contacts, want)
	}
	if c.Caption != "Contacts of alice (Alice Example)" {
		t.Errorf("the contacts table's caption %q, want it to name alice by username and name", c.Caption)
	}

	// 2. Deny: the BFF's callback sends the browser home, which says
	// access was not allowed and offers to try again; no contacts.
	if !res.Deny.Consent.IsConsent {
		t.Errorf("bob saw no consent page: %+v", res.Deny.Consent)
	}
	dn := res.Deny.Denied
	if dn.Origin != d.bff || dn.Path != "/" || !strings.HasPrefix(dn.Notice, "You didn't allow access.") || dn.Error != "" ||
		dn.Contacts != nil || dn.Who != "" || !dn.HasGetContacts {
		t.Errorf("after Deny the browser shows %s%s with notice %q, error %q, contacts %v, name %q; want the BFF's home page saying access was not allowed",
			dn.Origin, dn.Path, dn.Notice, dn.Error, dn.Contacts, dn.Who)
	}
	if !hasNavigation(res.Navigations, "deny", d.bff+"/", http.StatusOK) {
		t.Errorf("the denied callback did not lead home; documents loaded: %v", res.Navigations)
	}

	// 3. Sign out: back on the BFF, signed out at authz too.
	l := res.Logout
	if l.Confirm != nil {
		t.Logf("authz asked to confirm the sign-out although the BFF sent id_token_hint: %+v", l.Confirm)
	}
	so := l.SignedOut
	if so.Origin != d.bff || so.Path != "/" || !strings.HasPrefix(so.Notice, "You have signed out.") || so.Who != "" || !so.HasSignIn {
		t.Errorf("after Sign out the browser shows %s%s, notice %q, name %q, Sign in %v; want the BFF's home page saying so",
			so.Origin, so.Path, so.Notice, so.Who, so.HasSignIn)
	}
	if ag := l.Again; !ag.IsLogin || ag.Origin != d.issuer || ag.Contacts != nil {
		t.Errorf("Get contacts after signing out shows %s%s (login form: %v, contacts: %v); want authz's login page",
			ag.Origin, ag.Path, ag.IsLogin, ag.Contacts)
	}

	d.checkEvents(t, res)
}

// demo is authz, the contacts API and the BFF, running.
type demo struct {
	authz       *demotest.Authz
	issuer      string // authz's URL at localhost
	api         string // the API's URL
	bff         string // the BFF's URL at localhost, as registered
	bffLoopback string // the same server at 127.0.0.1
	web         authz.ClientMetadata
	jwt         bool       // JWT access tokens, verified by the API itself
	apiCalls    *pathCount // the API's requests to authz
}

// pathCount counts the requests that go through it, by path.
type pathCount struct {
	mu sync.Mutex
	n  map[string]int
}

func (p *pathCount) RoundTrip(r *http.Request) (*http.Response, error) {
	p.mu.Lock()
	p.n[r.URL.Path]++
	p.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (p *pathCount) count(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n[path]
}

// startDemo starts the three servers as "authz dev" and the demo commands
// run them: every page at localhost, on its own port. Users alice and bob
// are registered, with the BFF's client demo-bff and the API's demo-api.
// With jwt, as "authz dev --demo --demo-jwt-access-tokens": demo-bff gets
// JWT access tokens and the API's URL as its audience, the BFF asks for
// that resource, and the API verifies the tokens itself.
func startDemo(t *testing.T, jwt bool) *demo {
	t.Helper()
	logger := demotest.Logger()
	// authz's issuer is its localhost URL, as authz dev's is.
	a := demotest.StartAuthz(t, nil, func(c *authz.Config) { c.Issuer = onLocalhost(t, c.Issuer) })
	d := &demo{authz: a, issuer: onLocalhost(t, a.URL), jwt: jwt, apiCalls: &pathCount{n: map[string]int{}}}
	a.CreateUser(t, "alice", "Alice Example")
	a.CreateUser(t, "bob", "Bob Example")

	rs := a.CreateClient(t, authz.ClientMetadata{
		ClientID: "demo-api", ClientName: "Contacts API", GrantTypes: []string{"client_credentials"},
	})
	// The API's server starts first too: in JWT mode its URL is the
	// resource that tokens must be for.
	apiSrv, attachAPI := startLate(t)
	d.api = apiSrv.URL
	apiCfg := api.Config{
		Issuer: d.issuer, ClientID: rs.ClientID, ClientSecret: rs.ClientSecret,
		Cache: api.DefaultCache, StartupTimeout: 10 * time.Second, HTTPClient: &http.Client{Transport: d.apiCalls},
	}
	if jwt {
		apiCfg.Verify, apiCfg.Resource = api.VerifyJWT, d.api
	}
	apiHandler, err := api.NewHandler(t.Context(), apiCfg, logger)
	if err != nil {
		t.Fatalf("api.NewHandler: %v", err)
	}
	attachAPI(apiHandler)

	// The BFF's server starts first, so that its URL is known for the
	// client's registration; the handler is attached once built.
	bffSrv, attach := startLate(t)
	d.bffLoopback, d.bff = bffSrv.URL, onLocalhost(t, bffSrv.URL)
	web := authz.ClientMetadata{
		ClientID:               "demo-bff",
		ClientName:             "Contacts demo",
		RedirectURIs:           []string{d.bff + "/callback"},
		PostLogoutRedirectURIs: []string{d.bff + "/"},
		Scope:                  bff.DefaultScope,
	}
	bffCfg := bff.Config{
		Issuer: d.issuer, RedirectURI: d.bff + "/callback", PostLogoutRedirectURI: d.bff + "/",
		APIURL: d.api, Scopes: strings.Fields(bff.DefaultScope), StartupTimeout: 10 * time.Second,
	}
	if jwt {
		web.AccessTokenStrategy, web.Audience = "jwt", []string{d.api}
		bffCfg.Resource = d.api
	}
	d.web = a.CreateClient(t, web)
	bffCfg.ClientID, bffCfg.ClientSecret = d.web.ClientID, d.web.ClientSecret
	h, err := bff.NewServer(t.Context(), bffCfg, logger)
	if err != nil {
		t.Fatalf("bff.NewServer: %v", err)
	}
	attach(h)
	return d
}

// startLate starts a server whose handler is attached later; until then it
// answers 503.
func startLate(t *testing.T) (*httptest.Server, func(http.Handler)) {
	var (
		mu      sync.Mutex
		handler http.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "starting up", http.StatusServiceUnavailable)
		})
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		h := handler
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, func(h http.Handler) {
		mu.Lock()
		handler = h
		mu.Unlock()
	}
}

// onLocalhost turns http://127.0.0.1:PORT into http://localhost:PORT.
func onLocalhost(t *testing.T, u string) string {
	t.Helper()
	rest, ok := strings.CutPrefix(u, "http://127.0.0.1:")
	if !ok {
		t.Fatalf("%s is not a 127.0.0.1 URL", u)
	}
	return "http://localhost:" + rest
}

// contact is a row of the BFF's contacts table, or an entry of the API's
// answer.
type contact struct {
	Name  string `json:"name"`
	Email string `json:"email"`
	Phone string `json:"phone"`
}

// contactsOf asks the API for the contacts of username with a token of its
// own. It signs the user in and consents for the BFF's client, so call it
// after the browser has run.
func (d *demo) contactsOf(t *testing.T, username string) []contact {
	t.Helper()
	var opts []oauth2.AuthCodeOption
	if d.jwt {
		opts = append(opts, demotest.Resource(d.api))
	}
	tok := d.authz.UserToken(t, d.web, username, bff.DefaultScope, opts...)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, d.api+"/contacts", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Contacts []contact `json:"contacts"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/contacts: %s %v", d.api, resp.Status, err)
	}
	return doc.Contacts
}

// checkEvents fails the test for every console error, CSP violation,
// uncaught exception, failed request and error response of the run, but
// those it expects: favicon.ico's 404 from a server that has none.
func (d *demo) checkEvents(t *testing.T, res *demoResult) {
	t.Helper()
	// Chromium asks each server for /favicon.ico. Neither authz
	// (templates/static) nor the BFF has one: the 404 is excused only
	// while that is so.
	noFavicon := map[string]bool{}
	for _, origin := range []string{d.issuer, d.bff} {
		if resp, err := http.Get(origin + "/favicon.ico"); err == nil {
			resp.Body.Close()
			noFavicon[origin+"/favicon.ico"] = resp.StatusCode == http.StatusNotFound
		}
	}
	res.Check(t, func(ev browsertest.Event) bool {
		return noFavicon[ev.URL] && ev.Status == http.StatusNotFound ||
			noFavicon[ev.Source] && strings.Contains(ev.Text, "404")
	})
}

// demoResult is what demo.mjs prints.
type demoResult struct {
	BFFOrigin string `json:"bffOrigin"`
	Allow     struct {
		Home, Login, Consent, Contacts pageView
	} `json:"allow"`
	Deny struct {
		Login, Consent, Denied pageView
	} `json:"deny"`
	Logout struct {
		Confirm          *pageView // authz's confirmation page, if it asked
		SignedOut, Again pageView
	} `json:"logout"`
	Navigations []browsertest.Event `json:"navigations"` // the documents loaded
	browsertest.Events
	Screenshots []string `json:"screenshots"`
}

// pageView is what a page showed; see view in demo.mjs.
type pageView struct {
	Origin          string    `json:"origin"`
	Path            string    `json:"path"`
	Title           string    `json:"title"`
	Heading         string    `json:"heading"`
	IsLogin         bool      `json:"isLogin"`
	IsConsent       bool      `json:"isConsent"`
	IsLogoutConfirm bool      `json:"isLogoutConfirm"`
	Who             string    `json:"who"`
	Notice          string    `json:"notice"`
	Error           string    `json:"error"`
	HasGetContacts  bool      `json:"hasGetContacts"`
	HasSignIn       bool      `json:"hasSignIn"`
	HasSignOut      bool      `json:"hasSignOut"`
	Caption         string    `json:"caption"`
	Contacts        []contact `json:"contacts"`
}

func hasNavigation(navs []browsertest.Event, scenario, url string, status int) bool {
	for _, n := range navs {
		if n.Scenario == scenario && n.URL == url && n.Status == status {
			return true
		}
	}
	return false
}
