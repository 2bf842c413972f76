package authz_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/authz/authz/authz"
)

// TestTokenExchangeIsOneTransaction: when storing the refresh token fails
// half-way through a code exchange, nothing of the exchange remains: no
// access token was stored and the code is still unused, so the client can
// retry once the fault is gone.
func TestTokenExchangeIsOneTransaction(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := e.confidential(t, "client_secret_basic")
	e.createUser(t, "alice")
	code := newCode(t, e, newBrowser(t), codeParams(client, "openid contacts"), "alice")

	ctx := context.Background()
	if _, err := e.pool.Exec(ctx, `
		CREATE FUNCTION refuse_refresh() RETURNS trigger LANGUAGE plpgsql AS
			$$ BEGIN RAISE EXCEPTION 'refresh tokens are refused in this test'; END $$;
		CREATE TRIGGER refuse_refresh BEFORE INSERT ON refresh_tokens
			FOR EACH ROW EXECUTE FUNCTION refuse_refresh();`); err != nil {
		t.Fatal(err)
	}
	failed := e.tokenAs(t, client, exchangeForm(code, appCallback))
	wantOAuthError(t, failed, http.StatusInternalServerError, "server_error")
	if n := e.count(t, `SELECT count(*) FROM access_tokens`); n != 0 {
		t.Errorf("%d access tokens stored by an exchange that failed", n)
	}
	if n := e.count(t, `SELECT count(*) FROM authorization_codes WHERE active`); n != 1 {
		t.Errorf("%d active codes after a failed exchange, want the code still unused", n)
	}

	if _, err := e.pool.Exec(ctx, `DROP TRIGGER refuse_refresh ON refresh_tokens`); err != nil {
		t.Fatal(err)
	}
	tokens(t, e.tokenAs(t, client, exchangeForm(code, appCallback)))
}

// TestIntrospectionAudience: a token granted an audience says so.
func TestIntrospectionAudience(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := e.createClient(t, authz.ClientMetadata{
		ClientName:   "Audience app",
		RedirectURIs: []string{appCallback},
		Scope:        "openid contacts",
		Audience:     []string{"https://api.example.com", "https://other.example.com"},
	})
	rs := e.resourceServer(t)
	e.createUser(t, "alice")
	params := codeParams(client, "openid contacts")
	params["audience"] = "https://api.example.com"
	code := newCode(t, e, newBrowser(t), params, "alice")
	tok := tokens(t, e.tokenAs(t, client, exchangeForm(code, appCallback)))
	info := e.introspect(t, tok.AccessToken, rs.ClientID, rs.ClientSecret)
	aud, _ := info["aud"].([]any)
	if len(aud) != 1 || aud[0] != "https://api.example.com" {
		t.Fatalf("introspection aud = %v, want [https://api.example.com]: %v", info["aud"], info)
	}

	// An audience the client is not registered for is refused.
	params["audience"] = "https://evil.example.com"
	wantRedirectError(t, newBrowser(t).get(authorizeURL(e.issuer, params)), appCallback, "invalid_request", params["state"])
}
