package authz_test

import (
	"strings"
	"testing"

	"github.com/authz/authz/authz"
)

// TestConsentPageShowsTermsAndPolicy: a client's registered terms of
// service and privacy policy are linked on the consent page people see.
func TestConsentPageShowsTermsAndPolicy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createUser(t, "alice")
	c := e.createClient(t, authz.ClientMetadata{
		ClientName: "Contacts BFF", RedirectURIs: []string{"https://app.example.com/callback"},
		Scope: "openid profile", TokenEndpointAuthMethod: "client_secret_basic",
		TOSURI: "https://app.example.com/terms", PolicyURI: "https://app.example.com/privacy",
	})
	b := newBrowser(t)
	p := b.login(b.get(authorizeURL(e.issuer, codeParams(c, "openid profile"))), "alice", testPassword)
	if !isConsentPage(p) {
		t.Fatalf("want the consent page, got %d:\n%s", p.status, p.body)
	}
	for _, link := range []string{`href="https://app.example.com/terms"`, `href="https://app.example.com/privacy"`} {
		if !strings.Contains(p.body, link) {
			t.Errorf("consent page lacks %s:\n%s", link, p.body)
		}
	}
}
