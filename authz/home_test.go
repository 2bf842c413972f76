package authz_test

import (
	"html"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/authz/authz/authz"
)

// devHome is what `authz dev` hands the home page, with values a test can
// find on it.
func devHome(issuer string) *authz.DevHome {
	return &authz.DevHome{
		Username:  "alice",
		Password:  "pw-3f9c1a7e",
		SignInURL: issuer + "/oauth2/authorize?response_type=code&client_id=demo-bff&state=demo",
		Clients: []authz.DevClient{
			{ID: "demo-bff", Secret: "bff-secret-51d2", Kind: "confidential BFF", RedirectURIs: []string{"http://localhost:3000/callback"}},
			{ID: "demo-spa", Kind: "public SPA", RedirectURIs: []string{"http://localhost:5173/callback"}},
		},
	}
}

// TestHomePage: the issuer URL, which the dev banner advertises, is a page
// that says what the server is and links discovery and the JWKS, for GET
// and HEAD. Before, it was the 404 page.
func TestHomePage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := newBrowser(t)
	p := b.get(e.url("/"))
	if p.status != http.StatusOK || p.header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %d %q, want 200 HTML\n%s", p.status, p.header.Get("Content-Type"), p.body)
	}
	for _, want := range []string{
		e.issuer,
		`href="` + e.url("/.well-known/openid-configuration") + `"`,
		`href="` + e.url("/.well-known/jwks.json") + `"`,
	} {
		if !strings.Contains(p.body, want) {
			t.Errorf("home page lacks %s\n%s", want, p.body)
		}
	}
	if strings.Contains(p.body, "Demo") || strings.Contains(p.body, "Page not found") {
		t.Errorf("outside dev mode the home page shows a demo section or the 404 text\n%s", p.body)
	}

	req := newRequest(t, http.MethodHead, e.url("/"), "", "")
	if res := send(t, req); res.status != http.StatusOK || len(res.body) != 0 {
		t.Errorf("HEAD /: %d with %d bytes, want 200 and no body", res.status, len(res.body))
	}
}

// TestHomePageDev: under `authz dev` the home page lists the demo user and
// password, each client with its secret and redirect URIs, and the ready
// sign-in URL; a visitor from another machine gets no password or secret.
func TestHomePageDev(t *testing.T) {
	t.Parallel()
	var issuer string
	e := newEnv(t, func(c *authz.Config) {
		issuer = c.Issuer
		c.Dev, c.DevHome = true, devHome(c.Issuer)
		// Only so the test can be "another machine" by X-Forwarded-For.
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}
	})
	d := devHome(issuer)
	p := newBrowser(t).get(e.url("/"))
	if p.status != http.StatusOK {
		t.Fatalf("GET /: %d\n%s", p.status, p.body)
	}
	body := html.UnescapeString(p.body)
	for _, want := range []string{
		d.Username, d.Password, `href="` + d.SignInURL + `"`,
		"demo-bff", d.Clients[0].Secret, d.Clients[0].RedirectURIs[0], "confidential BFF",
		"demo-spa", d.Clients[1].RedirectURIs[0], "no secret",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("dev home page lacks %s\n%s", want, body)
		}
	}

	req := newRequest(t, http.MethodGet, e.url("/"), "", "")
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	res := send(t, req)
	remote := html.UnescapeString(string(res.body))
	if res.status != http.StatusOK || !strings.Contains(remote, "demo-bff") || !strings.Contains(remote, "shown only on the machine") {
		t.Fatalf("from another machine: %d, want the page with the clients but not their secrets\n%s", res.status, remote)
	}
	for _, secret := range []string{d.Password, d.Clients[0].Secret} {
		if strings.Contains(remote, secret) {
			t.Errorf("from another machine the page shows %q", secret)
		}
	}
}
