package authz_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/authz"
)

// fositeBoilerplate begins fosite's generic invalid_grant description,
// which every token error used to start with.
const fositeBoilerplate = "The provided authorization grant"

// wantTokenError asserts an RFC 6749 5.2 error with the exact status and
// code whose error_description says each of says and none of fosite's
// boilerplate or of not.
func wantTokenError(t *testing.T, r reply, status int, code string, says []string, not ...string) {
	t.Helper()
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil || r.status != status || body.Error != code {
		t.Fatalf("want %d %s, got (%v)\n%s", status, code, err, r)
	}
	for _, s := range says {
		if !strings.Contains(body.Description, s) {
			t.Errorf("error_description %q does not say %q", body.Description, s)
		}
	}
	for _, s := range append(not, fositeBoilerplate) {
		if strings.Contains(body.Description, s) {
			t.Errorf("error_description %q says %q", body.Description, s)
		}
	}
}

// TestTokenErrorJSONBody: a JSON body is not read; the error says the
// endpoint takes a form, not that the body is empty.
func TestTokenErrorJSONBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := e.confidential(t, "client_secret_basic")
	req := newRequest(t, http.MethodPost, e.url("/oauth2/token"), "application/json",
		`{"grant_type":"authorization_code","code":"x","redirect_uri":"https://app.example.com/callback"}`)
	req.SetBasicAuth(client.ClientID, client.ClientSecret)
	wantTokenError(t, send(t, req), http.StatusBadRequest, "invalid_request",
		[]string{"application/x-www-form-urlencoded", "JSON"}, "can not be empty")
}

// TestTokenErrorCodes: each way a code exchange fails says what is wrong,
// and a code that an earlier failed exchange spent is told apart from one
// that was exchanged for tokens.
func TestTokenErrorCodes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createUser(t, "alice")
	bff := e.confidential(t, "client_secret_basic")
	noRefresh := e.createClient(t, authz.ClientMetadata{
		ClientName: "No refresh", RedirectURIs: []string{"https://app.example.com/callback"},
		Scope: "openid contacts", GrantTypes: []string{"authorization_code"}, TokenEndpointAuthMethod: "client_secret_basic",
	})
	spa := e.createClient(t, authzPublicClient())
	other := e.confidential(t, "client_secret_basic")
	b := newBrowser(t)
	code := func(c authz.ClientMetadata, scope string, extra map[string]string) string {
		params := codeParams(c, scope)
		for k, v := range extra {
			params[k] = v
		}
		return newCode(t, e, b, params, "alice")
	}
	const (
		spentByFailure = "code was spent by an earlier exchange"
		exchanged      = "already exchanged for tokens"
		eitherWay      = "either exchanged for tokens"
		usedUp         = "now used up"
	)

	t.Run("missing code_verifier", func(t *testing.T) {
		verifier, challenge := pkcePair()
		c := code(spa, "openid contacts", map[string]string{"code_challenge": challenge, "code_challenge_method": "S256"})
		form := exchangeForm(c, spa.RedirectURIs[0])
		wantTokenError(t, e.tokenAs(t, spa, form), http.StatusBadRequest, "invalid_grant",
			[]string{"code_verifier parameter is missing", usedUp}, "43 characters")
		// The retry with the verifier: the first try spent the code.
		form.Set("code_verifier", verifier)
		wantTokenError(t, e.tokenAs(t, spa, form), http.StatusBadRequest, "invalid_grant", []string{spentByFailure}, exchanged)
	})

	t.Run("wrong redirect_uri, then the right one", func(t *testing.T) {
		c := code(bff, "openid contacts", nil)
		wantTokenError(t, e.tokenAs(t, bff, exchangeForm(c, "https://app.example.com/callbak")), http.StatusBadRequest, "invalid_grant",
			[]string{"redirect_uri https://app.example.com/callbak does not match the authorization request's redirect_uri https://app.example.com/callback", usedUp})
		wantTokenError(t, e.tokenAs(t, bff, exchangeForm(c, bff.RedirectURIs[0])), http.StatusBadRequest, "invalid_grant",
			[]string{spentByFailure}, exchanged)
	})

	// Exchanged codes are recognised by their ID token session (openid)
	// or their refresh token, which stay after the reuse revoked them.
	for _, tc := range []struct {
		name   string
		client authz.ClientMetadata
		scope  string
		want   string
	}{
		{"used code, openid", noRefresh, "openid contacts", exchanged},
		{"used code, refresh token", bff, "contacts", exchanged},
		// Neither: the reuse deleted the only access token, so nothing
		// is left to tell how the code was used.
		{"used code, access token only", noRefresh, "contacts", eitherWay},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := code(tc.client, tc.scope, nil)
			form := exchangeForm(c, tc.client.RedirectURIs[0])
			tokens(t, e.tokenAs(t, tc.client, form))
			wantTokenError(t, e.tokenAs(t, tc.client, form), http.StatusBadRequest, "invalid_grant", []string{tc.want}, spentByFailure)
			// Another client learns nothing about this code.
			wantTokenError(t, e.tokenAs(t, other, form), http.StatusBadRequest, "invalid_grant", nil, exchanged, eitherWay, spentByFailure)
		})
	}

	t.Run("unknown code", func(t *testing.T) {
		wantTokenError(t, e.tokenAs(t, bff, exchangeForm("not-a-code", bff.RedirectURIs[0])), http.StatusBadRequest, "invalid_grant",
			[]string{"not one this server issued"})
	})
}

// TestTokenErrorExpiredCode: an expired code says so and how long codes
// last; before, the description was fosite's sentence alone.
func TestTokenErrorExpiredCode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createUser(t, "alice")
	bff := e.confidential(t, "client_secret_basic")
	c := newCode(t, e, newBrowser(t), codeParams(bff, "openid contacts"), "alice")
	expire(t, e, "authorization_codes", "authorize_code", c)
	wantTokenError(t, e.tokenAs(t, bff, exchangeForm(c, bff.RedirectURIs[0])), http.StatusBadRequest, "invalid_grant",
		[]string{"authorization code has expired", e.cfg.AuthorizeCodeLifespan.String()})
}

// TestTokenErrorRefresh: a refresh token that was revoked is no longer
// called "already used"; a rotated one is called rotated. (Which of the
// two it was, storage says through storage.RefreshInactive; see
// TestRefreshErrorReason.)
func TestTokenErrorRefresh(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.createUser(t, "alice")
	bff := e.confidential(t, "client_secret_basic")
	b := newBrowser(t)
	grant := func() tokenResponse {
		c := newCode(t, e, b, codeParams(bff, "contacts"), "alice")
		return tokens(t, e.tokenAs(t, bff, exchangeForm(c, bff.RedirectURIs[0])))
	}
	const fositeUsed = "The refresh token was already used."

	t.Run("rotated", func(t *testing.T) {
		old := grant().RefreshToken
		tokens(t, e.tokenAs(t, bff, refreshForm(old)))
		e.clock.Advance(time.Minute) // past the reuse window: a replay
		wantTokenError(t, e.tokenAs(t, bff, refreshForm(old)), http.StatusBadRequest, "invalid_grant",
			[]string{"rotated", "sign in again"}, fositeUsed)
	})

	t.Run("revoked", func(t *testing.T) {
		rt := grant().RefreshToken
		f, id, secret := withCreds(bff, url.Values{"token": {rt}, "token_type_hint": {"refresh_token"}})
		if r := post(t, e.url("/oauth2/revoke"), f, id, secret); r.status != http.StatusOK {
			t.Fatalf("revoke: %s", r)
		}
		wantTokenError(t, e.tokenAs(t, bff, refreshForm(rt)), http.StatusBadRequest, "invalid_grant",
			[]string{"revoked", "sign in again"}, fositeUsed, "already used")
	})
}
