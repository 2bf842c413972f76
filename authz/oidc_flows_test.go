package authz_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/storage"
)

// OpenID Connect behaviour of the authorize, userinfo and logout endpoints:
// prompt, max_age, login_hint, id_token_hint, userinfo claims and errors,
// RP-initiated logout, iss in authorization responses (RFC 9207) and CORS.
//
// The server's clock is never moved before a login or an exchange that
// issues an ID token (fosite compares auth_time with the real clock); a
// session is made old by moving its auth_time back in the database.

const (
	rpCallback  = "https://rp.example.com/callback"   // oidcClient's redirect_uri
	rpSignedOut = "https://rp.example.com/signed-out" // its post_logout_redirect_uri
)

// rp is the OpenID Connect relying party oidcClient registers.
type rp struct {
	e        *env
	client   authz.ClientMetadata
	provider *oidc.Provider
	conf     *oauth2.Config
}

func newRP(t *testing.T, e *env) *rp {
	t.Helper()
	c, provider, conf := oidcClient(t, e)
	return &rp{e: e, client: c, provider: provider, conf: conf}
}

// withScopes is r asking for other scopes.
func (r *rp) withScopes(scopes ...string) *rp {
	conf := *r.conf
	conf.Scopes = scopes
	out := *r
	out.conf = &conf
	return &out
}

// authRequest is one authorization request with what the RP keeps of it.
type authRequest struct {
	url, state, nonce, verifier string
}

// request builds an authorization request (with a nonce and PKCE) carrying
// the extra parameters; a "scope" there replaces the configured scopes.
func (r *rp) request(state string, params map[string]string) authRequest {
	req := authRequest{state: state, nonce: "nonce-" + state, verifier: oauth2.GenerateVerifier()}
	opts := []oauth2.AuthCodeOption{oidc.Nonce(req.nonce), oauth2.S256ChallengeOption(req.verifier)}
	for k, v := range params {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	req.url = r.conf.AuthCodeURL(state, opts...)
	return req
}

// signIn runs the whole code flow for user in b (logging in and consenting
// as needed) and returns the raw, verified ID token.
func (r *rp) signIn(t *testing.T, b *browser, user string) (*oauth2.Token, *oidc.IDToken, string) {
	t.Helper()
	return signIn(t, r.e, b, r.provider, r.conf, user)
}

// redeem checks that loc is the successful answer to req (the callback with
// a code, the state and iss), exchanges the code and verifies the ID token
// with go-oidc, nonce included.
func (r *rp) redeem(t *testing.T, loc *url.URL, req authRequest) (*oauth2.Token, *oidc.IDToken) {
	t.Helper()
	q := loc.Query()
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != rpCallback || q.Get("code") == "" {
		t.Fatalf("want a code at %s, redirected to %s", rpCallback, loc)
	}
	if q.Get("state") != req.state {
		t.Errorf("state = %q, want %q", q.Get("state"), req.state)
	}
	wantIss(t, loc, r.e.issuer)
	tok, err := r.conf.Exchange(t.Context(), q.Get("code"), oauth2.VerifierOption(req.verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		t.Fatal("no id_token in the token response")
	}
	idt, err := r.provider.Verifier(&oidc.Config{ClientID: r.conf.ClientID}).Verify(t.Context(), raw)
	if err != nil {
		t.Fatalf("verify id_token: %v", err)
	}
	if idt.Nonce != req.nonce {
		t.Errorf("nonce = %q, want %q", idt.Nonce, req.nonce)
	}
	return tok, idt
}

// wantIss asserts the RFC 9207 iss parameter of an authorization response.
func wantIss(t *testing.T, loc *url.URL, issuer string) {
	t.Helper()
	if got := loc.Query()["iss"]; len(got) != 1 || got[0] != issuer {
		t.Errorf("iss = %q, want [%q] in %s (RFC 9207)", got, issuer, loc)
	}
}

// wantCode asserts that p redirects straight to the client with a code:
// no login page, no consent page.
func wantCode(t *testing.T, p *page) *url.URL {
	t.Helper()
	if p.status != http.StatusSeeOther {
		t.Fatalf("want a 303 with a code, got %d (login page %v, consent page %v)\n%s",
			p.status, isLoginPage(p), isConsentPage(p), p.body)
	}
	loc := p.location(t)
	if loc.Query().Get("code") == "" {
		t.Fatalf("want a code, redirected to %s", loc)
	}
	return loc
}

func wantLoginPage(t *testing.T, p *page, what string) {
	t.Helper()
	if !isLoginPage(p) || isConsentPage(p) || p.header.Get("Location") != "" {
		t.Fatalf("%s: want the login page, got %d (Location %q)\n%s", what, p.status, p.header.Get("Location"), p.body)
	}
}

// finish takes p, the answer to a login, through the consent page when it
// is shown and returns the redirect to the client; a login page on the way
// fails the test.
func finish(t *testing.T, b *browser, p *page) *url.URL {
	t.Helper()
	if isLoginPage(p) {
		t.Fatalf("the flow went back to the login page:\n%s", p.body)
	}
	if !isConsentPage(p) {
		return p.location(t)
	}
	res := b.submit(p, p.form(t), map[string]string{"action": "allow"})
	if isLoginPage(res) {
		t.Fatalf("Allow on the consent page went back to the login page:\n%s", res.body)
	}
	return res.location(t)
}

// authTime is the auth_time claim of an ID token.
func authTime(t *testing.T, idt *oidc.IDToken) time.Time {
	t.Helper()
	var c struct {
		AuthTime int64 `json:"auth_time"`
	}
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	if c.AuthTime == 0 {
		t.Fatal("the ID token has no auth_time")
	}
	return time.Unix(c.AuthTime, 0)
}

// ageSession moves the auth_time of user's one login session back by d.
func ageSession(t *testing.T, e *env, userID string, d time.Duration) {
	t.Helper()
	tag, err := e.pool.Exec(context.Background(),
		`UPDATE login_sessions SET auth_time = auth_time - make_interval(secs => $2) WHERE user_id = $1`,
		userID, d.Seconds())
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != 1 {
		t.Fatalf("age session: %d sessions updated, want 1", tag.RowsAffected())
	}
}

// sessions counts user's login sessions.
func sessions(t *testing.T, e *env, userID string) int {
	t.Helper()
	return e.count(t, `SELECT count(*) FROM login_sessions WHERE user_id = $1`, userID)
}

// Prompt, max_age, login_hint, id_token_hint.

// TestPromptNone: prompt=none never shows a page; what would need one is an
// error redirect (OpenID Connect Core 3.1.2.6) with state and iss.
func TestPromptNone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := newRP(t, e)
	none := map[string]string{"prompt": "none"}

	// signedIn is a browser signed in as a new user who has consented.
	signedIn := func(t *testing.T, name string) (*browser, *storage.User, *oidc.IDToken, string) {
		u := e.createUser(t, name)
		b := newBrowser(t)
		_, idt, raw := r.signIn(t, b, name)
		return b, u, idt, raw
	}

	t.Run("no session", func(t *testing.T) {
		t.Parallel()
		req := r.request("st-none-1", none)
		p := newBrowser(t).get(req.url)
		wantRedirectError(t, p, rpCallback, "login_required", req.state)
		wantIss(t, p.location(t), e.issuer)
	})

	t.Run("session without consent", func(t *testing.T) {
		t.Parallel()
		e.createUser(t, "nc")
		b := newBrowser(t)
		if p := b.login(b.get(r.request("st-first", nil).url), "nc", testPassword); !isConsentPage(p) {
			t.Fatalf("want the consent page, got %d\n%s", p.status, p.body)
		}
		req := r.request("st-none-2", none)
		p := b.get(req.url)
		wantRedirectError(t, p, rpCallback, "consent_required", req.state)
		wantIss(t, p.location(t), e.issuer)
	})

	t.Run("session and remembered consent", func(t *testing.T) {
		t.Parallel()
		b, u, first, _ := signedIn(t, "rc")
		req := r.request("st-none-3", none)
		_, idt := r.redeem(t, wantCode(t, b.get(req.url)), req)
		if idt.Subject != u.ID {
			t.Errorf("sub = %q, want %q", idt.Subject, u.ID)
		}
		// No new login: auth_time is still the session's.
		if got, want := authTime(t, idt), authTime(t, first); !got.Equal(want) {
			t.Errorf("auth_time = %v, want the session's %v", got, want)
		}
	})

	t.Run("id_token_hint of the signed-in user", func(t *testing.T) {
		t.Parallel()
		b, u, _, hint := signedIn(t, "hint-same")
		req := r.request("st-none-4", map[string]string{"prompt": "none", "id_token_hint": hint})
		if _, idt := r.redeem(t, wantCode(t, b.get(req.url)), req); idt.Subject != u.ID {
			t.Errorf("sub = %q, want %q", idt.Subject, u.ID)
		}
	})

	t.Run("id_token_hint of another user", func(t *testing.T) {
		t.Parallel()
		b, _, _, _ := signedIn(t, "hint-me")
		_, _, _, other := signedIn(t, "hint-other")
		req := r.request("st-none-5", map[string]string{"prompt": "none", "id_token_hint": other})
		p := b.get(req.url)
		wantRedirectError(t, p, rpCallback, "login_required", req.state)
		wantIss(t, p.location(t), e.issuer)
	})

	t.Run("garbage id_token_hint", func(t *testing.T) {
		t.Parallel()
		b, _, _, hint := signedIn(t, "hint-bad")
		head, _, _ := strings.Cut(hint, ".")
		parts := strings.Split(hint, ".")
		tampered := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
		for name, bad := range map[string]string{
			"not a JWT":          "garbage",
			"alg none":           "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0.",
			"tampered":           tampered,
			"header only":        head + "..",
			"unknown kid, RS256": "eyJhbGciOiJSUzI1NiIsImtpZCI6Im5vcGUifQ.eyJzdWIiOiJ4In0.c2ln",
		} {
			t.Run(name, func(t *testing.T) {
				req := r.request("st-none-6", map[string]string{"prompt": "none", "id_token_hint": bad})
				p := b.get(req.url)
				wantRedirectError(t, p, rpCallback, "invalid_request", req.state)
				wantIss(t, p.location(t), e.issuer)
			})
		}
	})

	t.Run("garbage id_token_hint, no session", func(t *testing.T) {
		t.Parallel()
		// Without a session there is no one to compare the hint with: the
		// answer is login_required, before the hint is looked at.
		req := r.request("st-none-7", map[string]string{"prompt": "none", "id_token_hint": "garbage"})
		p := newBrowser(t).get(req.url)
		wantRedirectError(t, p, rpCallback, "login_required", req.state)
		wantIss(t, p.location(t), e.issuer)
	})

	// Bad prompt values are invalid_request even for a signed-in user who
	// has consented (who would otherwise get a code at once).
	for _, prompt := range []string{"none login", "login none", "none consent", "none select_account", "bogus", "none bogus", "LOGIN"} {
		t.Run("prompt="+prompt, func(t *testing.T) {
			t.Parallel()
			b, _, _, _ := signedIn(t, "p-"+strings.ReplaceAll(prompt, " ", "-"))
			req := r.request("st-bad-prompt", map[string]string{"prompt": prompt})
			p := b.get(req.url)
			wantRedirectError(t, p, rpCallback, "invalid_request", req.state)
			wantIss(t, p.location(t), e.issuer)
		})
	}
}

// TestPromptLogin: prompt=login (and select_account) shows the login page
// to a signed-in user; the ID token that follows is from that new login,
// whoever logs in, and the flow does not come back to the login page.
func TestPromptLogin(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, prompt string
		other        bool // someone else logs in
	}{
		{"same user", "login", false},
		{"select_account", "select_account", false},
		{"other user", "login", true},
		{"login consent", "login consent", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			r := newRP(t, e)
			alice, bob := e.createUser(t, "alice"), e.createUser(t, "bob")
			b := newBrowser(t)
			r.signIn(t, b, "alice")

			req := r.request("st-login", map[string]string{"prompt": tc.prompt})
			p := b.get(req.url)
			wantLoginPage(t, p, "prompt="+tc.prompt+" with a live session")
			who, want := "alice", alice
			if tc.other {
				who, want = "bob", bob
			}
			before := time.Now().Truncate(time.Second)
			res := b.login(p, who, testPassword)
			// alice has consented; bob has not and must be asked; "consent"
			// asks again.
			if wantConsent := tc.other || strings.Contains(tc.prompt, "consent"); isConsentPage(res) != wantConsent {
				t.Fatalf("after the login: consent page %v, want %v (status %d)\n%s", isConsentPage(res), wantConsent, res.status, res.body)
			}
			_, idt := r.redeem(t, finish(t, b, res), req)
			if idt.Subject != want.ID {
				t.Errorf("sub = %q, want %s's %q", idt.Subject, who, want.ID)
			}
			if at := authTime(t, idt); at.Before(before) || at.After(time.Now()) {
				t.Errorf("auth_time %v is not that of the login at %v", at, before)
			}
			// The browser is now signed in as who: no login page without prompt.
			next := r.request("st-after", nil)
			if _, idt := r.redeem(t, wantCode(t, b.get(next.url)), next); idt.Subject != want.ID {
				t.Errorf("next sign-in: sub = %q, want %q", idt.Subject, want.ID)
			}
		})
	}
}

// TestReauthenticationCannotBeSkipped: when prompt=login or max_age asks
// for a new login, no form of ours posted back with action=allow counts as
// one: neither the login page itself nor the consent page of the same
// request made without that requirement (prompt=consent instead), with the
// requirement put back into its hidden fields.
func TestReauthenticationCannotBeSkipped(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		params map[string]string // what the client asks for
		age    time.Duration     // how old the session is
		// borrowed: the form comes from the consent page of the request
		// with these parameters instead, and is posted with params.
		borrowed map[string]string
	}{
		{name: "prompt=login, login page", params: map[string]string{"prompt": "login"}},
		{name: "max_age=60, login page", params: map[string]string{"max_age": "60"}, age: 2 * time.Minute},
		{name: "prompt=login, consent page of prompt=consent",
			params: map[string]string{"prompt": "login"}, age: time.Minute, borrowed: map[string]string{"prompt": "consent"}},
		{name: "max_age=60, consent page of prompt=consent",
			params: map[string]string{"max_age": "60"}, age: 2 * time.Minute, borrowed: map[string]string{"prompt": "consent"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			r := newRP(t, e)
			alice := e.createUser(t, "alice")
			b := newBrowser(t)
			r.signIn(t, b, "alice")
			if tc.age > 0 {
				ageSession(t, e, alice.ID, tc.age)
			}
			req := r.request("st-skip", tc.params)
			p := b.get(req.url)
			wantLoginPage(t, p, tc.name)

			set := map[string]string{"action": "allow"}
			if tc.borrowed != nil {
				// The same request (state, nonce, PKCE challenge) without
				// the requirement shows the consent page at once.
				u, _ := url.Parse(req.url)
				q := u.Query()
				for k := range tc.params {
					q.Del(k)
				}
				for k, v := range tc.borrowed {
					q.Set(k, v)
				}
				u.RawQuery = q.Encode()
				if p = b.get(u.String()); !isConsentPage(p) {
					t.Fatalf("want the consent page of %v, got %d\n%s", tc.borrowed, p.status, p.body)
				}
				for k := range tc.borrowed {
					set[k] = ""
				}
				maps.Copy(set, tc.params)
			}
			res := b.submit(p, p.form(t), set)
			if res.status == http.StatusSeeOther {
				if loc := res.location(t); loc.Query().Get("code") != "" {
					_, idt := r.redeem(t, loc, req)
					t.Fatalf("the new login was skipped: a code for %v, ID token auth_time %v (%v ago)",
						tc.params, authTime(t, idt), time.Since(authTime(t, idt)).Round(time.Second))
				}
			}
			wantLoginPage(t, res, "Allow posted instead of a login")
		})
	}
}

// TestPromptConsent: prompt=consent asks again although the consent is
// remembered; Allow then gives the code.
func TestPromptConsent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := newRP(t, e)
	alice := e.createUser(t, "alice")
	b := newBrowser(t)
	r.signIn(t, b, "alice")

	req := r.request("st-consent", map[string]string{"prompt": "consent"})
	p := b.get(req.url)
	if !isConsentPage(p) {
		t.Fatalf("prompt=consent with a remembered consent: want the consent page, got %d\n%s", p.status, p.body)
	}
	if _, idt := r.redeem(t, b.consent(p, "allow"), req); idt.Subject != alice.ID {
		t.Errorf("sub = %q, want %q", idt.Subject, alice.ID)
	}
	// Denying this time is access_denied, with iss.
	req = r.request("st-consent-deny", map[string]string{"prompt": "consent"})
	loc := b.consent(b.get(req.url), "deny")
	wantErrorLocation(t, loc, rpCallback, "access_denied", req.state)
	wantIss(t, loc, e.issuer)
}

// TestMaxAge: a session older than max_age means a new login; a younger
// one does not. The ID token after a new login verifies and its auth_time
// is that login's.
func TestMaxAge(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		maxAge      string
		prompt      string
		age         time.Duration
		login       bool // the login page is shown
		moreScopes  bool // the request asks for scopes not consented yet
		wantErrCode string
	}{
		{name: "older than max_age", maxAge: "60", age: 2 * time.Minute, login: true},
		{name: "older than max_age, consent after the login", maxAge: "60", age: 2 * time.Minute, login: true, moreScopes: true},
		{name: "younger than max_age", maxAge: "3600", age: 2 * time.Minute},
		{name: "younger than max_age, consent", maxAge: "3600", age: 2 * time.Minute, moreScopes: true},
		{name: "max_age=0", maxAge: "0", login: true},
		{name: "older than max_age, prompt=none", maxAge: "60", prompt: "none", age: 2 * time.Minute, wantErrCode: "login_required"},
		{name: "negative max_age", maxAge: "-1", wantErrCode: "invalid_request"},
		{name: "max_age not a number", maxAge: "1m", wantErrCode: "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			r := newRP(t, e)
			alice := e.createUser(t, "alice")
			b := newBrowser(t)
			first := r
			if tc.moreScopes {
				first = r.withScopes("openid")
			}
			_, firstIDT, _ := first.signIn(t, b, "alice")
			if tc.age > 0 {
				ageSession(t, e, alice.ID, tc.age)
			}

			params := map[string]string{"max_age": tc.maxAge}
			if tc.prompt != "" {
				params["prompt"] = tc.prompt
			}
			req := r.request("st-max-age", params)
			p := b.get(req.url)
			if tc.wantErrCode != "" {
				wantRedirectError(t, p, rpCallback, tc.wantErrCode, req.state)
				wantIss(t, p.location(t), e.issuer)
				return
			}
			before := time.Now().Truncate(time.Second)
			if tc.login {
				wantLoginPage(t, p, "max_age="+tc.maxAge)
				if u := p.form(t).values.Get("username"); u != "alice" {
					t.Errorf("re-login page username = %q, want the signed-in alice", u)
				}
				p = b.login(p, "alice", testPassword)
			} else if isLoginPage(p) {
				t.Fatalf("max_age=%s, session %v old: the login page was shown", tc.maxAge, tc.age)
			}
			if isConsentPage(p) != tc.moreScopes {
				t.Fatalf("consent page %v, want %v (status %d)\n%s", isConsentPage(p), tc.moreScopes, p.status, p.body)
			}
			_, idt := r.redeem(t, finish(t, b, p), req)
			at := authTime(t, idt)
			if tc.login {
				if at.Before(before) || at.After(time.Now()) {
					t.Errorf("auth_time %v is not that of the new login at %v", at, before)
				}
			} else if want := authTime(t, firstIDT).Add(-tc.age); !at.Equal(want) {
				t.Errorf("auth_time %v, want the session's %v", at, want)
			}
		})
	}
}

// TestLoginHint: login_hint prefills the username, escaped, and the login
// still works.
func TestLoginHint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := newRP(t, e)
	bob := e.createUser(t, "bob")
	for _, hint := range []string{"bob", `bob"><script>alert(1)</script>`, ""} {
		t.Run(fmt.Sprintf("%q", hint), func(t *testing.T) {
			t.Parallel()
			b := newBrowser(t)
			params := map[string]string{}
			if hint != "" {
				params["login_hint"] = hint
			}
			req := r.request("st-hint", params)
			p := b.get(req.url)
			wantLoginPage(t, p, "login_hint")
			f := p.form(t)
			if got := f.values["username"]; len(got) != 1 || got[0] != hint {
				t.Fatalf("username input = %q, want [%q]", got, hint)
			}
			if strings.Contains(p.body, "<script>") {
				t.Fatalf("login_hint is not escaped:\n%s", p.body)
			}
			if hint != "bob" {
				return
			}
			// Submitted as prefilled.
			res := b.submit(p, f, map[string]string{"password": testPassword, "action": "login"})
			if _, idt := r.redeem(t, finish(t, b, res), req); idt.Subject != bob.ID {
				t.Errorf("sub = %q, want %q", idt.Subject, bob.ID)
			}
		})
	}
}

// Userinfo.

// userinfoCall is one request to /userinfo.
func userinfoCall(t *testing.T, e *env, method, token string, inBody bool) reply {
	t.Helper()
	body, ct := "", ""
	if inBody {
		body, ct = url.Values{"access_token": {token}}.Encode(), "application/x-www-form-urlencoded"
	}
	req := newRequest(t, method, e.url("/userinfo"), ct, body)
	if token != "" && !inBody {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return send(t, req)
}

func TestUserinfo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := newRP(t, e)
	rs := e.resourceServer(t)
	alice := &storage.User{Username: "alice", Name: "Alice Liddell", Email: "alice@example.com", EmailVerified: true}
	if err := e.store.CreateUser(t.Context(), alice, testPassword); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t)
	full, _, _ := r.signIn(t, b, "alice")
	openidOnly, _, _ := r.withScopes("openid").signIn(t, b, "alice")
	profile, _, _ := r.withScopes("openid", "profile").signIn(t, b, "alice")
	email, _, _ := r.withScopes("openid", "email").signIn(t, b, "alice")

	// Tokens without openid: client credentials, and a code flow of a
	// client that asks for an API scope only.
	cc := e.token(t, url.Values{"grant_type": {"client_credentials"}}, rs.ClientID, rs.ClientSecret)
	if cc.status != http.StatusOK || cc.AccessToken == "" {
		t.Fatalf("client credentials: %d %+v", cc.status, cc)
	}
	api := e.confidential(t, "client_secret_basic")
	code := newCode(t, e, b, codeParams(api, "contacts"), "alice")
	noOpenID := tokens(t, e.tokenAs(t, api, exchangeForm(code, appCallback)))

	sub := alice.ID
	claims := []struct {
		name  string
		token string
		want  map[string]any
	}{
		{"profile and email", full.AccessToken, map[string]any{
			"sub": sub, "preferred_username": "alice", "name": "Alice Liddell",
			"email": "alice@example.com", "email_verified": true}},
		{"openid only", openidOnly.AccessToken, map[string]any{"sub": sub}},
		{"profile", profile.AccessToken, map[string]any{"sub": sub, "preferred_username": "alice", "name": "Alice Liddell"}},
		{"email", email.AccessToken, map[string]any{"sub": sub, "email": "alice@example.com", "email_verified": true}},
	}
	for _, tc := range claims {
		for _, how := range []struct {
			method string
			inBody bool
		}{{http.MethodGet, false}, {http.MethodPost, false}, {http.MethodPost, true}} {
			name := fmt.Sprintf("%s/%s", tc.name, how.method)
			if how.inBody {
				name += " form body" // RFC 6750 2.2
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				res := userinfoCall(t, e, how.method, tc.token, how.inBody)
				if res.status != http.StatusOK {
					t.Fatalf("want 200\n%s", res)
				}
				if ct := res.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("Content-Type = %q", ct)
				}
				if cc := res.header.Get("Cache-Control"); cc != "no-store" {
					t.Errorf("Cache-Control = %q, want no-store", cc)
				}
				var got map[string]any
				if err := json.Unmarshal(res.body, &got); err != nil {
					t.Fatalf("%v\n%s", err, res)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("claims = %v, want %v", got, tc.want)
				}
			})
		}
	}

	// RFC 6750 3.1: no token is a bare challenge; a bad one invalid_token;
	// one without openid insufficient_scope. A refresh token is no access
	// token.
	errs := []struct {
		name   string
		token  string
		inBody bool
		status int
		code   string // "" means a challenge without an error code
	}{
		{"no token", "", false, http.StatusUnauthorized, ""},
		{"bogus token", "bogus", false, http.StatusUnauthorized, "invalid_token"},
		{"bogus token in the body", "bogus", true, http.StatusUnauthorized, "invalid_token"},
		{"refresh token", full.RefreshToken, false, http.StatusUnauthorized, "invalid_token"},
		{"client credentials token", cc.AccessToken, false, http.StatusForbidden, "insufficient_scope"},
		{"code flow without openid", noOpenID.AccessToken, false, http.StatusForbidden, "insufficient_scope"},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			method := http.MethodGet
			if tc.inBody {
				method = http.MethodPost
			}
			wantBearerError(t, userinfoCall(t, e, method, tc.token, tc.inBody), tc.status, tc.code)
		})
	}

	t.Run("non-bearer authorization", func(t *testing.T) {
		t.Parallel()
		req := newRequest(t, http.MethodGet, e.url("/userinfo"), "", "")
		req.SetBasicAuth(rs.ClientID, rs.ClientSecret)
		wantBearerError(t, send(t, req), http.StatusUnauthorized, "")
	})

	t.Run("expired token", func(t *testing.T) {
		t.Parallel()
		tok, _, _ := r.signIn(t, newBrowser(t), "alice")
		expire(t, e, "access_tokens", "access_token", tok.AccessToken)
		wantBearerError(t, userinfoCall(t, e, http.MethodGet, tok.AccessToken, false), http.StatusUnauthorized, "invalid_token")
	})

	// A user's changes show at once; a disabled user's token is refused,
	// whether its tokens were revoked (UpdateUser) or only the flag is set.
	t.Run("user changes", func(t *testing.T) {
		t.Parallel()
		carol := e.createUser(t, "carol")
		tok, _, _ := r.signIn(t, newBrowser(t), "carol")
		name := "Carol C."
		if _, err := e.store.UpdateUser(t.Context(), carol.ID, storage.UserUpdate{Name: &name}); err != nil {
			t.Fatal(err)
		}
		res := userinfoCall(t, e, http.MethodGet, tok.AccessToken, false)
		var got map[string]any
		if err := json.Unmarshal(res.body, &got); err != nil || res.status != http.StatusOK || got["name"] != name {
			t.Fatalf("after a name change want name %q\n%s", name, res)
		}
		disabled := true
		if _, err := e.store.UpdateUser(t.Context(), carol.ID, storage.UserUpdate{Disabled: &disabled}); err != nil {
			t.Fatal(err)
		}
		wantBearerError(t, userinfoCall(t, e, http.MethodGet, tok.AccessToken, false), http.StatusUnauthorized, "invalid_token")
	})
	t.Run("disabled flag only", func(t *testing.T) {
		t.Parallel()
		dave := e.createUser(t, "dave")
		tok, _, _ := r.signIn(t, newBrowser(t), "dave")
		if _, err := e.pool.Exec(t.Context(), `UPDATE users SET disabled = true WHERE id = $1`, dave.ID); err != nil {
			t.Fatal(err)
		}
		wantBearerError(t, userinfoCall(t, e, http.MethodGet, tok.AccessToken, false), http.StatusUnauthorized, "invalid_token")
	})
}

// wantBearerError asserts an RFC 6750 3 answer: the status, a Bearer
// challenge with a realm, and the error code in it (none without a token).
func wantBearerError(t *testing.T, r reply, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d\n%s", r.status, status, r)
	}
	ch := r.header.Get("WWW-Authenticate")
	if !strings.HasPrefix(ch, `Bearer realm="`) {
		t.Fatalf("WWW-Authenticate = %q, want a Bearer challenge with a realm\n%s", ch, r)
	}
	if code == "" {
		if strings.Contains(ch, "error") || len(r.body) != 0 {
			t.Fatalf("a request without a token got an error code (RFC 6750 3.1)\n%s", r)
		}
		return
	}
	if !strings.Contains(ch, `error="`+code+`"`) {
		t.Errorf("WWW-Authenticate = %q, want error=%q", ch, code)
	}
	var body struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil || body.Error != code {
		t.Errorf("body error = %q (%v), want %q\n%s", body.Error, err, code, r)
	}
}

// Logout.

func logoutURL(e *env, params map[string]string) string {
	q := url.Values{}
	for k, v := range params {
		q.Set(k, v)
	}
	return e.url("/oauth2/logout") + "?" + q.Encode()
}

// wantSignedOutAt asserts a 303 to exactly the registered
// post_logout_redirect_uri with state as its only parameter.
func wantSignedOutAt(t *testing.T, p *page, state string) {
	t.Helper()
	if p.status != http.StatusSeeOther {
		t.Fatalf("want a 303 to %s, got %d\n%s", rpSignedOut, p.status, p.body)
	}
	loc := p.location(t)
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != rpSignedOut || loc.Fragment != "" {
		t.Fatalf("redirected to %s, want %s", loc, rpSignedOut)
	}
	if want := (url.Values{"state": {state}}); !reflect.DeepEqual(loc.Query(), want) {
		t.Fatalf("query %v, want %v", loc.Query(), want)
	}
}

// wantConfirmation asserts the "sign out?" page: a form that posts to the
// logout endpoint with a CSRF token and a logout and a cancel button.
func wantConfirmation(t *testing.T, p *page) form {
	t.Helper()
	if p.status != http.StatusOK || p.header.Get("Location") != "" {
		t.Fatalf("want the confirmation page, got %d (Location %q)\n%s", p.status, p.header.Get("Location"), p.body)
	}
	f := p.form(t)
	if f.action != "/oauth2/logout" || f.values.Get("csrf_token") == "" ||
		!strings.Contains(p.body, `name="action" value="logout"`) || !strings.Contains(p.body, `name="action" value="cancel"`) {
		t.Fatalf("want a form posting action=logout or cancel to /oauth2/logout with a CSRF token, got action %q %v\n%s", f.action, f.values, p.body)
	}
	return f
}

// followOnServer follows redirects that stay on e's server, as a browser
// would, and returns the first answer that does not.
func followOnServer(t *testing.T, e *env, b *browser, p *page) *page {
	t.Helper()
	for range 5 {
		if p.status != http.StatusSeeOther && p.status != http.StatusFound {
			return p
		}
		loc := p.location(t)
		if loc.Scheme+"://"+loc.Host != e.issuer {
			return p
		}
		p = b.get(loc.String())
	}
	t.Fatal("too many redirects")
	return nil
}

func TestLogout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := newRP(t, e)
	other := e.createClient(t, authz.ClientMetadata{
		ClientName: "Other RP", RedirectURIs: []string{"https://other.example.com/callback"},
		PostLogoutRedirectURIs: []string{"https://other.example.com/bye"}, Scope: "openid",
	})
	state := "logout " + oddState

	// signedIn is a browser signed in as a new user, with its ID token.
	signedIn := func(t *testing.T, name string) (*browser, *storage.User, string) {
		u := e.createUser(t, name)
		b := newBrowser(t)
		_, _, raw := r.signIn(t, b, name)
		if n := sessions(t, e, u.ID); n != 1 {
			t.Fatalf("%d sessions after signing in, want 1", n)
		}
		return b, u, raw
	}
	// wantSignedOut: the user's session is gone and the browser is asked
	// to log in again.
	wantSignedOut := func(t *testing.T, b *browser, u *storage.User) {
		t.Helper()
		if n := sessions(t, e, u.ID); n != 0 {
			t.Fatalf("%d login sessions left after logout", n)
		}
		wantLoginPage(t, b.get(r.request("st-after-logout", nil).url), "authorize after logout")
	}
	wantStillSignedIn := func(t *testing.T, b *browser, u *storage.User) {
		t.Helper()
		if n := sessions(t, e, u.ID); n != 1 {
			t.Fatalf("%d login sessions, want the one still there", n)
		}
		wantCode(t, b.get(r.request("st-still", nil).url))
	}

	t.Run("id_token_hint of the signed-in user", func(t *testing.T) {
		t.Parallel()
		b, u, hint := signedIn(t, "rp-get")
		p := b.get(logoutURL(e, map[string]string{"id_token_hint": hint, "post_logout_redirect_uri": rpSignedOut, "state": state}))
		wantSignedOutAt(t, p, state)
		if c := findCookie(p.header, "authz_session"); c == nil || c.MaxAge >= 0 {
			t.Errorf("the session cookie is not cleared: %v", p.header["Set-Cookie"])
		}
		wantSignedOut(t, b, u)
	})

	// RP-Initiated Logout 1.0 §2: the OP must support GET and POST. An RP
	// posts a form of its own: no CSRF token of ours, and from a browser a
	// cross-site POST that carries no SameSite=Lax cookie.
	t.Run("POST id_token_hint of the signed-in user", func(t *testing.T) {
		t.Parallel()
		b, u, hint := signedIn(t, "rp-post")
		p := b.post(e.url("/oauth2/logout"), url.Values{"id_token_hint": {hint}, "post_logout_redirect_uri": {rpSignedOut}, "state": {state}})
		wantSignedOutAt(t, followOnServer(t, e, b, p), state)
		wantSignedOut(t, b, u)
	})
	t.Run("cross-site form POST from the RP", func(t *testing.T) {
		t.Parallel()
		b, u, hint := signedIn(t, "rp-xpost")
		body := url.Values{"id_token_hint": {hint}, "post_logout_redirect_uri": {rpSignedOut}, "state": {state}}.Encode()
		req := newRequest(t, http.MethodPost, e.url("/oauth2/logout"), "application/x-www-form-urlencoded", body)
		req.Header.Set("Origin", "https://rp.example.com")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		// No cookies go with it (SameSite=Lax); those it sets are kept.
		res := send(t, req)
		b.c.Jar.SetCookies(req.URL, cookiesOf(res.header))
		p := followOnServer(t, e, b, &page{status: res.status, header: res.header, body: string(res.body), url: req.URL})
		// Where the server cannot see the session it may ask first.
		if p.status == http.StatusOK {
			p = followOnServer(t, e, b, b.submit(p, wantConfirmation(t, p), map[string]string{"action": "logout"}))
		}
		wantSignedOutAt(t, p, state)
		wantSignedOut(t, b, u)
	})

	t.Run("post_logout_redirect_uri not registered", func(t *testing.T) {
		t.Parallel()
		b, u, hint := signedIn(t, "rp-unreg")
		for _, uri := range []string{
			"https://rp.example.com/other",
			rpSignedOut + "/",
			rpSignedOut + "?x=1",
			rpSignedOut + "#x",
			"https://RP.example.com/signed-out",
			"http://rp.example.com/signed-out",
			"https://rp.example.com:8443/signed-out",
			"https://evil.example/signed-out",
			rpCallback,                      // a redirect_uri, not a post-logout one
			"https://other.example.com/bye", // another client's
		} {
			p := b.get(logoutURL(e, map[string]string{"id_token_hint": hint, "post_logout_redirect_uri": uri, "state": state}))
			wantErrorPage(t, p, http.StatusBadRequest, "invalid_request", "evil.example")
		}
		wantStillSignedIn(t, b, u)
	})

	t.Run("bad requests", func(t *testing.T) {
		t.Parallel()
		b, u, hint := signedIn(t, "rp-bad")
		for name, params := range map[string]map[string]string{
			"uri without client_id or hint":   {"post_logout_redirect_uri": rpSignedOut, "state": state},
			"hint and another client_id":      {"id_token_hint": hint, "client_id": other.ClientID, "post_logout_redirect_uri": "https://other.example.com/bye"},
			"hint and another client_id only": {"id_token_hint": hint, "client_id": other.ClientID},
			"unknown client_id":               {"client_id": "no-such-client", "post_logout_redirect_uri": rpSignedOut},
			"garbage hint":                    {"id_token_hint": "garbage", "post_logout_redirect_uri": rpSignedOut},
		} {
			p := b.get(logoutURL(e, params))
			if p.status != http.StatusBadRequest {
				t.Errorf("%s: status %d, want 400", name, p.status)
			}
			wantErrorPage(t, p, http.StatusBadRequest, "invalid_request")
		}
		wantStillSignedIn(t, b, u)
	})

	t.Run("no hint: confirmation, then logout", func(t *testing.T) {
		t.Parallel()
		b, u, _ := signedIn(t, "rp-confirm")
		p := b.get(e.url("/oauth2/logout"))
		f := wantConfirmation(t, p)
		if n := sessions(t, e, u.ID); n != 1 {
			t.Fatalf("the confirmation page ended the session (%d left)", n)
		}
		res := b.submit(p, f, map[string]string{"action": "logout"})
		if res.status != http.StatusOK || !strings.Contains(res.body, "signed out") || res.header.Get("Location") != "" {
			t.Fatalf("want the signed-out page, got %d\n%s", res.status, res.body)
		}
		wantSignedOut(t, b, u)
	})

	t.Run("client_id and uri, no hint: confirmation, then redirect", func(t *testing.T) {
		t.Parallel()
		b, u, _ := signedIn(t, "rp-confirm-uri")
		p := b.get(logoutURL(e, map[string]string{"client_id": r.client.ClientID, "post_logout_redirect_uri": rpSignedOut, "state": state}))
		f := wantConfirmation(t, p)
		if !strings.Contains(p.body, "Go RP") {
			t.Errorf("the confirmation page does not name the client\n%s", p.body)
		}
		if csp := p.header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' https://rp.example.com;") {
			t.Errorf("CSP %q does not let the form's redirect reach the RP", csp)
		}
		wantSignedOutAt(t, b.submit(p, f, map[string]string{"action": "logout"}), state)
		wantSignedOut(t, b, u)
	})

	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		b, u, _ := signedIn(t, "rp-cancel")
		p := b.get(logoutURL(e, map[string]string{"client_id": r.client.ClientID, "post_logout_redirect_uri": rpSignedOut, "state": state}))
		res := b.submit(p, wantConfirmation(t, p), map[string]string{"action": "cancel"})
		if res.status != http.StatusOK || res.header.Get("Location") != "" {
			t.Fatalf("cancel: want 200 and no redirect, got %d (Location %q)\n%s", res.status, res.header.Get("Location"), res.body)
		}
		if c := findCookie(res.header, "authz_session"); c != nil {
			t.Errorf("cancel touched the session cookie: %v", c)
		}
		wantStillSignedIn(t, b, u)
	})

	t.Run("CSRF", func(t *testing.T) {
		t.Parallel()
		b, u, _ := signedIn(t, "rp-csrf")
		p := b.get(e.url("/oauth2/logout"))
		f := wantConfirmation(t, p)
		vals := url.Values{}
		maps.Copy(vals, f.values)
		vals.Del("csrf_token")
		vals.Set("action", "logout")
		wantErrorPage(t, b.post(e.url("/oauth2/logout"), vals), http.StatusForbidden, "invalid_request")
		wantStillSignedIn(t, b, u)

		// The right token, posted cross-site.
		vals.Set("csrf_token", f.values.Get("csrf_token"))
		req := newRequest(t, http.MethodPost, e.url("/oauth2/logout"), "application/x-www-form-urlencoded", vals.Encode())
		req.Header.Set("Origin", "https://evil.example")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		for _, c := range b.c.Jar.Cookies(req.URL) {
			req.AddCookie(c)
		}
		if res := send(t, req); res.status != http.StatusForbidden {
			t.Fatalf("a cross-site logout post: want 403\n%s", res)
		}
		wantStillSignedIn(t, b, u)
	})

	t.Run("hint of another user", func(t *testing.T) {
		t.Parallel()
		b, u, _ := signedIn(t, "rp-me")
		_, _, hint := signedIn(t, "rp-someone")
		p := b.get(logoutURL(e, map[string]string{"id_token_hint": hint, "post_logout_redirect_uri": rpSignedOut, "state": state}))
		f := wantConfirmation(t, p)
		if n := sessions(t, e, u.ID); n != 1 {
			t.Fatalf("another user's hint ended the session at once (%d left)", n)
		}
		wantSignedOutAt(t, b.submit(p, f, map[string]string{"action": "logout"}), state)
		wantSignedOut(t, b, u)
	})

	t.Run("not signed in", func(t *testing.T) {
		t.Parallel()
		_, _, hint := signedIn(t, "rp-elsewhere")
		b := newBrowser(t)
		wantSignedOutAt(t, b.get(logoutURL(e, map[string]string{"id_token_hint": hint, "post_logout_redirect_uri": rpSignedOut, "state": state})), state)
		// Without a state the URI is exactly the registered one.
		p := b.get(logoutURL(e, map[string]string{"id_token_hint": hint, "post_logout_redirect_uri": rpSignedOut}))
		if p.status != http.StatusSeeOther || p.header.Get("Location") != rpSignedOut {
			t.Fatalf("want a 303 to exactly %s, got %d %q", rpSignedOut, p.status, p.header.Get("Location"))
		}
		// Nothing at all: the signed-out page.
		if p := b.get(e.url("/oauth2/logout")); p.status != http.StatusOK || !strings.Contains(p.body, "signed out") {
			t.Fatalf("want the signed-out page, got %d\n%s", p.status, p.body)
		}
	})
}

// RFC 9207 and CORS.

// TestAuthorizationResponseIss: iss is on every redirect to the client,
// success or error, and nowhere else.
func TestAuthorizationResponseIss(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := newRP(t, e)
	api := e.confidential(t, "client_secret_basic")
	e.createUser(t, "alice")
	e.createUser(t, "bob")

	t.Run("success", func(t *testing.T) {
		t.Parallel()
		b := newBrowser(t)
		req := r.request("st-iss", nil)
		r.redeem(t, finish(t, b, b.login(b.get(req.url), "alice", testPassword)), req) // asserts iss
		// A plain OAuth 2.0 request too, with a state.
		loc := authorizeCode(t, e, b, api.ClientID, codeParams(api, "contacts"), "alice")
		if loc.Query().Get("code") == "" {
			t.Fatalf("no code in %s", loc)
		}
		wantIss(t, loc, e.issuer)
	})
	t.Run("access_denied", func(t *testing.T) {
		t.Parallel()
		b := newBrowser(t)
		req := r.request("st-deny", nil)
		loc := b.consent(b.login(b.get(req.url), "bob", testPassword), "deny")
		wantErrorLocation(t, loc, rpCallback, "access_denied", req.state)
		wantIss(t, loc, e.issuer)
	})
	t.Run("invalid_scope", func(t *testing.T) {
		t.Parallel()
		req := r.request("st-scope", map[string]string{"scope": "openid admin"})
		p := newBrowser(t).get(req.url)
		wantRedirectError(t, p, rpCallback, "invalid_scope", req.state)
		wantIss(t, p.location(t), e.issuer)
	})
	t.Run("our error page", func(t *testing.T) {
		t.Parallel()
		for code, params := range map[string]map[string]string{
			"invalid_client":  {"response_type": "code", "client_id": "no-such-client", "redirect_uri": rpCallback, "state": "s"},
			"invalid_request": {"response_type": "code", "client_id": r.client.ClientID, "redirect_uri": "https://evil.example/cb", "scope": "openid", "state": "s"},
		} {
			p := newBrowser(t).get(authorizeURL(e.issuer, params))
			wantErrorPage(t, p, http.StatusBadRequest, code)
			if strings.Contains(p.body, "iss=") || strings.Contains(p.body, url.QueryEscape(e.issuer)) {
				t.Errorf("the error page carries iss:\n%s", p.body)
			}
		}
	})
}

// TestCORS: the endpoints a browser app calls directly answer preflights
// and allow any origin; the browser-facing pages and introspection do not.
func TestCORS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const origin = "https://spa.example"
	cases := []struct {
		method, path string
		status       int
		acao         string
	}{
		{http.MethodOptions, "/oauth2/token", http.StatusNoContent, "*"},
		{http.MethodOptions, "/.well-known/openid-configuration", http.StatusNoContent, "*"},
		{http.MethodOptions, "/userinfo", http.StatusNoContent, "*"},
		{http.MethodGet, "/.well-known/openid-configuration", http.StatusOK, "*"},
		{http.MethodGet, "/.well-known/jwks.json", http.StatusOK, "*"},
		{http.MethodPost, "/oauth2/token", http.StatusBadRequest, "*"},
		{http.MethodGet, "/oauth2/authorize", http.StatusBadRequest, ""},
		{http.MethodOptions, "/oauth2/authorize", http.StatusMethodNotAllowed, ""},
		{http.MethodPost, "/oauth2/introspect", http.StatusUnauthorized, ""},
		{http.MethodOptions, "/oauth2/introspect", http.StatusMethodNotAllowed, ""},
		{http.MethodGet, "/oauth2/logout", http.StatusOK, ""},
	}
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			ct := ""
			if tc.method == http.MethodPost {
				ct = "application/x-www-form-urlencoded"
			}
			req := newRequest(t, tc.method, e.url(tc.path), ct, "")
			req.Header.Set("Origin", origin)
			if tc.method == http.MethodOptions {
				req.Header.Set("Access-Control-Request-Method", http.MethodPost)
				req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
			}
			res := send(t, req)
			if res.status != tc.status {
				t.Fatalf("status %d, want %d\n%s", res.status, tc.status, res)
			}
			if got := res.header.Values("Access-Control-Allow-Origin"); (tc.acao == "" && len(got) != 0) || (tc.acao != "" && (len(got) != 1 || got[0] != tc.acao)) {
				t.Fatalf("Access-Control-Allow-Origin = %q, want %q\n%s", got, tc.acao, res)
			}
			if res.header.Get("Access-Control-Allow-Credentials") != "" {
				t.Errorf("Access-Control-Allow-Credentials = %q", res.header.Get("Access-Control-Allow-Credentials"))
			}
			if tc.method == http.MethodOptions && tc.acao != "" {
				methods, headers := res.header.Get("Access-Control-Allow-Methods"), strings.ToLower(res.header.Get("Access-Control-Allow-Headers"))
				if !strings.Contains(methods, "POST") || !strings.Contains(headers, "authorization") || !strings.Contains(headers, "content-type") {
					t.Errorf("preflight allows methods %q headers %q", methods, headers)
				}
			}
		})
	}
}
