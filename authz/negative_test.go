package authz_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/storage"
)

// Negative cases for every rule of DESIGN.md "Correctness that matters most",
// each asserting the exact HTTP status and RFC error code. Every test has its
// own database; subtests share their parent's server and run in parallel.

const (
	appCallback = "https://app.example.com/callback"
	spaCallback = "http://127.0.0.1:5173/callback"
	// oddState has the characters that break naive query handling.
	oddState = "a b+c&d=e%f/ü€?#x=="
)

// reply is one HTTP response with its body read.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) String() string {
	return fmt.Sprintf("HTTP %d\n%v\n%s", r.status, r.header, r.body)
}

// noRedirects never follows a redirect, so every hop can be asserted.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func send(t *testing.T, req *http.Request) reply {
	t.Helper()
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: body}
}

func newRequest(t *testing.T, method, target, contentType, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req
}

// post sends form to endpoint with optional Basic credentials, encoded the
// RFC 6749 2.3.1 way (postForm does the encoding).
func post(t *testing.T, endpoint string, form url.Values, id, secret string) reply {
	t.Helper()
	resp, body := postForm(t, endpoint, form, id, secret)
	return reply{status: resp.StatusCode, header: resp.Header, body: body}
}

// wantOAuthError asserts an RFC 6749 5.2 JSON error with the exact status and
// code; a 401 must carry a WWW-Authenticate challenge.
func wantOAuthError(t *testing.T, r reply, status int, code string) {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("want a JSON %s error with status %d, got non-JSON: %v\n%s", code, status, err, r)
	}
	if r.status != status || e.Error != code {
		t.Fatalf("got status %d error %q, want %d %q\n%s", r.status, e.Error, status, code, r)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json\n%s", ct, r)
	}
	if status == http.StatusUnauthorized && r.header.Get("WWW-Authenticate") == "" {
		t.Errorf("401 without WWW-Authenticate (RFC 6749 5.2, RFC 7235 3.1)\n%s", r)
	}
}

// wantErrorPage asserts our own HTML error page: the status, the error code
// shown on it, no redirect anywhere, and none of leak in the body.
func wantErrorPage(t *testing.T, p *page, status int, code string, leak ...string) {
	t.Helper()
	if p.status != status {
		t.Fatalf("status = %d, want our error page with %d\n%v\n%s", p.status, status, p.header, p.body)
	}
	if loc := p.header.Get("Location"); loc != "" {
		t.Fatalf("error page redirects to %q\n%s", loc, p.body)
	}
	if ct := p.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type = %q, want our HTML page\n%s", ct, p.body)
	}
	if want := "<code>" + code + "</code>"; !strings.Contains(p.body, want) {
		t.Errorf("error page does not show %s\n%s", want, p.body)
	}
	for _, l := range leak {
		if l != "" && strings.Contains(p.body, l) {
			t.Errorf("error page contains %q\n%s", l, p.body)
		}
	}
}

// wantRedirectError asserts an RFC 6749 4.1.2.1 error redirect: 303 to the
// registered redirect URI with error=code and the state echoed byte for
// byte. An empty state must be absent or empty.
func wantRedirectError(t *testing.T, p *page, redirectURI, code, state string) {
	t.Helper()
	if p.status != http.StatusSeeOther {
		t.Fatalf("status = %d, want a 303 error redirect with %s\n%v\n%s", p.status, code, p.header, p.body)
	}
	wantErrorLocation(t, p.location(t), redirectURI, code, state)
}

func wantErrorLocation(t *testing.T, loc *url.URL, redirectURI, code, state string) {
	t.Helper()
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != redirectURI {
		t.Fatalf("redirected to %s, want %s", loc, redirectURI)
	}
	q := loc.Query()
	if q.Get("error") != code {
		t.Fatalf("error = %q, want %q in %s", q.Get("error"), code, loc)
	}
	if q.Has("code") {
		t.Fatalf("error redirect carries a code: %s", loc)
	}
	if state == "" {
		if q.Get("state") != "" {
			t.Fatalf("state = %q, want none in %s", q.Get("state"), loc)
		}
		return
	}
	if got := q["state"]; len(got) != 1 || got[0] != state {
		t.Fatalf("state = %q, want [%q] in %s", got, state, loc)
	}
}

// codeParams are the parameters of an ordinary authorization request.
func codeParams(c authz.ClientMetadata, scope string) map[string]string {
	return map[string]string{
		"response_type": "code", "client_id": c.ClientID, "scope": scope,
		"redirect_uri": c.RedirectURIs[0], "state": "state-0123456789",
	}
}

// newCode runs the browser part of the flow (logging in and consenting when
// needed) and returns the code.
func newCode(t *testing.T, e *env, b *browser, params map[string]string, username string) string {
	t.Helper()
	loc := authorizeCode(t, e, b, params["client_id"], params, username)
	want := params["redirect_uri"]
	if got := loc.Scheme + "://" + loc.Host + loc.Path; want != "" && got != want {
		t.Fatalf("redirected to %s, want %s", loc, want)
	}
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in %s", loc)
	}
	return code
}

// withCreds adds c's credentials to form the way c's registered method sends
// them; it returns the Basic credentials to use, if any.
func withCreds(c authz.ClientMetadata, form url.Values) (url.Values, string, string) {
	out := url.Values{}
	for k, v := range form {
		out[k] = append([]string(nil), v...)
	}
	switch c.TokenEndpointAuthMethod {
	case "client_secret_basic":
		return out, c.ClientID, c.ClientSecret
	case "client_secret_post":
		out.Set("client_id", c.ClientID)
		out.Set("client_secret", c.ClientSecret)
	default:
		out.Set("client_id", c.ClientID)
	}
	return out, "", ""
}

// tokenAs posts form to the token endpoint authenticated as c.
func (e *env) tokenAs(t *testing.T, c authz.ClientMetadata, form url.Values) reply {
	t.Helper()
	f, id, secret := withCreds(c, form)
	return post(t, e.url("/oauth2/token"), f, id, secret)
}

// tokens decodes a successful token response.
func tokens(t *testing.T, r reply) tokenResponse {
	t.Helper()
	var tr tokenResponse
	if err := json.Unmarshal(r.body, &tr); err != nil || r.status != http.StatusOK || tr.AccessToken == "" {
		t.Fatalf("want tokens, got (%v)\n%s", err, r)
	}
	tr.status, tr.header = r.status, r.header
	return tr
}

func exchangeForm(code, redirectURI string) url.Values {
	return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}}
}

func refreshForm(refresh string) url.Values {
	return url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}
}

// wantActive asserts what introspection by resource server rs says of token.
// wantActive introspects token as client c (authenticating the way c is
// registered to) and checks whether it is active.
func wantActive(t *testing.T, e *env, c authz.ClientMetadata, token string, want bool, what string) {
	t.Helper()
	form, id, secret := withCreds(c, url.Values{"token": {token}})
	resp, body := postForm(t, e.url("/oauth2/introspect"), form, id, secret)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: introspect as %s: %d %s", what, c.ClientID, resp.StatusCode, body)
	}
	var info map[string]any
	if err := json.Unmarshal(body, &info); err != nil {
		t.Fatalf("%s: %v\n%s", what, err, body)
	}
	if info["active"] != want {
		t.Fatalf("%s: active = %v, want %v: %v", what, info["active"], want, info)
	}
}

// count runs a count(*) query on e's database.
func (e *env) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func cookiesOf(h http.Header) []*http.Cookie {
	return (&http.Response{Header: h}).Cookies()
}

func findCookie(h http.Header, name string) *http.Cookie {
	for _, c := range cookiesOf(h) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Authorize endpoint.

// TestAuthorizeUnvalidatedClientOrRedirect: while the client and its
// redirect_uri are not validated, the error is shown on our own page and
// never redirected to (RFC 6749 4.1.2.1, DESIGN "redirect_uri").
func TestAuthorizeUnvalidatedClientOrRedirect(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := e.confidential(t, "client_secret_basic")
	spa := e.createClient(t, authzPublicClient())
	two := e.createClient(t, authz.ClientMetadata{
		RedirectURIs: []string{appCallback, "https://app.example.com/other"},
		Scope:        "openid contacts",
	})

	cases := []struct {
		name   string
		params map[string]string
		code   string
	}{
		{"unknown client", map[string]string{"client_id": "no-such-client", "redirect_uri": "https://evil.example/callback"}, "invalid_client"},
		{"unknown client, registered uri", map[string]string{"client_id": "no-such-client", "redirect_uri": appCallback}, "invalid_client"},
		{"no client_id", map[string]string{"client_id": "", "redirect_uri": appCallback}, "invalid_client"},
		{"extra path segment", map[string]string{"redirect_uri": appCallback + "/extra"}, "invalid_request"},
		{"extra query", map[string]string{"redirect_uri": appCallback + "?x=1"}, "invalid_request"},
		{"trailing slash", map[string]string{"redirect_uri": appCallback + "/"}, "invalid_request"},
		{"other host", map[string]string{"redirect_uri": "https://evil.example/callback"}, "invalid_request"},
		{"sub-domain", map[string]string{"redirect_uri": "https://evil.app.example.com/callback"}, "invalid_request"},
		{"userinfo trick", map[string]string{"redirect_uri": "https://app.example.com@evil.example/callback"}, "invalid_request"},
		{"http variant", map[string]string{"redirect_uri": "http://app.example.com/callback"}, "invalid_request"},
		{"other port", map[string]string{"redirect_uri": "https://app.example.com:8443/callback"}, "invalid_request"},
		{"upper-case path", map[string]string{"redirect_uri": "https://app.example.com/CALLBACK"}, "invalid_request"},
		{"fragment", map[string]string{"redirect_uri": appCallback + "#x"}, "invalid_request"},
		{"percent-encoded path", map[string]string{"redirect_uri": "https://app.example.com/%63allback"}, "invalid_request"},
		// OpenID Connect requires redirect_uri (Core 3.1.2.1); without it
		// there is nothing validated to redirect to.
		{"openid without redirect_uri", map[string]string{"redirect_uri": ""}, "invalid_request"},
		// Loopback redirects may change the port (RFC 8252 7.3), not the path.
		{"public client, loopback other path", map[string]string{"client_id": spa.ClientID, "redirect_uri": "http://127.0.0.1:5173/evil"}, "invalid_request"},
		{"public client, localhost for loopback ip", map[string]string{"client_id": spa.ClientID, "redirect_uri": "http://localhost:5173/callback"}, "invalid_request"},
		// fosite checks these before redirect_uri, so they cannot be
		// redirected either.
		{"unsupported response_mode", map[string]string{"redirect_uri": appCallback, "response_mode": "web_message"}, "unsupported_response_mode"},
		{"request object", map[string]string{"redirect_uri": appCallback, "request": "eyJhbGciOiJub25lIn0.e30."}, "invalid_request"},
		// With two registered URIs none is implied.
		{"two registered, none given", map[string]string{"client_id": two.ClientID, "scope": "contacts", "redirect_uri": ""}, "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			params := map[string]string{
				"response_type": "code", "client_id": client.ClientID, "scope": "openid contacts", "state": "state-0123456789",
			}
			for k, v := range tc.params {
				params[k] = v
			}
			for k, v := range params {
				if v == "" {
					delete(params, k)
				}
			}
			target := authorizeURL(e.issuer, params)
			// GET as the browser would, and the same as a form POST.
			b := newBrowser(t)
			wantErrorPage(t, b.get(target), http.StatusBadRequest, tc.code, params["redirect_uri"], "evil.example")
			u, _ := url.Parse(target)
			wantErrorPage(t, b.post(e.url("/oauth2/authorize"), u.Query()), http.StatusBadRequest, tc.code, params["redirect_uri"], "evil.example")
			if n := e.count(t, `SELECT count(*) FROM authorization_codes`); n != 0 {
				t.Fatalf("%d codes issued", n)
			}
		})
	}
}

// TestAuthorizeWithoutRedirectURI: RFC 6749 3.1.2.3 lets a client with one
// registered redirect URI leave it out; the server then uses that one, never
// anything else, and the token request needs no redirect_uri either
// (4.1.3: only "if included in the authorization request").
func TestAuthorizeWithoutRedirectURI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := e.confidential(t, "client_secret_basic")
	e.createUser(t, "alice")
	b := newBrowser(t)

	params := map[string]string{"response_type": "code", "client_id": client.ClientID, "scope": "contacts", "state": "state-0123456789"}
	loc := authorizeCode(t, e, b, client.ClientID, params, "alice")
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != appCallback || loc.Query().Get("code") == "" {
		t.Fatalf("redirected to %s, want a code at %s", loc, appCallback)
	}
	tok := e.tokenAs(t, client, url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}})
	tokens(t, tok)

	// Errors go to the registered URI too.
	params["scope"] = "admin"
	wantRedirectError(t, newBrowser(t).get(authorizeURL(e.issuer, params)), appCallback, "invalid_scope", "state-0123456789")
}

// TestAuthorizeErrorRedirects: once client and redirect_uri are valid, errors
// go back to the client with error and the original state (RFC 6749 4.1.2.1).
func TestAuthorizeErrorRedirects(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := e.confidential(t, "client_secret_basic")
	spa := e.createClient(t, authzPublicClient())
	_, challenge := pkcePair()

	base := func(c authz.ClientMetadata, set map[string]string) map[string]string {
		p := map[string]string{"response_type": "code", "client_id": c.ClientID, "scope": "openid contacts",
			"redirect_uri": c.RedirectURIs[0], "state": oddState}
		for k, v := range set {
			if v == "" {
				delete(p, k)
			} else {
				p[k] = v
			}
		}
		return p
	}
	cases := []struct {
		name   string
		params map[string]string
		// how the error comes: at once ("") or after the user logs in and
		// presses this button on the consent page.
		after string
		code  string
		state string
	}{
		{"response_type token", base(client, map[string]string{"response_type": "token"}), "", "unsupported_response_type", oddState},
		{"response_type id_token", base(client, map[string]string{"response_type": "id_token"}), "", "unsupported_response_type", oddState},
		{"response_type code token", base(client, map[string]string{"response_type": "code token"}), "", "unsupported_response_type", oddState},
		{"no response_type", base(client, map[string]string{"response_type": ""}), "", "unsupported_response_type", oddState},
		{"scope not registered", base(client, map[string]string{"scope": "openid admin"}), "", "invalid_scope", oddState},
		{"scope prefix of registered", base(client, map[string]string{"scope": "contact"}), "", "invalid_scope", oddState},
		{"registration", base(client, map[string]string{"registration": "{}"}), "", "registration_not_supported", oddState},
		// Without PKCE a confidential client must send state.
		{"no state, no PKCE", base(client, map[string]string{"state": ""}), "", "invalid_state", ""},
		// With PKCE and no state, the stand-in state never reaches the client.
		{"no state with PKCE, bad scope", base(spa, map[string]string{"state": "", "scope": "admin", "code_challenge": challenge, "code_challenge_method": "S256"}), "", "invalid_scope", ""},
		{"user denies", base(client, nil), "deny", "access_denied", oddState},
		// PKCE is checked before anyone is asked to log in.
		{"public client without PKCE", base(spa, nil), "", "invalid_request", oddState},
		{"public client with plain PKCE", base(spa, map[string]string{"code_challenge": challenge, "code_challenge_method": "plain"}), "", "invalid_request", oddState},
		{"public client, method defaults to plain", base(spa, map[string]string{"code_challenge": challenge}), "", "invalid_request", oddState},
		{"public client, unknown method", base(spa, map[string]string{"code_challenge": challenge, "code_challenge_method": "S512"}), "", "invalid_request", oddState},
		{"confidential client, unknown method", base(client, map[string]string{"code_challenge": challenge, "code_challenge_method": "S512"}), "", "invalid_request", oddState},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBrowser(t)
			p := b.get(authorizeURL(e.issuer, tc.params))
			if tc.after == "" {
				wantRedirectError(t, p, tc.params["redirect_uri"], tc.code, tc.state)
			} else {
				// A user of its own: consents are remembered per user.
				user := fmt.Sprintf("user%d", i)
				e.createUser(t, user)
				loc := b.consent(b.login(p, user, testPassword), tc.after)
				wantErrorLocation(t, loc, tc.params["redirect_uri"], tc.code, tc.state)
			}
			if n := e.count(t, `SELECT count(*) FROM authorization_codes`); n != 0 {
				t.Fatalf("%d codes issued", n)
			}
		})
	}
}

// TestPlainPKCEWhenConfigured: AllowPlainPKCE accepts the plain method, and
// the verifier must then equal the challenge.
func TestPlainPKCEWhenConfigured(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *authz.Config) { c.AllowPlainPKCE = true })
	spa := e.createClient(t, authzPublicClient())
	e.createUser(t, "alice")
	b := newBrowser(t)
	verifier, _ := pkcePair()

	code := func() string {
		p := codeParams(spa, "openid")
		p["code_challenge"], p["code_challenge_method"] = verifier, "plain"
		return newCode(t, e, b, p, "alice")
	}
	form := func(code, verifier string) url.Values {
		f := exchangeForm(code, spaCallback)
		f.Set("code_verifier", verifier)
		return f
	}
	wantOAuthError(t, e.tokenAs(t, spa, form(code(), verifier+"x")), http.StatusBadRequest, "invalid_grant")
	tokens(t, e.tokenAs(t, spa, form(code(), verifier)))
}

// TestLoginCSRF: a login form without the CSRF token that belongs to this
// browser's cookie is refused with 403, and no session is created.
func TestLoginCSRF(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := e.confidential(t, "client_secret_basic")
	e.createUser(t, "alice")

	cases := []struct {
		name string
		// forge submits the login form of p, fetched by b, in some bad way.
		forge func(t *testing.T, b *browser, p *page) *page
	}{
		{"wrong token", func(t *testing.T, b *browser, p *page) *page {
			return b.submit(p, p.form(t), map[string]string{"action": "login", "username": "alice", "password": testPassword, "csrf_token": "forged"})
		}},
		{"empty token", func(t *testing.T, b *browser, p *page) *page {
			return b.submit(p, p.form(t), map[string]string{"action": "login", "username": "alice", "password": testPassword, "csrf_token": ""})
		}},
		{"token of another browser", func(t *testing.T, b *browser, p *page) *page {
			other := newBrowser(t).get(authorizeURL(e.issuer, codeParams(client, "contacts")))
			return b.submit(p, p.form(t), map[string]string{"action": "login", "username": "alice", "password": testPassword,
				"csrf_token": other.form(t).values.Get("csrf_token")})
		}},
		{"no csrf cookie (fresh browser)", func(t *testing.T, b *browser, p *page) *page {
			fresh := newBrowser(t)
			res := fresh.submit(p, p.form(t), map[string]string{"action": "login", "username": "alice", "password": testPassword})
			if next := fresh.get(authorizeURL(e.issuer, codeParams(client, "contacts"))); !isLoginPage(next) {
				t.Fatalf("after a refused login the fresh browser is signed in: %d\n%s", next.status, next.body)
			}
			return res
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBrowser(t)
			target := authorizeURL(e.issuer, codeParams(client, "contacts"))
			p := b.get(target)
			if !isLoginPage(p) {
				t.Fatalf("want the login page, got %d\n%s", p.status, p.body)
			}
			res := tc.forge(t, b, p)
			wantErrorPage(t, res, http.StatusForbidden, "invalid_request")
			if c := findCookie(res.header, "authz_session"); c != nil {
				t.Fatalf("a refused login set a session cookie: %v", c)
			}
			if next := b.get(target); !isLoginPage(next) {
				t.Fatalf("after a refused login the browser is signed in: %d\n%s", next.status, next.body)
			}
			if n := e.count(t, `SELECT count(*) FROM login_sessions`); n != 0 {
				t.Fatalf("%d login sessions exist after refused logins", n)
			}
		})
	}
}

// TestConsentAndLogoutCSRF: the consent and logout forms are protected the
// same way: no code, no consent, no logout without the right token.
func TestConsentAndLogoutCSRF(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := e.confidential(t, "client_secret_basic")
	e.createUser(t, "alice")
	b := newBrowser(t)
	target := authorizeURL(e.issuer, codeParams(client, "contacts"))
	consent := b.login(b.get(target), "alice", testPassword)
	if !isConsentPage(consent) {
		t.Fatalf("want the consent page, got %d\n%s", consent.status, consent.body)
	}
	res := b.submit(consent, consent.form(t), map[string]string{"action": "allow", "csrf_token": "forged"})
	wantErrorPage(t, res, http.StatusForbidden, "invalid_request")
	if n := e.count(t, `SELECT count(*) FROM consents`) + e.count(t, `SELECT count(*) FROM authorization_codes`); n != 0 {
		t.Fatalf("a forged consent stored %d consents/codes", n)
	}
	if !isConsentPage(b.get(target)) {
		t.Fatal("the consent page is not shown again after a forged Allow")
	}

	logout := b.get(e.url("/oauth2/logout"))
	res = b.submit(logout, logout.form(t), map[string]string{"action": "logout", "csrf_token": "forged"})
	wantErrorPage(t, res, http.StatusForbidden, "invalid_request")
	if n := e.count(t, `SELECT count(*) FROM login_sessions`); n != 1 {
		t.Fatalf("a forged logout left %d login sessions, want 1", n)
	}
	if !isConsentPage(b.get(target)) {
		t.Fatal("a forged logout signed the user out")
	}
}

// TestLoginFailures: wrong password, unknown and disabled users all get the
// same message on the login page and no session.
func TestLoginFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := e.confidential(t, "client_secret_basic")
	e.createUser(t, "alice")
	mallory := e.createUser(t, "mallory")
	disabled := true
	if _, err := e.store.UpdateUser(context.Background(), mallory.ID, storage.UserUpdate{Disabled: &disabled}); err != nil {
		t.Fatal(err)
	}

	cases := []struct{ name, username, password string }{
		{"wrong password", "alice", testPassword + "x"},
		{"empty password", "alice", ""},
		{"password of another case", "alice", strings.ToUpper(testPassword)},
		{"unknown user", "nobody", testPassword},
		{"disabled user", "mallory", testPassword},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBrowser(t)
			target := authorizeURL(e.issuer, codeParams(client, "contacts"))
			p := b.get(target)
			res := b.submit(p, p.form(t), map[string]string{"action": "login", "username": tc.username, "password": tc.password})
			if !isLoginPage(res) || !strings.Contains(res.body, "Incorrect username or password.") {
				t.Fatalf("want the login page with the error, got %d\n%s", res.status, res.body)
			}
			if c := findCookie(res.header, "authz_session"); c != nil {
				t.Fatalf("a failed login set a session cookie: %v", c)
			}
			if !isLoginPage(b.get(target)) {
				t.Fatal("signed in after a failed login")
			}
		})
	}
	t.Cleanup(func() {
		if n := e.count(t, `SELECT count(*) FROM login_sessions`); n != 0 {
			t.Errorf("%d login sessions after failed logins", n)
		}
	})
}

// TestSessionConsentAndLogout: a signed-in user with a remembered consent
// goes straight back to the client; asking for more scopes asks again; after
// logout the session is gone on the server, not just in the browser.
func TestSessionConsentAndLogout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := e.confidential(t, "client_secret_basic")
	e.createUser(t, "alice")
	b := newBrowser(t)

	newCode(t, e, b, codeParams(client, "openid contacts"), "alice")
	for _, scope := range []string{"openid contacts", "contacts", "contacts openid"} {
		p := b.get(authorizeURL(e.issuer, codeParams(client, scope)))
		if p.status != http.StatusSeeOther {
			t.Fatalf("scope %q: want a direct redirect with a code, got %d\n%s", scope, p.status, p.body)
		}
		if loc := p.location(t); loc.Query().Get("code") == "" || !strings.HasPrefix(loc.String(), appCallback+"?") {
			t.Fatalf("scope %q: redirected to %s", scope, loc)
		}
	}
	more := b.get(authorizeURL(e.issuer, codeParams(client, "openid contacts profile")))
	if !isConsentPage(more) || !strings.Contains(more.body, "See your name and username") {
		t.Fatalf("more scopes than consented: want the consent page, got %d\n%s", more.status, more.body)
	}

	session := findCookieInJar(t, b, e.issuer, "authz_session")
	logout := b.get(e.url("/oauth2/logout"))
	res := b.submit(logout, logout.form(t), map[string]string{"action": "logout"})
	if res.status != http.StatusOK {
		t.Fatalf("logout: %d\n%s", res.status, res.body)
	}
	if c := findCookie(res.header, "authz_session"); c == nil || c.MaxAge >= 0 {
		t.Errorf("logout does not clear the session cookie: %v", res.header["Set-Cookie"])
	}
	if p := b.get(authorizeURL(e.issuer, codeParams(client, "contacts"))); !isLoginPage(p) {
		t.Fatalf("after logout want the login page, got %d\n%s", p.status, p.body)
	}
	// The old cookie, replayed, is dead on the server.
	replay := newBrowser(t)
	u, _ := url.Parse(e.issuer)
	replay.c.Jar.SetCookies(u, []*http.Cookie{session})
	if p := replay.get(authorizeURL(e.issuer, codeParams(client, "contacts"))); !isLoginPage(p) {
		t.Fatalf("a logged-out session cookie still works: %d\n%s", p.status, p.body)
	}
}

func findCookieInJar(t *testing.T, b *browser, issuer, name string) *http.Cookie {
	t.Helper()
	u, _ := url.Parse(issuer)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no %s cookie in the browser", name)
	return nil
}

// TestSkipConsent: a client registered with skip_consent never shows the
// consent page.
func TestSkipConsent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := e.createClient(t, authz.ClientMetadata{
		ClientName: "First party", RedirectURIs: []string{appCallback}, Scope: "openid profile contacts", SkipConsent: true,
	})
	e.createUser(t, "alice")
	b := newBrowser(t)
	p := b.login(b.get(authorizeURL(e.issuer, codeParams(client, "openid profile"))), "alice", testPassword)
	if isConsentPage(p) {
		t.Fatal("consent page shown for a skip_consent client")
	}
	if loc := p.location(t); loc.Query().Get("code") == "" || !strings.HasPrefix(loc.String(), appCallback+"?") {
		t.Fatalf("redirected to %s", loc)
	}
	if n := e.count(t, `SELECT count(*) FROM consents`); n != 0 {
		t.Errorf("skip_consent stored %d consents", n)
	}
}

// TestPagesRefuseFraming: login, consent and error pages cannot be framed,
// and the consent page may post (and be redirected) to the client only.
func TestPagesRefuseFraming(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := e.confidential(t, "client_secret_basic")
	e.createUser(t, "alice")
	b := newBrowser(t)
	login := b.get(authorizeURL(e.issuer, codeParams(client, "contacts")))
	consent := b.login(login, "alice", testPassword)
	errPage := b.get(authorizeURL(e.issuer, map[string]string{"client_id": "nope"}))
	logout := b.get(e.url("/oauth2/logout"))

	for name, p := range map[string]*page{"login": login, "consent": consent, "error": errPage, "logout": logout} {
		if got := p.header.Get("X-Frame-Options"); got != "DENY" {
			t.Errorf("%s page: X-Frame-Options = %q, want DENY", name, got)
		}
		csp := p.header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s page: CSP %q lacks frame-ancestors 'none'", name, csp)
		}
		if cc := p.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("%s page: Cache-Control = %q, want no-store", name, cc)
		}
	}
	if !isConsentPage(consent) {
		t.Fatalf("want the consent page, got %d\n%s", consent.status, consent.body)
	}
	csp := consent.header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "form-action 'self' https://app.example.com;") {
		t.Errorf("consent CSP %q does not allow the form to end at https://app.example.com", csp)
	}
	if strings.Contains(errPage.header.Get("Content-Security-Policy"), "app.example.com") {
		t.Errorf("error page CSP names a client origin: %q", errPage.header.Get("Content-Security-Policy"))
	}
}

// TestCookieAttributes: the session and CSRF cookies are HttpOnly and
// SameSite=Lax, and not Secure for an http issuer.
func TestCookieAttributes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := e.confidential(t, "client_secret_basic")
	e.createUser(t, "alice")
	b := newBrowser(t)
	p := b.get(authorizeURL(e.issuer, codeParams(client, "contacts")))
	res := b.submit(p, p.form(t), map[string]string{"action": "login", "username": "alice", "password": testPassword})
	if !isConsentPage(res) {
		t.Fatalf("login: want the consent page, got %d\n%s", res.status, res.body)
	}
	for _, c := range []struct {
		name string
		h    http.Header
	}{{"authz_session", res.header}, {"authz_csrf", p.header}} {
		ck := findCookie(c.h, c.name)
		if ck == nil {
			t.Fatalf("no %s cookie set: %v", c.name, c.h["Set-Cookie"])
		}
		if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Secure || ck.Path != "/" || len(ck.Value) < 32 {
			t.Errorf("%s cookie: %q; want HttpOnly, SameSite=Lax, Path=/, not Secure on http, 32+ chars", c.name, ck.String())
		}
	}
}

// Token endpoint.

// tokenFixture is one server with clients of every kind and one browser
// signed in as alice: after the first code for a client (login, consent),
// each further code costs one request.
type tokenFixture struct {
	e                       *env
	basic, post, other, spa authz.ClientMetadata
	rs                      authz.ClientMetadata // a resource server that introspects
	b                       *browser
	verifier, challenge     string
}

func newTokenFixture(t *testing.T, opts ...envOption) *tokenFixture {
	t.Helper()
	e := newEnv(t, opts...)
	f := &tokenFixture{
		e:     e,
		basic: e.confidential(t, "client_secret_basic"),
		post:  e.confidential(t, "client_secret_post"),
		other: e.confidential(t, "client_secret_basic"),
		spa:   e.createClient(t, authzPublicClient()),
		rs:    e.resourceServer(t),
		b:     newBrowser(t),
	}
	e.createUser(t, "alice")
	f.verifier, f.challenge = pkcePair()
	return f
}

// code gets a fresh code for c; PKCE with S256 when pkce.
func (f *tokenFixture) code(t *testing.T, c authz.ClientMetadata, pkce bool) string {
	t.Helper()
	p := codeParams(c, "openid contacts")
	if pkce {
		p["code_challenge"], p["code_challenge_method"] = f.challenge, "S256"
	}
	return newCode(t, f.e, f.b, p, "alice")
}

// grant exchanges a fresh code of c for tokens.
func (f *tokenFixture) grant(t *testing.T, c authz.ClientMetadata) tokenResponse {
	t.Helper()
	form := exchangeForm(f.code(t, c, c.TokenEndpointAuthMethod == "none"), c.RedirectURIs[0])
	if c.TokenEndpointAuthMethod == "none" {
		form.Set("code_verifier", f.verifier)
	}
	return tokens(t, f.e.tokenAs(t, c, form))
}

func TestTokenEndpointErrors(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	e := f.e
	tokenURL := e.url("/oauth2/token")
	// Codes are fetched up front: the browser is not safe for parallel use.
	codes := map[string]string{}
	for _, name := range []string{"other client", "wrong redirect", "no redirect", "basic as post", "wrong secret", "no credentials", "expired code"} {
		codes[name] = f.code(t, f.basic, false)
	}
	codes["post as basic"] = f.code(t, f.post, false)
	foreignRefresh := f.grant(t, f.other).RefreshToken
	accessToken := f.grant(t, f.other).AccessToken
	expiredRefresh := f.grant(t, f.other).RefreshToken

	cases := []struct {
		name   string
		do     func(t *testing.T) reply
		status int
		code   string
	}{
		{"code of another client", func(t *testing.T) reply {
			return e.tokenAs(t, f.other, exchangeForm(codes["other client"], appCallback))
		}, 400, "invalid_grant"},
		{"wrong redirect_uri", func(t *testing.T) reply {
			return e.tokenAs(t, f.basic, exchangeForm(codes["wrong redirect"], appCallback+"/extra"))
		}, 400, "invalid_grant"},
		{"redirect_uri left out though it was sent", func(t *testing.T) reply {
			return e.tokenAs(t, f.basic, url.Values{"grant_type": {"authorization_code"}, "code": {codes["no redirect"]}})
		}, 400, "invalid_grant"},
		{"unknown code", func(t *testing.T) reply {
			return e.tokenAs(t, f.basic, exchangeForm("bm90LWEtY29kZQ.bm90LWEtc2lnbmF0dXJl", appCallback))
		}, 400, "invalid_grant"},
		{"no code", func(t *testing.T) reply {
			return e.tokenAs(t, f.basic, url.Values{"grant_type": {"authorization_code"}, "redirect_uri": {appCallback}})
		}, 400, "invalid_grant"},
		{"expired code", func(t *testing.T) reply {
			expire(t, e, "authorization_codes", "authorize_code", codes["expired code"])
			return e.tokenAs(t, f.basic, exchangeForm(codes["expired code"], appCallback))
		}, 400, "invalid_grant"},
		{"wrong secret", func(t *testing.T) reply {
			return post(t, tokenURL, exchangeForm(codes["wrong secret"], appCallback), f.basic.ClientID, f.basic.ClientSecret+"x")
		}, 401, "invalid_client"},
		{"unknown client", func(t *testing.T) reply {
			return post(t, tokenURL, exchangeForm(codes["wrong secret"], appCallback), "no-such-client", "secret")
		}, 401, "invalid_client"},
		// RFC 6749 5.2 lists "no client authentication included" under
		// invalid_client (401); fosite answers invalid_request.
		{"no client credentials", func(t *testing.T) reply {
			return post(t, tokenURL, exchangeForm(codes["no credentials"], appCallback), "", "")
		}, 400, "invalid_request"},
		{"basic client sends client_secret_post", func(t *testing.T) reply {
			form := exchangeForm(codes["basic as post"], appCallback)
			form.Set("client_id", f.basic.ClientID)
			form.Set("client_secret", f.basic.ClientSecret)
			return post(t, tokenURL, form, "", "")
		}, 401, "invalid_client"},
		{"post client sends client_secret_basic", func(t *testing.T) reply {
			return post(t, tokenURL, exchangeForm(codes["post as basic"], appCallback), f.post.ClientID, f.post.ClientSecret)
		}, 401, "invalid_client"},
		{"public client sends a secret", func(t *testing.T) reply {
			return post(t, tokenURL, exchangeForm("x.y", spaCallback), f.spa.ClientID, "made-up")
		}, 401, "invalid_client"},
		{"JSON body", func(t *testing.T) reply {
			req := newRequest(t, http.MethodPost, tokenURL, "application/json",
				`{"grant_type":"client_credentials"}`)
			req.SetBasicAuth(f.rs.ClientID, f.rs.ClientSecret)
			return send(t, req)
		}, 400, "invalid_request"},
		{"empty body", func(t *testing.T) reply {
			req := newRequest(t, http.MethodPost, tokenURL, "application/x-www-form-urlencoded", "")
			req.SetBasicAuth(f.rs.ClientID, f.rs.ClientSecret)
			return send(t, req)
		}, 400, "invalid_request"},
		{"body over 64 KiB", func(t *testing.T) reply {
			body := "grant_type=client_credentials&pad=" + strings.Repeat("a", 64<<10)
			req := newRequest(t, http.MethodPost, tokenURL, "application/x-www-form-urlencoded", body)
			req.SetBasicAuth(f.rs.ClientID, f.rs.ClientSecret)
			return send(t, req)
		}, 400, "invalid_request"},
		{"body just under 64 KiB is read", func(t *testing.T) reply {
			// The same request as above, small enough: the limit is what
			// refuses it. An unregistered scope keeps the answer an error.
			body := "grant_type=client_credentials&scope=admin&pad=" + strings.Repeat("a", 64<<10-200)
			req := newRequest(t, http.MethodPost, tokenURL, "application/x-www-form-urlencoded", body)
			req.SetBasicAuth(f.rs.ClientID, f.rs.ClientSecret)
			return send(t, req)
		}, 400, "invalid_scope"},
		{"no grant_type", func(t *testing.T) reply {
			return e.tokenAs(t, f.rs, url.Values{"scope": {""}})
		}, 400, "invalid_request"},
		// RFC 6749 5.2: "unsupported_grant_type: The authorization grant
		// type is not supported by the authorization server."
		{"unknown grant_type", func(t *testing.T) reply {
			return e.tokenAs(t, f.rs, url.Values{"grant_type": {"urn:example:unknown"}})
		}, 400, "unsupported_grant_type"},
		{"password grant", func(t *testing.T) reply {
			return e.tokenAs(t, f.basic, url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {testPassword}})
		}, 400, "unsupported_grant_type"},
		{"implicit grant", func(t *testing.T) reply {
			return e.tokenAs(t, f.basic, url.Values{"grant_type": {"implicit"}})
		}, 400, "unsupported_grant_type"},
		{"client_credentials for a client without the grant", func(t *testing.T) reply {
			return e.tokenAs(t, f.basic, url.Values{"grant_type": {"client_credentials"}})
		}, 400, "unauthorized_client"},
		{"client_credentials with an unregistered scope", func(t *testing.T) reply {
			return e.tokenAs(t, f.rs, url.Values{"grant_type": {"client_credentials"}, "scope": {"admin"}})
		}, 400, "invalid_scope"},
		{"authorization_code for a client without the grant", func(t *testing.T) reply {
			return e.tokenAs(t, f.rs, exchangeForm(codes["wrong secret"], appCallback))
		}, 400, "unauthorized_client"},
		{"refresh token of another client", func(t *testing.T) reply {
			return e.tokenAs(t, f.basic, refreshForm(foreignRefresh))
		}, 400, "invalid_grant"},
		{"unknown refresh token", func(t *testing.T) reply {
			return e.tokenAs(t, f.basic, refreshForm("bm90LWEtdG9rZW4.bm90LWEtc2lnbmF0dXJl"))
		}, 400, "invalid_grant"},
		{"access token as refresh token", func(t *testing.T) reply {
			return e.tokenAs(t, f.other, refreshForm(accessToken))
		}, 400, "invalid_grant"},
		{"expired refresh token", func(t *testing.T) reply {
			expire(t, e, "refresh_tokens", "refresh_token", expiredRefresh)
			return e.tokenAs(t, f.other, refreshForm(expiredRefresh))
		}, 400, "invalid_grant"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			wantOAuthError(t, tc.do(t), tc.status, tc.code)
		})
	}

	t.Run("GET", func(t *testing.T) {
		t.Parallel()
		r := send(t, newRequest(t, http.MethodGet, tokenURL+"?grant_type=client_credentials", "", ""))
		if r.status != http.StatusMethodNotAllowed {
			t.Fatalf("GET /oauth2/token: want 405\n%s", r)
		}
	})
}

// expire moves the expiry of token (a code, access or refresh token) into
// the past, as a fake clock would: in its stored session and in the
// expires_at column, the two places the server writes it and reads it from.
func expire(t *testing.T, e *env, table, kind, token string) {
	t.Helper()
	_, sig, ok := strings.Cut(token, ".")
	if !ok {
		t.Fatalf("token %q has no signature part", token)
	}
	tag, err := e.pool.Exec(context.Background(), `UPDATE `+table+`
		SET session = jsonb_set(session, ARRAY['expires_at', $2::text], to_jsonb('2000-01-01T00:00:00Z'::text)),
			expires_at = '2000-01-01T00:00:00Z'
		WHERE signature = $1`, sig, kind)
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != 1 {
		t.Fatalf("expire %s: %d rows updated, want 1", table, tag.RowsAffected())
	}
}

// TestCodeReuse: a second use of a code fails and revokes everything the
// first use issued (RFC 6749 4.1.2), whoever the client and with or without
// PKCE.
func TestCodeReuse(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	cases := []struct {
		name string
		c    authz.ClientMetadata
		pkce bool
	}{
		{"client_secret_basic", f.basic, false},
		{"client_secret_basic with PKCE", f.basic, true},
		{"client_secret_post", f.post, false},
		{"public with PKCE", f.spa, true},
	}
	for _, tc := range cases {
		form := exchangeForm(f.code(t, tc.c, tc.pkce), tc.c.RedirectURIs[0])
		if tc.pkce {
			form.Set("code_verifier", f.verifier)
		}
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			first := tokens(t, f.e.tokenAs(t, tc.c, form))
			if first.RefreshToken == "" {
				t.Fatalf("no refresh token: %+v", first)
			}
			wantActive(t, f.e, f.rs, first.AccessToken, true, "first access token")
			wantOAuthError(t, f.e.tokenAs(t, tc.c, form), http.StatusBadRequest, "invalid_grant")
			wantActive(t, f.e, f.rs, first.AccessToken, false, "access token of a reused code")
			if tc.c.TokenEndpointAuthMethod != "none" { // a public client cannot introspect
				wantActive(t, f.e, tc.c, first.RefreshToken, false, "refresh token of a reused code")
			}
			wantOAuthError(t, f.e.tokenAs(t, tc.c, refreshForm(first.RefreshToken)), http.StatusBadRequest, "invalid_grant")
			// A third use is refused just the same.
			wantOAuthError(t, f.e.tokenAs(t, tc.c, form), http.StatusBadRequest, "invalid_grant")
		})
	}
}

// TestPKCEVerifier: a code issued with a challenge cannot be redeemed
// without the right verifier, and one wrong try spends the challenge.
func TestPKCEVerifier(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	e := f.e
	wrong := strings.Repeat("w", 43)

	// Each step is a verifier to send ("" for none) and the answer, exactly.
	type step struct {
		verifier string
		status   int
		code     string
	}
	cases := []struct {
		name  string
		pkce  bool // whether the code was issued with a challenge
		steps func(c authz.ClientMetadata) []step
	}{
		{"missing verifier", true, func(authz.ClientMetadata) []step { return []step{{"", 400, "invalid_grant"}} }},
		{"wrong verifier", true, func(authz.ClientMetadata) []step { return []step{{wrong, 400, "invalid_grant"}} }},
		{"verifier too short", true, func(authz.ClientMetadata) []step { return []step{{"short", 400, "invalid_grant"}} }},
		{"verifier with bad characters", true, func(authz.ClientMetadata) []step {
			return []step{{f.verifier[:43] + "+/=", 400, "invalid_grant"}}
		}},
		{"challenge as verifier", true, func(authz.ClientMetadata) []step { return []step{{f.challenge, 400, "invalid_grant"}} }},
		// fosite's PKCE handler deletes the challenge before it compares
		// the verifier, and authz's token endpoint commits what a failed
		// request wrote (token.go: "spending a PKCE challenge"): one wrong
		// verifier spends the challenge, so the right one afterwards finds
		// no PKCE data and gets invalid_grant.
		{"right verifier after a wrong one", true, func(authz.ClientMetadata) []step {
			return []step{{wrong, 400, "invalid_grant"}, {f.verifier, 400, "invalid_grant"}}
		}},
		// With the challenge spent, a request without any verifier must not
		// pass for a code that never had PKCE (DESIGN: "a code issued with
		// a challenge cannot be redeemed without the right verifier"). A
		// public client gets fosite's "must include a code_challenge"
		// (invalid_request); for a confidential client fosite sees no PKCE
		// at all and, today, issues tokens (see the bug report). Once a
		// failed exchange spends the code, both answers are invalid_grant.
		// A failed exchange spends the code, so the second try is a
		// second use of the code, whatever the client type.
		{"no verifier after a wrong one", true, func(c authz.ClientMetadata) []step {
			return []step{{wrong, 400, "invalid_grant"}, {"", 400, "invalid_grant"}}
		}},
		{"verifier for a code without challenge", false, func(authz.ClientMetadata) []step {
			return []step{{f.verifier, 400, "invalid_grant"}}
		}},
	}
	for _, c := range []authz.ClientMetadata{f.spa, f.basic} {
		for _, tc := range cases {
			if !tc.pkce && c.TokenEndpointAuthMethod == "none" {
				continue // a public client cannot get a code without PKCE
			}
			code := f.code(t, c, tc.pkce) // the browser is not for parallel use
			t.Run(c.TokenEndpointAuthMethod+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				for i, s := range tc.steps(c) {
					form := exchangeForm(code, c.RedirectURIs[0])
					if s.verifier != "" {
						form.Set("code_verifier", s.verifier)
					}
					r := e.tokenAs(t, c, form)
					if r.status == http.StatusOK {
						t.Fatalf("step %d: BUG: a code issued with a PKCE challenge was redeemed without the right verifier\n%s", i+1, r)
					}
					wantOAuthError(t, r, s.status, s.code)
				}
			})
		}
	}
}

// TestRefreshReuse: refresh tokens rotate; reusing a rotated one fails and
// revokes the whole family, including tokens issued after it.
func TestRefreshReuse(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	e := f.e
	for _, c := range []authz.ClientMetadata{f.basic, f.spa} {
		r1 := f.grant(t, c)
		r2 := tokens(t, e.tokenAs(t, c, refreshForm(r1.RefreshToken)))
		r3 := tokens(t, e.tokenAs(t, c, refreshForm(r2.RefreshToken)))
		wantActive(t, e, f.rs, r3.AccessToken, true, "newest access token")
		wantActive(t, e, f.rs, r2.AccessToken, false, "access token of a rotated refresh token")

		// Right after its rotation a reused token is refused as a
		// concurrent refresh (two tabs), and the family lives on.
		wantOAuthError(t, e.tokenAs(t, c, refreshForm(r2.RefreshToken)), http.StatusBadRequest, "invalid_grant")
		wantActive(t, e, f.rs, r3.AccessToken, true, "newest access token after a concurrent-looking reuse")

		// Later it is a replay: the whole family is revoked.
		e.clock.Advance(authz.DefaultRefreshReuseWindow + time.Second)
		wantOAuthError(t, e.tokenAs(t, c, refreshForm(r1.RefreshToken)), http.StatusBadRequest, "invalid_grant")
		wantActive(t, e, f.rs, r3.AccessToken, false, c.TokenEndpointAuthMethod+": after reuse, newest access token")
		if c.TokenEndpointAuthMethod != "none" { // a public client cannot introspect
			wantActive(t, e, c, r3.RefreshToken, false, c.TokenEndpointAuthMethod+": after reuse, newest refresh token")
		}
		wantOAuthError(t, e.tokenAs(t, c, refreshForm(r3.RefreshToken)), http.StatusBadRequest, "invalid_grant")
		// A second reuse of the same token is refused just the same.
		wantOAuthError(t, e.tokenAs(t, c, refreshForm(r1.RefreshToken)), http.StatusBadRequest, "invalid_grant")
	}
	// Another grant of the same client and user is not part of the family.
	other := f.grant(t, f.basic)
	wantActive(t, e, f.rs, other.AccessToken, true, "token of an unrelated grant")
	tokens(t, e.tokenAs(t, f.basic, refreshForm(other.RefreshToken)))
}

// TestClientCredentials: a resource server gets a token for itself; it has no
// subject and no refresh token.
func TestClientCredentials(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	tok := tokens(t, f.e.tokenAs(t, f.rs, url.Values{"grant_type": {"client_credentials"}}))
	if tok.RefreshToken != "" {
		t.Errorf("client_credentials issued a refresh token")
	}
	info := f.e.introspect(t, tok.AccessToken, f.rs.ClientID, f.rs.ClientSecret)
	if info["active"] != true || info["client_id"] != f.rs.ClientID || info["token_use"] != "access_token" {
		t.Fatalf("introspection: %v", info)
	}
	if sub, ok := info["sub"]; ok {
		t.Fatalf("client_credentials token has sub %v", sub)
	}
	// A public client can never use it. fosite checks "public" before the
	// client's grant types and answers invalid_grant, where RFC 6749 5.2
	// would have unauthorized_client.
	wantOAuthError(t, f.e.tokenAs(t, f.spa, url.Values{"grant_type": {"client_credentials"}}), http.StatusBadRequest, "invalid_grant")
}

// TestClientSecretEncoding: RFC 6749 2.3.1 has client_secret_basic
// credentials form-urlencoded before Base64, so a secret with +, %, : and =
// works when encoded and fails when sent raw.
func TestClientSecretEncoding(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	secret := "a+b%c:d/e=f==g h&i?j#k" + strings.Repeat("Z", 20)
	basic := e.createClient(t, authz.ClientMetadata{ClientID: "id:with+chars%", GrantTypes: []string{"client_credentials"},
		ClientSecret: secret, TokenEndpointAuthMethod: "client_secret_basic"})
	postC := e.createClient(t, authz.ClientMetadata{GrantTypes: []string{"client_credentials"},
		ClientSecret: secret, TokenEndpointAuthMethod: "client_secret_post"})
	cc := url.Values{"grant_type": {"client_credentials"}}

	tok := tokens(t, e.tokenAs(t, basic, cc))
	tokens(t, e.tokenAs(t, postC, cc))
	info := e.introspect(t, tok.AccessToken, basic.ClientID, secret)
	if info["active"] != true || info["client_id"] != basic.ClientID {
		t.Fatalf("introspection: %v", info)
	}

	// Raw in the header, "%c:" does not decode.
	req := newRequest(t, http.MethodPost, e.url("/oauth2/token"), "application/x-www-form-urlencoded", cc.Encode())
	req.SetBasicAuth(basic.ClientID, secret)
	wantOAuthError(t, send(t, req), http.StatusBadRequest, "invalid_request")
	// Encoded once too few: "+" decodes to a space.
	raw := strings.ReplaceAll(url.QueryEscape(secret), "%2B", "+")
	req = newRequest(t, http.MethodPost, e.url("/oauth2/token"), "application/x-www-form-urlencoded", cc.Encode())
	req.SetBasicAuth(url.QueryEscape(basic.ClientID), raw)
	wantOAuthError(t, send(t, req), http.StatusUnauthorized, "invalid_client")
}

// Introspection.

func TestIntrospectionAuth(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	e := f.e
	tok := f.grant(t, f.basic)
	endpoint := e.url("/oauth2/introspect")
	tokenForm := url.Values{"token": {tok.AccessToken}}

	cases := []struct {
		name   string
		do     func(t *testing.T) reply
		status int
		code   string
	}{
		{"no credentials", func(t *testing.T) reply { return post(t, endpoint, tokenForm, "", "") }, 401, "invalid_client"},
		{"wrong secret", func(t *testing.T) reply {
			return post(t, endpoint, tokenForm, f.rs.ClientID, f.rs.ClientSecret+"x")
		}, 401, "invalid_client"},
		{"unknown client", func(t *testing.T) reply { return post(t, endpoint, tokenForm, "nobody", "secret") }, 401, "invalid_client"},
		{"public client id alone", func(t *testing.T) reply {
			form, _, _ := withCreds(f.spa, tokenForm)
			return post(t, endpoint, form, "", "")
		}, 401, "invalid_client"},
		{"public client in Basic with empty secret", func(t *testing.T) reply {
			req := newRequest(t, http.MethodPost, endpoint, "application/x-www-form-urlencoded", tokenForm.Encode())
			req.SetBasicAuth(f.spa.ClientID, "")
			return send(t, req)
		}, 401, "invalid_client"},
		{"bearer token instead of client credentials", func(t *testing.T) reply {
			req := newRequest(t, http.MethodPost, endpoint, "application/x-www-form-urlencoded", tokenForm.Encode())
			req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
			return send(t, req)
		}, 401, "invalid_client"},
		{"missing token", func(t *testing.T) reply {
			return post(t, endpoint, url.Values{"token_type_hint": {"access_token"}}, f.rs.ClientID, f.rs.ClientSecret)
		}, 400, "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := tc.do(t)
			wantOAuthError(t, r, tc.status, tc.code)
			if strings.Contains(string(r.body), `"active"`) {
				t.Fatalf("a refused introspection answered about the token\n%s", r)
			}
		})
	}
}

func TestIntrospectionInactive(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	e := f.e
	revoked := f.grant(t, f.basic)
	if r := post(t, e.url("/oauth2/revoke"), url.Values{"token": {revoked.AccessToken}}, f.basic.ClientID, f.basic.ClientSecret); r.status != http.StatusOK {
		t.Fatalf("revoke: %s", r)
	}
	rotated := f.grant(t, f.basic)
	tokens(t, e.tokenAs(t, f.basic, refreshForm(rotated.RefreshToken)))
	expiredAccess := f.grant(t, f.basic)
	expire(t, e, "access_tokens", "access_token", expiredAccess.AccessToken)
	expiredRefresh := f.grant(t, f.basic)
	expire(t, e, "refresh_tokens", "refresh_token", expiredRefresh.RefreshToken)
	cc := tokens(t, e.tokenAs(t, f.rs, url.Values{"grant_type": {"client_credentials"}}))
	expire(t, e, "access_tokens", "access_token", cc.AccessToken)
	live := f.grant(t, f.basic)
	// A made-up key with a live token's signature: the row is found by the
	// signature, and the HMAC check must still fail.
	_, liveSig, _ := strings.Cut(live.AccessToken, ".")

	cases := map[string]string{
		"unknown token":                   "bm90LWEtdG9rZW4.bm90LWEtc2lnbmF0dXJl",
		"garbage":                         "garbage",
		"revoked access token":            revoked.AccessToken,
		"refresh token of revoked grant":  revoked.RefreshToken,
		"rotated refresh token":           rotated.RefreshToken,
		"access token of rotated refresh": rotated.AccessToken,
		"expired access token":            expiredAccess.AccessToken,
		"expired refresh token":           expiredRefresh.RefreshToken,
		"expired client_credentials":      cc.AccessToken,
		"forged key, live signature":      "Zm9yZ2VkLWtleS1mb3JnZWQta2V5LWZvcmdlZC1rZXk." + liveSig,
		"authorization code":              f.code(t, f.basic, false),
	}
	for name, token := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, hint := range []string{"", "access_token", "refresh_token"} {
				r := post(t, e.url("/oauth2/introspect"), url.Values{"token": {token}, "token_type_hint": {hint}}, f.rs.ClientID, f.rs.ClientSecret)
				if r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != `{"active":false}` {
					t.Fatalf("hint %q: want exactly {\"active\":false}\n%s", hint, r)
				}
				if cc := r.header.Get("Cache-Control"); cc != "no-store" {
					t.Errorf("Cache-Control = %q, want no-store", cc)
				}
			}
		})
	}
	t.Run("live token", func(t *testing.T) {
		t.Parallel()
		wantActive(t, e, f.rs, live.AccessToken, true, "live access token")
	})
}

// Revocation.

func TestRevocation(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	e := f.e
	endpoint := e.url("/oauth2/revoke")
	a := f.grant(t, f.basic)
	b := f.grant(t, f.basic)
	foreign := f.grant(t, f.other)

	if r := post(t, endpoint, url.Values{"token": {"bm90LWEtdG9rZW4.bm90LWEtc2lnbmF0dXJl"}}, f.basic.ClientID, f.basic.ClientSecret); r.status != http.StatusOK {
		t.Fatalf("unknown token: want 200 (RFC 7009 2.2)\n%s", r)
	}
	wantOAuthError(t, post(t, endpoint, url.Values{"token": {a.AccessToken}}, f.basic.ClientID, f.basic.ClientSecret+"x"), http.StatusUnauthorized, "invalid_client")
	wantOAuthError(t, post(t, endpoint, url.Values{"token": {a.AccessToken}}, "nobody", "secret"), http.StatusUnauthorized, "invalid_client")
	// As at the token endpoint, fosite answers missing credentials with
	// invalid_request.
	wantOAuthError(t, post(t, endpoint, url.Values{"token": {a.AccessToken}}, "", ""), http.StatusBadRequest, "invalid_request")
	wantActive(t, e, f.rs, a.AccessToken, true, "token after refused revocations")

	// Another client's token is not revoked. fosite refuses with
	// unauthorized_client internally but writes 200 (RFC 7009 2.2 lets the
	// server answer 200 for a token it did not revoke).
	if r := post(t, endpoint, url.Values{"token": {foreign.AccessToken}}, f.basic.ClientID, f.basic.ClientSecret); r.status != http.StatusOK {
		t.Fatalf("revoking another client's token: %s", r)
	}
	wantActive(t, e, f.rs, foreign.AccessToken, true, "another client's token after a revocation attempt")

	if r := post(t, endpoint, url.Values{"token": {a.AccessToken}, "token_type_hint": {"access_token"}}, f.basic.ClientID, f.basic.ClientSecret); r.status != http.StatusOK {
		t.Fatalf("revoke: %s", r)
	}
	wantActive(t, e, f.rs, a.AccessToken, false, "revoked access token")
	wantActive(t, e, f.rs, b.AccessToken, true, "access token of another grant")
	wantActive(t, e, f.basic, b.RefreshToken, true, "refresh token of another grant, to its own client")
	tokens(t, e.tokenAs(t, f.basic, refreshForm(b.RefreshToken)))
}

// Restart and rotation.

// TestSecondInstance: a second server on the same database (a replica, or
// the same process restarted) serves the tokens and codes of the first.
func TestSecondInstance(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	e1 := f.e
	e2 := newEnvOnPool(t, e1.pool)

	tok := f.grant(t, f.basic)
	wantActive(t, e2, f.rs, tok.AccessToken, true, "access token on the second instance")
	r2 := tokens(t, e2.tokenAs(t, f.basic, refreshForm(tok.RefreshToken)))
	wantActive(t, e1, f.rs, r2.AccessToken, true, "refreshed on the second, introspected on the first")
	wantActive(t, e1, f.rs, tok.AccessToken, false, "old access token on the first instance")

	code := f.code(t, f.basic, false)
	tokens(t, e2.tokenAs(t, f.basic, exchangeForm(code, appCallback)))
	wantOAuthError(t, e1.tokenAs(t, f.basic, exchangeForm(code, appCallback)), http.StatusBadRequest, "invalid_grant")
}

// TestSecretRotation: with Secrets = [new, old] tokens of the old secret keep
// working; with the old secret gone they stop. (fosite keys its HMAC with the
// first 32 bytes of a secret, so the new one differs there.)
func TestSecretRotation(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	old := f.e.cfg.Secrets[0]
	fresh := []byte("rotated-secret-rotated-secret-rotated-0123")
	rotated := newEnvOnPool(t, f.e.pool, func(c *authz.Config) { c.Secrets = [][]byte{fresh, old} })
	// The signing key is sealed with the old secret: before the old secret
	// can go, the operator rotates every algorithm's key under the new one
	// (docs/operations.md).
	cfg := f.e.cfg
	cfg.Secrets = [][]byte{fresh, old}
	if _, err := authz.RotateSigningKeys(t.Context(), f.e.store, cfg, authz.SigningAlgorithms()); err != nil {
		t.Fatal(err)
	}
	// The old key, sealed with the old secret, signs until the new one
	// activates: only a server started after that can do without it.
	dropped := newEnvOnPool(t, f.e.pool, func(c *authz.Config) {
		c.Secrets = [][]byte{fresh}
		c.Now = func() time.Time { return time.Now().Add(authz.KeyActivationDelay) }
	})

	a := f.grant(t, f.basic)
	b := f.grant(t, f.basic)
	wantActive(t, rotated, f.rs, a.AccessToken, true, "old-secret access token with [new, old]")
	r := tokens(t, rotated.tokenAs(t, f.basic, refreshForm(a.RefreshToken)))
	// The new pair is signed with the new secret: valid where it is known.
	wantActive(t, rotated, f.rs, r.AccessToken, true, "new-secret token with [new, old]")
	wantActive(t, dropped, f.rs, r.AccessToken, true, "new-secret token with [new]")
	wantActive(t, f.e, f.rs, r.AccessToken, false, "new-secret token on a server that only knows the old secret")

	for what, tok := range map[string]string{"access": b.AccessToken, "refresh": b.RefreshToken} {
		r := post(t, dropped.url("/oauth2/introspect"), url.Values{"token": {tok}}, f.basic.ClientID, f.basic.ClientSecret)
		if strings.TrimSpace(string(r.body)) != `{"active":false}` {
			t.Fatalf("old-secret %s token with the old secret dropped: want inactive\n%s", what, r)
		}
	}
	wantOAuthError(t, dropped.tokenAs(t, f.basic, refreshForm(b.RefreshToken)), http.StatusBadRequest, "invalid_request")
	// Only the signature check failed: the family is intact for a server
	// that still knows the secret.
	tokens(t, rotated.tokenAs(t, f.basic, refreshForm(b.RefreshToken)))
}

// TestIntrospectionAnswer: an access token (answered from a view of its
// row) and a refresh token (answered through fosite) say everything RFC
// 7662 2.2 lists, alike; an access token past its expiry on the server's
// clock is inactive.
func TestIntrospectionAnswer(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t)
	e := f.e
	tok := f.grant(t, f.basic)
	issued := e.clock.Now()

	at := e.introspect(t, tok.AccessToken, f.rs.ClientID, f.rs.ClientSecret)
	rt := e.introspect(t, tok.RefreshToken, f.basic.ClientID, f.basic.ClientSecret)
	for name, info := range map[string]map[string]any{"access token": at, "refresh token": rt} {
		if info["active"] != true || info["client_id"] != f.basic.ClientID || info["iss"] != e.issuer ||
			info["scope"] != "openid contacts" || info["username"] != "alice" || info["sub"] == nil || info["sub"] == "" {
			t.Errorf("%s: %v", name, info)
		}
		if iat, _ := info["iat"].(float64); iat < float64(issued.Add(-time.Minute).Unix()) || iat > float64(issued.Unix()) {
			t.Errorf("%s: iat %v, issued about %d", name, info["iat"], issued.Unix())
		}
	}
	if at["sub"] != rt["sub"] || at["token_use"] != "access_token" || rt["token_use"] != "refresh_token" || at["token_type"] != "Bearer" {
		t.Errorf("access %v\nrefresh %v", at, rt)
	}
	if exp, _ := at["exp"].(float64); int64(exp) < issued.Unix()+int64(tok.ExpiresIn)-60 || int64(exp) > issued.Unix()+int64(tok.ExpiresIn)+60 {
		t.Errorf("access token exp %v, issued %d for %d s", at["exp"], issued.Unix(), tok.ExpiresIn)
	}
	// A hint, right or wrong, changes how the token is looked up (the
	// access table alone for access_token), never the answer.
	for _, hint := range []string{"access_token", "refresh_token"} {
		if got := e.introspectHinted(t, tok.AccessToken, hint, f.rs.ClientID, f.rs.ClientSecret); !reflect.DeepEqual(got, at) {
			t.Errorf("access token, hint %s: %v\nwithout a hint: %v", hint, got, at)
		}
		if got := e.introspectHinted(t, tok.RefreshToken, hint, f.basic.ClientID, f.basic.ClientSecret); !reflect.DeepEqual(got, rt) {
			t.Errorf("refresh token, hint %s: %v\nwithout a hint: %v", hint, got, rt)
		}
	}

	e.clock.Advance(time.Duration(tok.ExpiresIn+1) * time.Second)
	wantActive(t, e, f.rs, tok.AccessToken, false, "access token past its expiry")
	wantActive(t, e, f.basic, tok.RefreshToken, true, "its refresh token, which lives longer")
}
