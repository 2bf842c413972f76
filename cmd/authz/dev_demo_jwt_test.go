package main

import (
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/authz/authz/internal/demo/demotest"
)

// TestDevDemoJWT runs dev --demo --demo-jwt-access-tokens, as "make demo
// DEMO_TOKENS=jwt" does: demo-bff gets JWT access tokens for the contacts
// API's URL, and the API verifies them itself, never introspecting. The
// next start without the flag puts demo-bff back on opaque tokens.
func TestDevDemoJWT(t *testing.T) {
	t.Parallel()
	e := dbEnv(t)
	dataDir := filepath.Join(t.TempDir(), ".data")
	d := startDev(t, e, dataDir, "--demo", "--demo-jwt-access-tokens", "--demo-bff-listen", "127.0.0.1:0", "--demo-api-listen", "127.0.0.1:0")

	banner := d.stdout.String()
	m := regexp.MustCompile(`\nDemo: open (http://localhost:\d+) and click Get contacts\n\s+\(the BFF calls the contacts API at (http://127\.0\.0\.1:\d+); sign in as alice\)\n\s+The API verifies JWT access tokens itself`).FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("banner does not say where the demo is and that the API verifies JWTs:\n%s", banner)
	}
	bffURL, apiURL := m[1], m[2]
	store := openStore(t, e)
	c, err := store.Client(t.Context(), "demo-bff")
	if err != nil {
		t.Fatal(err)
	}
	if c.AccessTokenStrategy != "jwt" || !slices.Equal(c.Audience, []string{apiURL}) {
		t.Errorf("demo-bff: access_token_strategy %q, audience %v; want jwt and the API's %s", c.AccessTokenStrategy, c.Audience, apiURL)
	}

	b := demotest.NewBrowser(t)
	home := b.Get(bffURL + "/")
	p, _ := b.Through(b.Submit(home, "get-contacts", nil), "alice", d.password, "allow")
	if p.Status != http.StatusOK || p.URL.String() != bffURL+"/contacts" {
		t.Fatalf("ended at %s with %d:\n%s", p.URL, p.Status, p.Body)
	}
	if table, _ := p.Text(t, "contacts"); !strings.HasPrefix(table, "Contacts of alice") || strings.Count(table, "@example.com") != 3 {
		t.Errorf("contacts table: %q", table)
	}
	d.stop()
	log := d.logs.String()
	if strings.Contains(log, "/oauth2/introspect") || !strings.Contains(log, "/.well-known/jwks.json") {
		t.Errorf("want the API to fetch the JWKS and never introspect; log:\n%s", log)
	}

	plain := startDev(t, e, dataDir)
	if c, err = store.Client(t.Context(), "demo-bff"); err != nil {
		t.Fatal(err)
	}
	if c.AccessTokenStrategy != "opaque" || len(c.Audience) != 0 {
		t.Errorf("after a start without the flag, demo-bff: access_token_strategy %q, audience %v; want opaque and none", c.AccessTokenStrategy, c.Audience)
	}
	plain.stop()
}
