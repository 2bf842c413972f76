package authz

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPageHome(t *testing.T) {
	p := mustLoadPages(t, "")
	rec := httptest.NewRecorder()
	p.renderHome(rec, http.StatusOK, homePage{
		Issuer: "https://id.example", DiscoveryURL: "https://id.example/.well-known/openid-configuration",
		JWKSURL: "https://id.example/.well-known/jwks.json",
		Dev: &homeDev{Username: pageXSS, SignInURL: "https://id.example/oauth2/authorize?a=1&b=2",
			Clients: []homeClient{{ID: "c1", Public: true}}},
	})
	body := pageBody(t, rec, http.StatusOK)
	wantContains(t, body,
		`<a href="https://id.example/.well-known/openid-configuration">`,
		`<a href="https://id.example/.well-known/jwks.json">`,
		`href="https://id.example/oauth2/authorize?a=1&amp;b=2"`,
		pageXSSEscaped,
		"no secret",
	)
	wantNotContains(t, body, pageXSS)
}

// TestPagesLoadDirWithoutHome: a templates directory copied before the
// home page existed still loads; the home page then renders the embedded
// page inside the operator's own layout.
func TestPagesLoadDirWithoutHome(t *testing.T) {
	dir := copyPageTemplates(t)
	if err := os.Remove(filepath.Join(dir, pageHomeFile)); err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(dir, pageLayoutFile)
	b, err := os.ReadFile(layout)
	if err != nil {
		t.Fatal(err)
	}
	branded := strings.Replace(string(b), `<span class="brand-name">`, `<span class="brand-name">Example Corp `, 1)
	if branded == string(b) {
		t.Fatal("layout.html has no brand-name span to change")
	}
	if err := os.WriteFile(layout, []byte(branded), 0o644); err != nil {
		t.Fatal(err)
	}
	p := mustLoadPages(t, dir)
	rec := httptest.NewRecorder()
	p.renderHome(rec, http.StatusOK, homePage{Issuer: "https://id.example"})
	body := pageBody(t, rec, http.StatusOK)
	wantContains(t, body, "Example Corp", "https://id.example")
}
