package authz_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/browsertest"
)

// TestBrowserHomePage opens the dev home page in headless Chromium at a
// phone's width: it renders under the real CSP with no console error, its
// links are there, and nothing is wider than the screen (long secrets and
// URLs wrap).
func TestBrowserHomePage(t *testing.T) {
	t.Parallel()
	env := browsertest.Require(t, "home.mjs")
	e := newEnv(t, func(c *authz.Config) { c.Dev, c.DevHome = true, devHome(c.Issuer) })

	var res struct {
		Heading  string   `json:"heading"`
		Links    []string `json:"links"`
		Overflow int      `json:"overflow"`
		browsertest.Events
	}
	env.Run(t, browsertest.Script{
		Name:    "home.mjs",
		Args:    []string{"--url", e.url("/"), "--screenshots", browsertest.ScreenshotDir(t), "--chromium", env.Chromium},
		Timeout: 45 * time.Second,
	}, &res)

	if !strings.Contains(res.Heading, "authz dev is running") {
		t.Errorf("heading %q, want the dev home page's", res.Heading)
	}
	for _, want := range []string{e.url("/.well-known/openid-configuration"), e.url("/.well-known/jwks.json"), devHome(e.issuer).SignInURL} {
		if !slices.Contains(res.Links, want) {
			t.Errorf("no link to %s; links: %v", want, res.Links)
		}
	}
	if res.Overflow > 0 {
		t.Errorf("the page is %d px wider than a 375 px screen", res.Overflow)
	}
	res.Check(t, func(ev browsertest.Event) bool {
		// Chromium asks for /favicon.ico, which authz does not serve.
		return ev.URL == e.url("/favicon.ico") || (ev.Source == e.url("/favicon.ico") && strings.Contains(ev.Text, "404"))
	})
}
