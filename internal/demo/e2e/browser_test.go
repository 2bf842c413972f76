package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/authz/authz/authz"
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
	chromium, dir := requireBrowser(t)
	d := startDemo(t)

	res := runDemo(t, dir, map[string]any{
		// The BFF's 127.0.0.1 address: it must send the browser on to
		// localhost, its redirect URI's host, where its cookies live.
		"bff":         d.bffLoopback + "/",
		"issuer":      d.issuer,
		"allow":       map[string]string{"username": "alice", "password": demotest.Password},
		"deny":        map[string]string{"username": "bob", "password": demotest.Password},
		"screenshots": screenshotDir(t),
		"chromium":    chromium,
		"timeoutMs":   75000,
	})

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
}

// startDemo starts the three servers as "authz dev" and the demo commands
// run them: every page at localhost, on its own port. Users alice and bob
// are registered, with the BFF's client demo-bff and the API's demo-api.
func startDemo(t *testing.T) *demo {
	t.Helper()
	logger := demotest.Logger()
	// authz's issuer is its localhost URL, as authz dev's is.
	a := demotest.StartAuthz(t, nil, func(c *authz.Config) { c.Issuer = onLocalhost(t, c.Issuer) })
	d := &demo{authz: a, issuer: onLocalhost(t, a.URL)}
	a.CreateUser(t, "alice", "Alice Example")
	a.CreateUser(t, "bob", "Bob Example")

	rs := a.CreateClient(t, authz.ClientMetadata{
		ClientID: "demo-api", ClientName: "Contacts API", GrantTypes: []string{"client_credentials"},
	})
	apiHandler, err := api.NewHandler(t.Context(), api.Config{
		Issuer: d.issuer, ClientID: rs.ClientID, ClientSecret: rs.ClientSecret,
		Cache: api.DefaultCache, StartupTimeout: 10 * time.Second,
	}, logger)
	if err != nil {
		t.Fatalf("api.NewHandler: %v", err)
	}
	apiSrv := httptest.NewServer(apiHandler)
	t.Cleanup(apiSrv.Close)
	d.api = apiSrv.URL

	// The BFF's server starts first, so that its URL is known for the
	// client's registration; the handler is attached once built.
	bffSrv, attach := startLate(t)
	d.bffLoopback, d.bff = bffSrv.URL, onLocalhost(t, bffSrv.URL)
	d.web = a.CreateClient(t, authz.ClientMetadata{
		ClientID:               "demo-bff",
		ClientName:             "Contacts demo",
		RedirectURIs:           []string{d.bff + "/callback"},
		PostLogoutRedirectURIs: []string{d.bff + "/"},
		Scope:                  bff.DefaultScope,
	})
	h, err := bff.NewServer(t.Context(), bff.Config{
		Issuer: d.issuer, ClientID: d.web.ClientID, ClientSecret: d.web.ClientSecret,
		RedirectURI: d.bff + "/callback", PostLogoutRedirectURI: d.bff + "/",
		APIURL: d.api, Scopes: strings.Fields(bff.DefaultScope), StartupTimeout: 10 * time.Second,
	}, logger)
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
	tok := d.authz.UserToken(t, d.web, username, bff.DefaultScope)
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
	expected := func(ev event) bool {
		switch {
		case noFavicon[ev.URL] && ev.Status == http.StatusNotFound,
			noFavicon[ev.Source] && strings.Contains(ev.Text, "404"):
			return true
		}
		return false
	}
	for _, c := range []struct {
		what   string
		events []event
	}{
		{"CSP violation", res.CSPViolations},
		{"console error", res.ConsoleErrors},
		{"uncaught exception", res.PageErrors},
		{"HTTP error", res.HTTPErrors},
		{"failed request", res.FailedRequests},
	} {
		for _, ev := range c.events {
			if expected(ev) {
				t.Logf("expected %s: %v", c.what, ev)
			} else {
				t.Errorf("%s: %v", c.what, ev)
			}
		}
	}
	for _, ev := range res.ConsoleWarnings {
		t.Logf("console warning: %v", ev)
	}
}

// demoResult is what demo.mjs prints.
type demoResult struct {
	Step      string `json:"step"`
	Error     string `json:"error"`
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
	Navigations     []event  `json:"navigations"`
	ConsoleErrors   []event  `json:"consoleErrors"`
	ConsoleWarnings []event  `json:"consoleWarnings"`
	CSPViolations   []event  `json:"cspViolations"`
	PageErrors      []event  `json:"pageErrors"`
	HTTPErrors      []event  `json:"httpErrors"`
	FailedRequests  []event  `json:"failedRequests"`
	Screenshots     []string `json:"screenshots"`
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

// event is one console message, violation, request or document load, with
// the scenario it happened in; URLs come without their query strings.
type event struct {
	Scenario  string `json:"scenario,omitempty"`
	Page      string `json:"page,omitempty"`
	Text      string `json:"text,omitempty"`
	Source    string `json:"source,omitempty"`
	Directive string `json:"directive,omitempty"`
	Blocked   string `json:"blocked,omitempty"`
	Method    string `json:"method,omitempty"`
	URL       string `json:"url,omitempty"`
	Status    int    `json:"status,omitempty"`
	Error     string `json:"error,omitempty"`
}

func (e event) String() string {
	b, _ := json.Marshal(e)
	return string(b)
}

func hasNavigation(navs []event, scenario, url string, status int) bool {
	for _, n := range navs {
		if n.Scenario == scenario && n.URL == url && n.Status == status {
			return true
		}
	}
	return false
}

// requireBrowser fails, with one line saying what to install, unless node,
// Chromium and the npm packages are there. It returns Chromium's path
// (/usr/bin/chromium, Debian's package, or $AUTHZ_CHROMIUM) and the
// directory of demo.mjs, authz/testdata/browser.
func requireBrowser(t *testing.T) (chromium, dir string) {
	t.Helper()
	const install = "apt-get install -y chromium nodejs npm && (cd authz/testdata/browser && npm ci)"
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("browser test: node is not on PATH; run: %s", install)
	}
	chromium = os.Getenv("AUTHZ_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("browser test: no Chromium at %s; run: %s (or set AUTHZ_CHROMIUM)", chromium, install)
	}
	dir = filepath.Join(moduleRoot(t), "authz", "testdata", "browser")
	for _, f := range []string{"demo.mjs", "harness.mjs", "node_modules/playwright-core/package.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("browser test: authz/testdata/browser/%s is missing; run: cd authz/testdata/browser && npm ci", f)
		}
	}
	return chromium, dir
}

// moduleRoot is the directory of go.mod, above the test's directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// screenshotDir is $AUTHZ_SCREENSHOTS when set, else a temporary directory
// that is kept only when the test fails.
func screenshotDir(t *testing.T) string {
	t.Helper()
	shots := os.Getenv("AUTHZ_SCREENSHOTS")
	if shots == "" {
		dir, err := os.MkdirTemp("", "authz-demo-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("screenshots kept in %s", dir)
				return
			}
			_ = os.RemoveAll(dir)
		})
		shots = dir
	} else if abs, err := filepath.Abs(shots); err == nil {
		shots = abs // node runs in authz/testdata/browser
	}
	t.Logf("screenshots: %s", shots)
	return shots
}

// runDemo runs demo.mjs in dir with cfg on its stdin and returns what it
// saw. It fails the test when the script did not finish.
func runDemo(t *testing.T, dir string, cfg map[string]any) *demoResult {
	t.Helper()
	input, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const limit = 90 * time.Second
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "demo.mjs")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(input)
	// SIGTERM lets Playwright close Chromium before node exits; a node that
	// does not exit is killed 10s later.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	runErr := cmd.Run()
	t.Logf("the browser run took %v", time.Since(start).Round(time.Millisecond))

	res := new(demoResult)
	line := strings.TrimSpace(stdout.String())
	if i := strings.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	if err := json.Unmarshal([]byte(line), res); err != nil {
		t.Fatalf("demo.mjs: %v (%v); stdout:\n%s\nstderr:\n%s", runErr, err, stdout.String(), stderr.String())
	}
	if runErr != nil || res.Error != "" {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Errorf("demo.mjs was stopped after %v", limit)
		}
		pretty, _ := json.MarshalIndent(res, "", "  ")
		t.Fatalf("the browser stopped at %q: %s (%v)\n%s\nstderr:\n%s", res.Step, res.Error, runErr, pretty, stderr.String())
	}
	return res
}
