package authz_test

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
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/authz/authz/authz"
)

// browserDir holds the SPA, the Node driver and their npm packages.
var browserDir = filepath.Join("testdata", "browser")

// browserResult is what testdata/browser/signin.mjs prints.
type browserResult struct {
	Sub             string         `json:"sub"`
	Username        string         `json:"username"`
	Step            string         `json:"step"`
	Error           string         `json:"error"`
	ConsoleErrors   []browserEvent `json:"consoleErrors"`
	ConsoleWarnings []browserEvent `json:"consoleWarnings"`
	CSPViolations   []browserEvent `json:"cspViolations"`
	PageErrors      []browserEvent `json:"pageErrors"`
	HTTPErrors      []browserEvent `json:"httpErrors"`
	FailedRequests  []browserEvent `json:"failedRequests"`
	Fetches         []browserEvent `json:"fetches"`
	Screenshots     []string       `json:"screenshots"`
}

// browserEvent is one console message, violation or request; URLs come
// without their query strings.
type browserEvent struct {
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

func (e browserEvent) String() string {
	b, _ := json.Marshal(e)
	return string(b)
}

// TestBrowserSignIn signs in from a single-page app using oidc-client-ts in
// headless Chromium: the SPA is served from a second origin, so discovery,
// the token request and the preflighted userinfo call are real cross-origin
// requests, and our login and consent pages run under their real CSP.
func TestBrowserSignIn(t *testing.T) {
	t.Parallel()
	chromium := requireBrowser(t)

	e := newEnv(t)
	alice := e.createUser(t, "alice")

	// The SPA's address is known before it serves, so the client can be
	// registered with its callback first.
	cfg := map[string]string{"authority": e.issuer}
	spa := httptest.NewUnstartedServer(spaHandler(cfg))
	spaURL := "http://" + spa.Listener.Addr().String()
	client := e.createClient(t, authz.ClientMetadata{
		ClientName:              "Contacts SPA",
		RedirectURIs:            []string{spaURL + "/callback"},
		Scope:                   "openid profile",
		TokenEndpointAuthMethod: "none",
	})
	cfg["client_id"] = client.ClientID
	spa.Start()
	t.Cleanup(spa.Close)

	res := runBrowser(t, chromium, spaURL+"/", "alice", testPassword)

	if res.Sub != alice.ID {
		t.Errorf("the SPA shows sub %q, want the user's id %q", res.Sub, alice.ID)
	}
	if res.Username != "alice" {
		t.Errorf("the SPA shows preferred_username %q, want alice (from userinfo)", res.Username)
	}
	for _, want := range []struct{ method, url string }{
		{http.MethodGet, e.url("/.well-known/openid-configuration")},
		{http.MethodPost, e.url("/oauth2/token")},
		{http.MethodGet, e.url("/userinfo")},
	} {
		if !hasFetch(res.Fetches, want.method, want.url, http.StatusOK) {
			t.Errorf("the SPA made no cross-origin %s %s answered 200; its fetches: %v", want.method, want.url, res.Fetches)
		}
	}
	// Chromium asks the server of each page for /favicon.ico; authz has
	// none, and the 404 is logged on the console of its login page.
	var consoleErrors []browserEvent
	for _, ev := range res.ConsoleErrors {
		if ev.Source == e.url("/favicon.ico") && strings.Contains(ev.Text, "404") {
			continue
		}
		consoleErrors = append(consoleErrors, ev)
	}
	for _, c := range []struct {
		what   string
		events []browserEvent
	}{
		{"CSP violation", res.CSPViolations},
		{"console error", consoleErrors},
		{"uncaught exception", res.PageErrors},
		{"HTTP error", res.HTTPErrors},
		{"failed request", res.FailedRequests},
	} {
		for _, ev := range c.events {
			t.Errorf("%s: %v", c.what, ev)
		}
	}
	for _, ev := range res.ConsoleWarnings {
		t.Logf("console warning: %v", ev)
	}
}

// requireBrowser fails, with one line saying what to install, unless
// node, Chromium and the npm packages are there. It returns Chromium's path:
// /usr/bin/chromium (Debian's package), or $AUTHZ_CHROMIUM.
func requireBrowser(t *testing.T) string {
	t.Helper()
	const install = "apt-get install -y chromium nodejs npm && (cd authz/testdata/browser && npm ci)"
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("browser test: node is not on PATH; run: %s", install)
	}
	chromium := os.Getenv("AUTHZ_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("browser test: no Chromium at %s; run: %s (or set AUTHZ_CHROMIUM)", chromium, install)
	}
	for _, f := range []string{
		"node_modules/playwright-core/package.json",
		"node_modules/oidc-client-ts/dist/browser/oidc-client-ts.min.js",
	} {
		if _, err := os.Stat(filepath.Join(browserDir, f)); err != nil {
			t.Fatalf("browser test: authz/testdata/browser/%s is missing; run: cd authz/testdata/browser && npm ci", f)
		}
	}
	return chromium
}

// spaHandler serves the SPA's pages and oidc-client-ts's browser bundle
// under a CSP as strict as the app allows, so a violation shows up. cfg
// (authority, client_id) is read at request time; set it before Start.
func spaHandler(cfg map[string]string) http.Handler {
	spaDir := filepath.Join(browserDir, "spa")
	bundle := filepath.Join(browserDir, "node_modules", "oidc-client-ts", "dist", "browser")
	files := map[string]string{
		"/":                          filepath.Join(spaDir, "index.html"),
		"/callback":                  filepath.Join(spaDir, "callback.html"),
		"/app.js":                    filepath.Join(spaDir, "app.js"),
		"/app.css":                   filepath.Join(spaDir, "app.css"),
		"/oidc-client-ts.min.js":     filepath.Join(bundle, "oidc-client-ts.min.js"),
		"/oidc-client-ts.min.js.map": filepath.Join(bundle, "oidc-client-ts.min.js.map"),
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self' "+
			cfg["authority"]+"; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-store")
		switch {
		case r.URL.Path == "/config.json":
			h.Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(cfg)
		case r.URL.Path == "/favicon.ico":
			w.WriteHeader(http.StatusNoContent)
		case files[r.URL.Path] != "":
			http.ServeFile(w, r, files[r.URL.Path])
		default:
			http.NotFound(w, r)
		}
	})
}

// runBrowser runs the sign-in in Chromium and returns what it saw. The
// screenshots go to $AUTHZ_SCREENSHOTS when set, else to a temporary
// directory that is kept only when the test fails.
func runBrowser(t *testing.T, chromium, spaURL, username, password string) browserResult {
	t.Helper()
	shots := os.Getenv("AUTHZ_SCREENSHOTS")
	if shots == "" {
		dir, err := os.MkdirTemp("", "authz-browser-")
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
		shots = abs // node runs in testdata/browser
	}
	t.Logf("screenshots: %s", shots)

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "signin.mjs",
		"--url", spaURL, "--username", username, "--password", password,
		"--screenshots", shots, "--chromium", chromium, "--timeout-ms", "45000")
	cmd.Dir = browserDir
	// SIGTERM lets Playwright close Chromium before node exits; a node that
	// does not exit is killed 10s later.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	runErr := cmd.Run()
	t.Logf("browser sign-in took %v", time.Since(start).Round(time.Millisecond))

	var res browserResult
	line := strings.TrimSpace(stdout.String())
	if i := strings.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		t.Fatalf("signin.mjs: %v (%v); stdout:\n%s\nstderr:\n%s", runErr, err, stdout.String(), stderr.String())
	}
	if runErr != nil || res.Error != "" {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Errorf("signin.mjs was stopped after 60s")
		}
		pretty, _ := json.MarshalIndent(res, "", "  ")
		t.Fatalf("browser sign-in stopped at %q: %s (%v)\n%s\nstderr:\n%s", res.Step, res.Error, runErr, pretty, stderr.String())
	}
	return res
}

func hasFetch(fetches []browserEvent, method, url string, status int) bool {
	for _, f := range fetches {
		if f.Method == method && f.URL == url && f.Status == status {
			return true
		}
	}
	return false
}
