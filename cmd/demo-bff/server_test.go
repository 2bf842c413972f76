package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The whole flow across the three servers: "Get contacts" while signed
// out → authorize → login → consent → callback → contacts.
func TestSignInAndGetContacts(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	b := newBrowser(t)

	home := b.get(r.url + "/")
	if _, ok := home.text(t, "sign-in"); !ok || home.status != http.StatusOK {
		t.Fatalf("home page: want Sign in, got %d:\n%s", home.status, home.body)
	}
	if _, ok := home.text(t, "who"); ok {
		t.Fatalf("signed out, yet the page names someone:\n%s", home.body)
	}
	if text, _ := home.text(t, "get-contacts"); text != "Get contacts" {
		t.Fatalf("get-contacts button says %q", text)
	}

	// "Get contacts" while signed out starts the sign-in.
	start := b.submit(home, "get-contacts", nil)
	loc := start.location(t)
	q := loc.Query()
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != r.authz.URL+"/oauth2/authorize" {
		t.Fatalf("sent to %s", loc)
	}
	for k, want := range map[string]string{
		"response_type": "code", "client_id": "demo-bff", "redirect_uri": r.url + "/callback",
		"scope": DefaultScope, "code_challenge_method": "S256",
	} {
		if q.Get(k) != want {
			t.Errorf("authorize %s = %q, want %q", k, q.Get(k), want)
		}
	}
	if len(q.Get("state")) < 20 || len(q.Get("nonce")) < 20 || len(q.Get("code_challenge")) != 43 {
		t.Errorf("state, nonce or PKCE challenge missing or short: %s", loc)
	}
	if c := start.cookies()[loginCookie]; c == nil || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
		t.Errorf("pre-login cookie %+v, want HttpOnly, SameSite=Lax, Path=/", c)
	}

	p, trail := r.through(b, start, "allow")
	var sawLogin, sawConsent bool
	var callback, landing *page
	for i, step := range trail {
		sawLogin = sawLogin || step.isLogin()
		sawConsent = sawConsent || step.isConsent()
		if step.url.Path == "/callback" && strings.HasPrefix(step.url.String(), r.url) {
			callback, landing = step, trail[i+1]
		}
	}
	if !sawLogin || !sawConsent || callback == nil {
		t.Fatalf("want login, consent and the callback on the way (login %v, consent %v, callback %v)", sawLogin, sawConsent, callback != nil)
	}
	if cq := callback.url.Query(); cq.Get("state") != q.Get("state") || cq.Get("iss") != r.authz.URL || cq.Get("code") == "" {
		t.Errorf("callback %s", callback.url)
	}
	set := callback.cookies()
	if c := set[sessionCookie]; c == nil || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || len(c.Value) < 20 {
		t.Errorf("session cookie %+v, want a random HttpOnly SameSite=Lax one", c)
	}
	if c := set[loginCookie]; c == nil || c.MaxAge >= 0 {
		t.Errorf("the pre-login cookie is not cleared: %+v", c)
	}
	if landing.url.Path != "/contacts" {
		t.Errorf("after the callback the browser went to %s, want /contacts", landing.url)
	}

	// The contacts page: alice's name and the API's contacts.
	if p.status != http.StatusOK || p.url.String() != r.url+"/contacts" {
		t.Fatalf("ended at %s with %d", p.url, p.status)
	}
	if who, _ := p.text(t, "who"); who != "Alice Liddell" {
		t.Errorf("who = %q", who)
	}
	table, _ := p.text(t, "contacts")
	for _, want := range []string{"Contacts of alice", "Ada Lovelace", "alan@example.com", "+1 555 0103"} {
		if !strings.Contains(table, want) {
			t.Errorf("the contacts table lacks %q: %s", want, table)
		}
	}
	if n := strings.Count(p.body, "<tr>"); n != 4 {
		t.Errorf("%d table rows, want a header and 3 contacts", n)
	}
	if _, ok := p.text(t, "sign-out"); !ok {
		t.Error("no Sign out button")
	}

	// The tokens stay on the server: the API saw an access token that no
	// page and no cookie ever showed the browser.
	seen := r.api.tokens()
	if len(seen) != 1 {
		t.Fatalf("the API was called %d times, want once", len(seen))
	}
	sess := r.session(b)
	if sess == nil {
		t.Fatal("no session")
	}
	tok, idToken := sess.tokens()
	if tok.AccessToken != seen[0] || tok.RefreshToken == "" || idToken == "" {
		t.Fatalf("the session does not hold the tokens used")
	}
	for _, step := range append(trail, home, start) {
		for _, secret := range []string{tok.AccessToken, tok.RefreshToken, idToken} {
			if strings.Contains(step.body, secret) || strings.Contains(strings.Join(step.header.Values("Set-Cookie"), " "), secret) {
				t.Fatalf("a token reached the browser at %s", step.url)
			}
		}
	}

	// Again: no new sign-in, the same token.
	again := b.get(r.url + "/contacts")
	if _, ok := again.text(t, "contacts"); again.status != http.StatusOK || !ok {
		t.Fatalf("second Get contacts: %d\n%s", again.status, again.body)
	}
	if seen := r.api.tokens(); len(seen) != 2 || seen[1] != seen[0] {
		t.Errorf("the second call used another token")
	}
	if home := b.get(r.url + "/"); !strings.Contains(home.body, `Signed in as <strong id="who">Alice Liddell</strong>`) {
		t.Errorf("home page when signed in:\n%s", home.body)
	}
}

func TestCallbackState(t *testing.T) {
	t.Parallel()
	r := newRig(t)

	t.Run("state changed on the way", func(t *testing.T) {
		b := newBrowser(t)
		loc := b.get(r.url + "/contacts").location(t)
		q := loc.Query()
		q.Set("state", "forged-state")
		loc.RawQuery = q.Encode()
		p, _ := r.through(b, b.get(loc.String()), "allow")
		if msg, _ := p.text(t, "error"); p.status != http.StatusBadRequest || !strings.Contains(msg, "state mismatch") {
			t.Fatalf("want 400 and a state mismatch error, got %d %q:\n%s", p.status, msg, p.body)
		}
		if r.session(b) != nil {
			t.Fatal("a session was made")
		}
	})
	t.Run("response meant for another browser", func(t *testing.T) {
		// The victim's browser has a sign-in of its own in progress; the
		// attacker's code and state must not sign it in.
		attacker, victim := newBrowser(t), newBrowser(t)
		victim.get(r.url + "/contacts")
		_, trail := r.through(attacker, attacker.get(r.url+"/contacts"), "allow")
		var cb *url.URL
		for _, step := range trail {
			if step.url.Path == "/callback" {
				cb = step.url
			}
		}
		if cb == nil {
			t.Fatal("the attacker's flow never reached the callback")
		}
		got := victim.get(cb.String())
		if msg, _ := got.text(t, "error"); got.status != http.StatusBadRequest || !strings.Contains(msg, "state mismatch") {
			t.Fatalf("want 400 state mismatch, got %d %q", got.status, msg)
		}
		if r.session(victim) != nil {
			t.Fatal("the victim was signed in")
		}
	})
	t.Run("no sign-in in progress", func(t *testing.T) {
		b := newBrowser(t)
		p := b.get(r.url + "/callback?code=abc&state=xyz")
		if msg, _ := p.text(t, "error"); p.status != http.StatusBadRequest || !strings.Contains(msg, "No sign-in is in progress") {
			t.Fatalf("got %d %q", p.status, msg)
		}
	})
	t.Run("state used twice", func(t *testing.T) {
		b := newBrowser(t)
		_, trail := r.through(b, b.get(r.url+"/contacts"), "allow")
		var cb *url.URL
		for _, step := range trail {
			if step.url.Path == "/callback" {
				cb = step.url
			}
		}
		p := b.get(cb.String())
		if p.status != http.StatusBadRequest {
			t.Fatalf("a replayed callback: %d", p.status)
		}
	})
}

func TestAccessDenied(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	b := newBrowser(t)
	p, _ := r.through(b, b.get(r.url+"/contacts"), "deny")
	if msg, _ := p.text(t, "error"); msg != "You denied access." || p.status != http.StatusForbidden {
		t.Fatalf("want 403 and You denied access., got %d %q:\n%s", p.status, msg, p.body)
	}
	if _, ok := p.text(t, "sign-in"); !ok || r.session(b) != nil {
		t.Fatal("denied, yet signed in")
	}
	if len(r.api.tokens()) != 0 {
		t.Fatal("the API was called")
	}
}

// An expired access token is refreshed before the API call, and the new
// tokens are kept in the session.
func TestRefresh(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	b := newBrowser(t)
	r.signIn(b)
	sess := r.session(b)
	old, oldID := sess.tokens()

	// Make the access token look expired (x/oauth2 checks Expiry against
	// the real clock).
	sess.mu.Lock()
	expired := *old
	expired.Expiry = time.Now().Add(-time.Minute)
	sess.token = &expired
	sess.mu.Unlock()

	p := b.get(r.url + "/contacts")
	if _, ok := p.text(t, "contacts"); p.status != http.StatusOK || !ok {
		t.Fatalf("after refresh: %d\n%s", p.status, p.body)
	}
	seen := r.api.tokens()
	newTok, newID := sess.tokens()
	if last := seen[len(seen)-1]; last == old.AccessToken || last != newTok.AccessToken {
		t.Fatal("the API was not called with a new access token kept in the session")
	}
	if newTok.RefreshToken == "" || newTok.RefreshToken == old.RefreshToken || !newTok.Expiry.After(time.Now()) {
		t.Fatal("the rotated refresh token or the new expiry was not kept")
	}
	if newID == oldID || newID == "" {
		t.Error("the ID token from the refresh was not kept")
	}
	if r.authz.active(t, r.web, old.RefreshToken) || !r.authz.active(t, r.web, newTok.RefreshToken) {
		t.Error("want the old refresh token spent and the new one active")
	}

	// The refreshed token is used again, without another refresh.
	b.get(r.url + "/contacts")
	if again, _ := sess.tokens(); again.AccessToken != newTok.AccessToken || r.api.tokens()[len(seen)] != newTok.AccessToken {
		t.Error("the next call did not reuse the refreshed token")
	}
}

// When the tokens are revoked behind the BFF's back, the API refuses the
// access token, the refresh fails, and the BFF signs the user in again.
func TestRevokedTokensSignInAgain(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	b := newBrowser(t)
	r.signIn(b)
	old, _ := r.session(b).tokens()
	r.authz.revoke(t, r.web, old.AccessToken) // the grant's refresh token goes too

	p := b.get(r.url + "/contacts")
	if loc := p.location(t); !strings.HasPrefix(loc.String(), r.authz.URL+"/oauth2/authorize?") {
		t.Fatalf("want a new sign-in, sent to %s", loc)
	}
	if r.session(b) != nil {
		t.Fatal("the dead session is still there")
	}
	// The provider's session and the consent are still there: straight back.
	p, _ = r.through(b, p, "allow")
	if _, ok := p.text(t, "contacts"); !ok {
		t.Fatalf("%d\n%s", p.status, p.body)
	}
	if now, _ := r.session(b).tokens(); now.AccessToken == old.AccessToken {
		t.Fatal("same token")
	}
}

// A token without the contacts scope: the API answers 403 and the page
// says so.
func TestAPIForbidden(t *testing.T) {
	t.Parallel()
	r := newRig(t, func(c *Config) { c.Scopes = []string{"openid", "profile"} })
	b := newBrowser(t)
	p, _ := r.through(b, b.get(r.url+"/contacts"), "allow")
	msg, _ := p.text(t, "error")
	if p.status != http.StatusForbidden || !strings.Contains(msg, "403") || !strings.Contains(msg, "insufficient_scope") {
		t.Fatalf("want the API's 403 shown, got %d %q:\n%s", p.status, msg, p.body)
	}
	if who, _ := p.text(t, "who"); who != "Alice Liddell" {
		t.Errorf("who = %q", who)
	}
	if _, ok := p.text(t, "contacts"); ok {
		t.Error("contacts shown")
	}
}

// Sign out ends the BFF's session and the provider's, and revokes the
// tokens; the next "Get contacts" asks for the password again.
func TestSignOut(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	b := newBrowser(t)
	page := r.signIn(b)
	tok, idToken := r.session(b).tokens()

	t.Run("without the CSRF token", func(t *testing.T) {
		p := b.submit(page, "sign-out", map[string]string{"csrf_token": "wrong"})
		if msg, _ := p.text(t, "error"); p.status != http.StatusForbidden || !strings.Contains(msg, "expired") {
			t.Fatalf("%d %q", p.status, msg)
		}
		if r.session(b) == nil {
			t.Fatal("signed out by a forged form")
		}
	})
	t.Run("from another site", func(t *testing.T) {
		f := page.form(t, "sign-out")
		req, _ := http.NewRequest(http.MethodPost, r.url+"/logout", strings.NewReader(f.values.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		resp, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || r.session(b) == nil {
			t.Fatalf("a cross-site sign-out: %d", resp.StatusCode)
		}
	})

	out := b.submit(page, "sign-out", nil)
	loc := out.location(t)
	q := loc.Query()
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != r.authz.URL+"/oauth2/logout" {
		t.Fatalf("sent to %s", loc)
	}
	if q.Get("id_token_hint") != idToken || q.Get("post_logout_redirect_uri") != r.url+"/" || q.Get("client_id") != "demo-bff" || len(q.Get("state")) < 20 {
		t.Fatalf("end-session request %s", loc)
	}
	if c := out.cookies()[sessionCookie]; c == nil || c.MaxAge >= 0 {
		t.Errorf("the session cookie is not cleared: %+v", c)
	}
	if r.bff.sessions.len() != 0 {
		t.Error("the BFF session is still there")
	}
	if r.authz.active(t, r.web, tok.RefreshToken) || r.authz.active(t, r.rs, tok.AccessToken) {
		t.Error("the tokens were not revoked")
	}

	// The provider ends its session and sends the browser back with the state.
	p, trail := r.through(b, out, "allow")
	if len(trail) != 3 || p.url.Path != "/" || p.url.Query().Get("state") != q.Get("state") {
		t.Fatalf("want authz's logout to send the browser straight back to / with the state; ended at %s after %d steps:\n%s", p.url, len(trail), p.body)
	}
	if msg, _ := p.text(t, "notice"); msg != "You have signed out." {
		t.Errorf("notice %q", msg)
	}
	if _, ok := p.text(t, "sign-in"); !ok {
		t.Error("no Sign in link")
	}
	if _, ok := p.text(t, "who"); ok {
		t.Error("still named")
	}

	// Get contacts asks for the password again: the provider's session
	// ended too.
	p = b.follow(b.submit(p, "get-contacts", nil))
	if !p.isLogin() || !strings.HasPrefix(p.url.String(), r.authz.URL+"/oauth2/authorize?") {
		t.Fatalf("want the provider's login page, got %d at %s:\n%s", p.status, p.url, p.body)
	}
	// Signing in again works, without asking for consent again.
	p, trail = r.through(b, p, "deny")
	if _, ok := p.text(t, "contacts"); !ok {
		t.Fatalf("signing in again: %d\n%s", p.status, p.body)
	}
}

// Sessions end after sessionLifetime.
func TestSessionExpires(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	b := newBrowser(t)
	r.signIn(b)
	r.clock.Advance(sessionLifetime)
	p := b.get(r.url + "/")
	if _, ok := p.text(t, "who"); ok {
		t.Fatal("still signed in after the session's lifetime")
	}
}

func TestPagesAndHeaders(t *testing.T) {
	t.Parallel()
	r := newRig(t)

	css := newBrowser(t).get(r.url + "/style.css")
	if css.status != http.StatusOK || !strings.HasPrefix(css.header.Get("Content-Type"), "text/css") || !strings.Contains(css.body, "#") && !strings.Contains(css.body, "{") {
		t.Errorf("style.css: %d %s", css.status, css.header.Get("Content-Type"))
	}
	home := newBrowser(t).get(r.url + "/")
	for k, want := range map[string]string{
		"X-Frame-Options":         "DENY",
		"Content-Security-Policy": "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'",
		"Cache-Control":           "no-store",
		"Referrer-Policy":         "no-referrer",
	} {
		if got := home.header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if strings.Contains(home.body, "<script") || strings.Contains(home.body, "style=") || strings.Contains(home.body, "<style") {
		t.Error("the page has inline script or style")
	}

	// Browsers are kept on the redirect URI's host, where the cookies are.
	w := httptest.NewRecorder()
	req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, "http://localhost.example:9/contacts?x=1", nil)
	r.bff.ServeHTTP(w, req)
	if w.Code != http.StatusTemporaryRedirect || w.Header().Get("Location") != r.url+"/contacts?x=1" {
		t.Errorf("another host: %d %s", w.Code, w.Header().Get("Location"))
	}
}

// "Sign in" signs in and comes back to the home page; return_to cannot
// send the browser elsewhere.
func TestSignInLink(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	b := newBrowser(t)
	home := b.get(r.url + "/")
	if href := `<a id="sign-in" class="button secondary" href="/login">Sign in</a>`; !strings.Contains(home.body, href) {
		t.Fatalf("no Sign in link:\n%s", home.body)
	}
	p, _ := r.through(b, b.get(r.url+"/login?return_to=//evil.example/"), "allow")
	if p.status != http.StatusOK || p.url.String() != r.url+"/" {
		t.Fatalf("ended at %s with %d", p.url, p.status)
	}
	if who, _ := p.text(t, "who"); who != "Alice Liddell" {
		t.Fatalf("who = %q", who)
	}
	if _, ok := p.text(t, "contacts"); ok || len(r.api.tokens()) != 0 {
		t.Error("signing in fetched contacts")
	}
}
