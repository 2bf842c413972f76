package authz_test

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/storage"
)

// TestStatementsPerRequest pins how many SQL statements each hot path
// sends, the round trips that bound its throughput (issue 11's targets):
// introspection 1, a forged token 0, client_credentials 1 (its one write,
// with no transaction around it), a code exchange 4, a refresh 4. BEGIN
// with its settings counts one.
func TestStatementsPerRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	deadline := time.Now().Add(20 * time.Second)
	for !e.store.ClientCacheOn() {
		if time.Now().After(deadline) {
			t.Fatal("the client cache never started listening")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c := e.confidential(t, "client_secret_basic")
	rs := e.resourceServer(t)
	machine := e.createClient(t, authz.ClientMetadata{
		ClientName: "Reports job", GrantTypes: []string{"client_credentials"},
		Scope: "reports", TokenEndpointAuthMethod: "client_secret_basic",
	})
	e.createUser(t, "alice")
	count := func(what string, want int64, fn func()) {
		t.Helper()
		fn() // the clients it uses are cached now
		before := storage.Statements(e.pool)
		fn()
		if got := storage.Statements(e.pool) - before; got != want {
			t.Errorf("%s: %d statements, want %d", what, got, want)
		}
	}
	codes := []string{
		newCode(t, e, newBrowser(t), codeParams(c, "openid contacts"), "alice"),
		newCode(t, e, newBrowser(t), codeParams(c, "openid contacts"), "alice"),
	}

	var tr tokenResponse
	count("code exchange", 4, func() {
		tr = tokens(t, e.tokenAs(t, c, exchangeForm(codes[0], appCallback)))
		codes = codes[1:]
	})
	count("refresh", 4, func() {
		tr = tokens(t, e.tokenAs(t, c, refreshForm(tr.RefreshToken)))
	})
	count("introspection of an active token", 1, func() {
		wantActive(t, e, rs, tr.AccessToken, true, "the access token")
	})
	count("introspection of a forged token", 0, func() {
		wantActive(t, e, rs, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", false, "a forged token")
	})
	count("client_credentials", 1, func() {
		r := e.tokenAs(t, machine, url.Values{"grant_type": {"client_credentials"}, "scope": {"reports"}})
		if r.status != http.StatusOK {
			t.Fatalf("client_credentials: %s", r)
		}
	})
}
