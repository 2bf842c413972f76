package authz_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/browsertest"
)

// browserResult is what testdata/browser/signin.mjs prints.
type browserResult struct {
	Sub      string `json:"sub"`
	Username string `json:"username"`
	browsertest.Events
	Screenshots []string `json:"screenshots"`
}

// TestBrowserSignIn signs in from a single-page app using oidc-client-ts in
// headless Chromium: the SPA is served from a second origin, so discovery,
// the token request and the preflighted userinfo call are real cross-origin
// requests, and our login and consent pages run under their real CSP.
func TestBrowserSignIn(t *testing.T) {
	t.Parallel()
	env := browsertest.Require(t, "signin.mjs", "node_modules/oidc-client-ts/dist/browser/oidc-client-ts.min.js")

	e := newEnv(t)
	alice := e.createUser(t, "alice")

	// The SPA's address is known before it serves, so the client can be
	// registered with its callback first.
	cfg := map[string]string{"authority": e.issuer}
	spa := httptest.NewUnstartedServer(spaHandler(env.Dir, cfg))
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

	var res browserResult
	env.Run(t, browsertest.Script{
		Name: "signin.mjs",
		Args: []string{"--url", spaURL + "/", "--username", "alice", "--password", testPassword,
			"--screenshots", browsertest.ScreenshotDir(t), "--chromium", env.Chromium, "--timeout-ms", "45000"},
		Timeout: 60 * time.Second,
	}, &res)

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
	res.Check(t, func(ev browsertest.Event) bool {
		// Chromium asks the server of each page for /favicon.ico; authz
		// has none, and the 404 is logged on the console of its login page.
		return ev.Source == e.url("/favicon.ico") && strings.Contains(ev.Text, "404")
	})
}

// spaHandler serves the SPA's pages and oidc-client-ts's browser bundle
// under a CSP as strict as the app allows, so a violation shows up. cfg
// (authority, client_id) is read at request time; set it before Start.
// dir is authz/testdata/browser.
func spaHandler(dir string, cfg map[string]string) http.Handler {
	spaDir := filepath.Join(dir, "spa")
	bundle := filepath.Join(dir, "node_modules", "oidc-client-ts", "dist", "browser")
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

func hasFetch(fetches []browsertest.Event, method, url string, status int) bool {
	for _, f := range fetches {
		if f.Method == method && f.URL == url && f.Status == status {
			return true
		}
	}
	return false
}
