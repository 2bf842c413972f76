package bff

import (
	"context"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/internal/demo/demotest"
)

// The whole flow across the three servers: "Get contacts" while signed
// out → authorize → login → consent → callback → contacts.
func TestSignInAndGetContacts(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	b := newBrowser(t)

	home := b.Get(r.url + "/")
	if _, ok := home.Text(t, "sign-in"); !ok || home.Status != http.StatusOK {
		t.Fatalf("home page: want Sign in, got %d:\n%s", home.Status, home.Body)
	}
	if _, ok := home.Text(t, "who"); ok {
		t.Fatalf("signed out, yet the page names someone:\n%s", home.Body)
	}
	if text, _ := home.Text(t, "get-contacts"); text != "Get contacts" {
		t.Fatalf("get-contacts button says %q", text)
	}
	// One action, not two: signed out, "Get contacts" is the sign-in.
	if f := home.Form(t, "sign-in"); f.Method != http.MethodGet || f.Action != "/contacts" || !slices.Contains(f.IDs, "get-contacts") {
		t.Fatalf("the sign-in form %+v, want GET /contacts with #get-contacts", f)
	}
	if n := len(home.Forms(t)); n != 1 {
		t.Errorf("the signed-out home page has %d forms, want one", n)
	}
	if title := pageTitle(home); title != "Contacts demo" {
		t.Errorf("home page title %q", title)
	}

	// "Get contacts" while signed out starts the sign-in.
	start := b.Submit(home, "get-contacts", nil)
	loc := start.Location(t)
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
	if c := start.Cookies()[loginCookie]; c == nil || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" {
		t.Errorf("pre-login cookie %+v, want HttpOnly, SameSite=Lax, Path=/", c)
	}

	p, trail := r.through(b, start, "allow")
	var sawLogin, sawConsent bool
	var callback, landing *page
	for i, step := range trail {
		sawLogin = sawLogin || step.IsLogin()
		sawConsent = sawConsent || step.IsConsent()
		if step.URL.Path == "/callback" && strings.HasPrefix(step.URL.String(), r.url) {
			callback, landing = step, trail[i+1]
		}
	}
	if !sawLogin || !sawConsent || callback == nil {
		t.Fatalf("want login, consent and the callback on the way (login %v, consent %v, callback %v)", sawLogin, sawConsent, callback != nil)
	}
	if cq := callback.URL.Query(); cq.Get("state") != q.Get("state") || cq.Get("iss") != r.authz.URL || cq.Get("code") == "" {
		t.Errorf("callback %s", callback.URL)
	}
	set := callback.Cookies()
	if c := set[sessionCookie]; c == nil || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || len(c.Value) < 20 {
		t.Errorf("session cookie %+v, want a random HttpOnly SameSite=Lax one", c)
	}
	if c := set[loginCookie]; c == nil || c.MaxAge >= 0 {
		t.Errorf("the pre-login cookie is not cleared: %+v", c)
	}
	if landing.URL.Path != "/contacts" {
		t.Errorf("after the callback the browser went to %s, want /contacts", landing.URL)
	}

	// The contacts page: alice's name and the API's contacts.
	if p.Status != http.StatusOK || p.URL.String() != r.url+"/contacts" {
		t.Fatalf("ended at %s with %d", p.URL, p.Status)
	}
	if who, _ := p.Text(t, "who"); who != "Alice Liddell" {
		t.Errorf("who = %q", who)
	}
	seen := r.api.tokens()
	if len(seen) != 1 {
		t.Fatalf("the API was called %d times, want once", len(seen))
	}
	table, _ := p.Text(t, "contacts")
	if caption := strings.Fields(table); strings.Join(caption[:5], " ") != "Contacts of alice (Alice Liddell)" {
		t.Errorf("the contacts table's caption: %q", table)
	}
	var want []string
	for _, c := range r.api.contacts(t, seen[0]).Contacts {
		want = append(want, c.Name, c.Email, c.Phone)
	}
	for _, w := range want {
		if !strings.Contains(table, w) {
			t.Errorf("the contacts table lacks %q: %s", w, table)
		}
	}
	if title := pageTitle(p); title != "Your contacts · Contacts demo" {
		t.Errorf("contacts page title %q", title)
	}
	if n := strings.Count(p.Body, "<tr>"); n != 4 {
		t.Errorf("%d table rows, want a header and 3 contacts", n)
	}
	if _, ok := p.Text(t, "sign-out"); !ok {
		t.Error("no Sign out button")
	}

	// The tokens stay on the server: the API saw an access token that no
	// page and no cookie ever showed the browser.
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
			if strings.Contains(step.Body, secret) || strings.Contains(strings.Join(step.Header.Values("Set-Cookie"), " "), secret) {
				t.Fatalf("a token reached the browser at %s", step.URL)
			}
		}
	}

	// Again: no new sign-in, the same token.
	again := b.Get(r.url + "/contacts")
	if _, ok := again.Text(t, "contacts"); again.Status != http.StatusOK || !ok {
		t.Fatalf("second Get contacts: %d\n%s", again.Status, again.Body)
	}
	if seen := r.api.tokens(); len(seen) != 2 || seen[1] != seen[0] {
		t.Errorf("the second call used another token")
	}
	home = b.Get(r.url + "/")
	if who, _ := home.Text(t, "who"); who != "Alice Liddell" || !strings.Contains(home.Body, "Signed in as") {
		t.Errorf("home page when signed in:\n%s", home.Body)
	}
	if _, ok := home.Text(t, "sign-in"); ok {
		t.Error("signed in, yet the page offers to sign in")
	}
}

func TestCallbackState(t *testing.T) {
	t.Parallel()
	r := newRig(t)

	t.Run("state changed on the way", func(t *testing.T) {
		b := newBrowser(t)
		loc := b.Get(r.url + "/contacts").Location(t)
		q := loc.Query()
		q.Set("state", "forged-state")
		loc.RawQuery = q.Encode()
		p, _ := r.through(b, b.Get(loc.String()), "allow")
		if msg, _ := p.Text(t, "error"); p.Status != http.StatusBadRequest || !strings.Contains(msg, "state mismatch") {
			t.Fatalf("want 400 and a state mismatch error, got %d %q:\n%s", p.Status, msg, p.Body)
		}
		if r.session(b) != nil {
			t.Fatal("a session was made")
		}
	})
	t.Run("response meant for another browser", func(t *testing.T) {
		// The victim's browser has a sign-in of its own in progress; the
		// attacker's code and state must not sign it in.
		attacker, victim := newBrowser(t), newBrowser(t)
		victim.Get(r.url + "/contacts")
		_, trail := r.through(attacker, attacker.Get(r.url+"/contacts"), "allow")
		var cb *url.URL
		for _, step := range trail {
			if step.URL.Path == "/callback" {
				cb = step.URL
			}
		}
		if cb == nil {
			t.Fatal("the attacker's flow never reached the callback")
		}
		got := victim.Get(cb.String())
		if msg, _ := got.Text(t, "error"); got.Status != http.StatusBadRequest || !strings.Contains(msg, "state mismatch") {
			t.Fatalf("want 400 state mismatch, got %d %q", got.Status, msg)
		}
		if r.session(victim) != nil {
			t.Fatal("the victim was signed in")
		}
	})
	t.Run("no sign-in in progress", func(t *testing.T) {
		b := newBrowser(t)
		p := b.Get(r.url + "/callback?code=abc&state=xyz")
		if msg, _ := p.Text(t, "error"); p.Status != http.StatusBadRequest || !strings.Contains(msg, "No sign-in is in progress") {
			t.Fatalf("got %d %q", p.Status, msg)
		}
		// The error page says what failed and offers to try again, which
		// signs in.
		if text, _ := p.Text(t, "get-contacts"); text != "Try again" || pageTitle(p) != "Sign-in failed · Contacts demo" {
			t.Errorf("button %q, title %q", text, pageTitle(p))
		}
		if f := p.Form(t, "sign-in"); f.Action != "/contacts" {
			t.Errorf("Try again goes to %s", f.Action)
		}
	})
	t.Run("state used twice", func(t *testing.T) {
		b := newBrowser(t)
		_, trail := r.through(b, b.Get(r.url+"/contacts"), "allow")
		var cb *url.URL
		for _, step := range trail {
			if step.URL.Path == "/callback" {
				cb = step.URL
			}
		}
		p := b.Get(cb.String())
		if p.Status != http.StatusBadRequest {
			t.Fatalf("a replayed callback: %d", p.Status)
		}
	})
}

func TestAccessDenied(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	b := newBrowser(t)
	p, trail := r.through(b, b.Get(r.url+"/contacts"), "deny")
	// The callback sends the browser home, which explains and offers to
	// try again.
	if cb := trail[len(trail)-2]; cb.URL.Path != "/callback" || cb.Status != http.StatusSeeOther {
		t.Fatalf("the denied callback answered %d at %s, want a redirect home", cb.Status, cb.URL)
	}
	msg, _ := p.Text(t, "notice")
	if p.Status != http.StatusOK || p.URL.String() != r.url+"/" || !strings.HasPrefix(msg, "You didn't allow access.") || !strings.Contains(msg, "permission") {
		t.Fatalf("want the home page saying access was not allowed, got %d at %s, notice %q:\n%s", p.Status, p.URL, msg, p.Body)
	}
	if _, ok := p.Text(t, "error"); ok {
		t.Error("a denial is shown as an error")
	}
	if text, _ := p.Text(t, "get-contacts"); text != "Try again" || pageTitle(p) != "Access not allowed · Contacts demo" {
		t.Errorf("button %q, title %q", text, pageTitle(p))
	}
	if _, ok := p.Text(t, "sign-in"); !ok || r.session(b) != nil {
		t.Fatal("denied, yet signed in")
	}
	// The notice is shown once: a reload shows the plain home page.
	if again := b.Get(r.url + "/"); strings.Contains(again.Body, `id="notice"`) {
		t.Errorf("the notice is shown again on reload:\n%s", again.Body)
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
	r.signIn(t, b)
	sess := r.session(b)
	old, oldID := sess.tokens()

	// Make the access token look expired (x/oauth2 checks Expiry against
	// the real clock).
	sess.mu.Lock()
	expired := *old
	expired.Expiry = time.Now().Add(-time.Minute)
	sess.token = &expired
	sess.mu.Unlock()

	p := b.Get(r.url + "/contacts")
	if _, ok := p.Text(t, "contacts"); p.Status != http.StatusOK || !ok {
		t.Fatalf("after refresh: %d\n%s", p.Status, p.Body)
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
	if r.authz.Active(t, r.web, old.RefreshToken) || !r.authz.Active(t, r.web, newTok.RefreshToken) {
		t.Error("want the old refresh token spent and the new one active")
	}

	// The refreshed token is used again, without another refresh.
	b.Get(r.url + "/contacts")
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
	r.signIn(t, b)
	old, _ := r.session(b).tokens()
	r.authz.Revoke(t, r.web, old.AccessToken) // the grant's refresh token goes too

	p := b.Get(r.url + "/contacts")
	if loc := p.Location(t); !strings.HasPrefix(loc.String(), r.authz.URL+"/oauth2/authorize?") {
		t.Fatalf("want a new sign-in, sent to %s", loc)
	}
	if r.session(b) != nil {
		t.Fatal("the dead session is still there")
	}
	// The provider's session and the consent are still there: straight back.
	p, _ = r.through(b, p, "allow")
	if _, ok := p.Text(t, "contacts"); !ok {
		t.Fatalf("%d\n%s", p.Status, p.Body)
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
	p, _ := r.through(b, b.Get(r.url+"/contacts"), "allow")
	msg, _ := p.Text(t, "error")
	if p.Status != http.StatusForbidden || !strings.Contains(msg, "403") || !strings.Contains(msg, "insufficient_scope") {
		t.Fatalf("want the API's 403 shown, got %d %q:\n%s", p.Status, msg, p.Body)
	}
	if who, _ := p.Text(t, "who"); who != "Alice Liddell" {
		t.Errorf("who = %q", who)
	}
	if _, ok := p.Text(t, "contacts"); ok {
		t.Error("contacts shown")
	}
	if title := pageTitle(p); title != "Couldn't get your contacts · Contacts demo" {
		t.Errorf("title %q", title)
	}
}

// Sign out ends the BFF's session and the provider's, and revokes the
// tokens; the next "Get contacts" asks for the password again.
func TestSignOut(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	b := newBrowser(t)
	page := r.signIn(t, b)
	tok, idToken := r.session(b).tokens()

	t.Run("without the CSRF token", func(t *testing.T) {
		p := b.Submit(page, "sign-out", map[string]string{"csrf_token": "wrong"})
		if msg, _ := p.Text(t, "error"); p.Status != http.StatusForbidden || !strings.Contains(msg, "expired") {
			t.Fatalf("%d %q", p.Status, msg)
		}
		if r.session(b) == nil {
			t.Fatal("signed out by a forged form")
		}
	})
	t.Run("from another site", func(t *testing.T) {
		f := page.Form(t, "sign-out")
		req, _ := http.NewRequest(http.MethodPost, r.url+"/logout", strings.NewReader(f.Values.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		resp, err := b.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || r.session(b) == nil {
			t.Fatalf("a cross-site sign-out: %d", resp.StatusCode)
		}
	})

	out := b.Submit(page, "sign-out", nil)
	loc := out.Location(t)
	q := loc.Query()
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != r.authz.URL+"/oauth2/logout" {
		t.Fatalf("sent to %s", loc)
	}
	if q.Get("id_token_hint") != idToken || q.Get("post_logout_redirect_uri") != r.url+"/" || q.Get("client_id") != "demo-bff" || len(q.Get("state")) < 20 {
		t.Fatalf("end-session request %s", loc)
	}
	if c := out.Cookies()[sessionCookie]; c == nil || c.MaxAge >= 0 {
		t.Errorf("the session cookie is not cleared: %+v", c)
	}
	if r.bff.sessions.len() != 0 {
		t.Error("the BFF session is still there")
	}
	if r.authz.Active(t, r.web, tok.RefreshToken) || r.authz.Active(t, r.rs, tok.AccessToken) {
		t.Error("the tokens were not revoked")
	}

	// The provider ends its session and sends the browser back with the state.
	p, trail := r.through(b, out, "allow")
	if len(trail) != 3 || p.URL.Path != "/" || p.URL.Query().Get("state") != q.Get("state") {
		t.Fatalf("want authz's logout to send the browser straight back to / with the state; ended at %s after %d steps:\n%s", p.URL, len(trail), p.Body)
	}
	if msg, _ := p.Text(t, "notice"); !strings.HasPrefix(msg, "You have signed out.") || pageTitle(p) != "Signed out · Contacts demo" {
		t.Errorf("notice %q, title %q", msg, pageTitle(p))
	}
	if _, ok := p.Text(t, "sign-in"); !ok {
		t.Error("no Sign in link")
	}
	if _, ok := p.Text(t, "who"); ok {
		t.Error("still named")
	}

	// Get contacts asks for the password again: the provider's session
	// ended too.
	p = b.Follow(b.Submit(p, "get-contacts", nil))
	if !p.IsLogin() || !strings.HasPrefix(p.URL.String(), r.authz.URL+"/oauth2/authorize?") {
		t.Fatalf("want the provider's login page, got %d at %s:\n%s", p.Status, p.URL, p.Body)
	}
	// Signing in again works, without asking for consent again.
	p, trail = r.through(b, p, "deny")
	if _, ok := p.Text(t, "contacts"); !ok {
		t.Fatalf("signing in again: %d\n%s", p.Status, p.Body)
	}
}

// Sessions end after sessionLifetime.
func TestSessionExpires(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	b := newBrowser(t)
	r.signIn(t, b)
	r.clock.Advance(sessionLifetime)
	p := b.Get(r.url + "/")
	if _, ok := p.Text(t, "who"); ok {
		t.Fatal("still signed in after the session's lifetime")
	}
}

func TestPagesAndHeaders(t *testing.T) {
	t.Parallel()
	r := newRig(t)

	css := newBrowser(t).Get(r.url + "/style.css")
	if css.Status != http.StatusOK || !strings.HasPrefix(css.Header.Get("Content-Type"), "text/css") || !strings.Contains(css.Body, "#") && !strings.Contains(css.Body, "{") {
		t.Errorf("style.css: %d %s", css.Status, css.Header.Get("Content-Type"))
	}
	home := newBrowser(t).Get(r.url + "/")
	for k, want := range map[string]string{
		"X-Frame-Options":         "DENY",
		"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'",
		"Cache-Control":           "no-store",
		"Referrer-Policy":         "no-referrer",
	} {
		if got := home.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if strings.Contains(home.Body, "<script") || strings.Contains(home.Body, "style=") || strings.Contains(home.Body, "<style") {
		t.Error("the page has inline script or style")
	}
	icon := newBrowser(t).Get(r.url + "/favicon.svg")
	if icon.Status != http.StatusOK || icon.Header.Get("Content-Type") != "image/svg+xml" || !strings.Contains(home.Body, `href="/favicon.svg"`) {
		t.Errorf("favicon.svg: %d %s", icon.Status, icon.Header.Get("Content-Type"))
	}

	// Browsers are kept on the redirect URI's host, where the cookies are.
	w := httptest.NewRecorder()
	req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, "http://localhost.example:9/contacts?x=1", nil)
	r.bff.ServeHTTP(w, req)
	if w.Code != http.StatusTemporaryRedirect || w.Header().Get("Location") != r.url+"/contacts?x=1" {
		t.Errorf("another host: %d %s", w.Code, w.Header().Get("Location"))
	}
}

// /login signs in and comes back to the home page; return_to cannot send
// the browser elsewhere.
func TestSignInLink(t *testing.T) {
	t.Parallel()
	r := newRig(t)
	b := newBrowser(t)
	p, _ := r.through(b, b.Get(r.url+"/login?return_to=//evil.example/"), "allow")
	if p.Status != http.StatusOK || p.URL.String() != r.url+"/" {
		t.Fatalf("ended at %s with %d", p.URL, p.Status)
	}
	if who, _ := p.Text(t, "who"); who != "Alice Liddell" {
		t.Fatalf("who = %q", who)
	}
	if _, ok := p.Text(t, "contacts"); ok || len(r.api.tokens()) != 0 {
		t.Error("signing in fetched contacts")
	}
}
func TestNewServerChecksRedirectPath(t *testing.T) {
	t.Parallel()
	for _, uri := range []string{"http://localhost:3000/", "http://localhost:3000/contacts"} {
		_, err := NewServer(t.Context(), Config{Issuer: "http://127.0.0.1:9", ClientID: "x", ClientSecret: "y",
			RedirectURI: uri, APIURL: "http://127.0.0.1:9", Scopes: []string{"openid"}}, testLogger())
		if err == nil || !strings.Contains(err.Error(), "redirect URI") {
			t.Errorf("%s: %v", uri, err)
		}
	}
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	a := demotest.StartAuthz(t, nil)
	cfg := func(issuer string, timeout time.Duration) Config {
		return Config{Issuer: issuer, ClientID: "demo-bff", ClientSecret: "x", RedirectURI: "http://localhost:3000/callback",
			APIURL: "http://localhost:4000", Scopes: []string{"openid"}, StartupTimeout: timeout}
	}
	t.Run("waits for the issuer", func(t *testing.T) {
		a.Unavailable.Store(1)
		s, err := NewServer(t.Context(), cfg(a.URL, 10*time.Second), testLogger())
		if err != nil {
			t.Fatal(err)
		}
		if s.endSessionURL != a.URL+"/oauth2/logout" || s.revocationURL != a.URL+"/oauth2/revoke" || s.oauth.Endpoint.TokenURL != a.URL+"/oauth2/token" {
			t.Errorf("endpoints: %q %q %+v", s.endSessionURL, s.revocationURL, s.oauth.Endpoint)
		}
		if n := a.Unavailable.Load(); n >= 0 {
			t.Errorf("the failing request was not made (unavailable = %d)", n)
		}
	})
	t.Run("gives up at the deadline", func(t *testing.T) {
		gone := httptest.NewServer(http.NotFoundHandler())
		gone.Close()
		_, err := NewServer(t.Context(), cfg(gone.URL, 300*time.Millisecond), testLogger())
		if err == nil || !strings.Contains(err.Error(), "gave up after 300ms") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("another issuer fails at once", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err := NewServer(ctx, cfg(strings.Replace(a.URL, "127.0.0.1", "localhost", 1), time.Minute), testLogger())
		if err == nil || !strings.Contains(err.Error(), "did not match") {
			t.Fatalf("got %v", err)
		}
	})
}

// pageTitle is the text of the page's <title>.
func pageTitle(p *page) string {
	_, rest, _ := strings.Cut(p.Body, "<title>")
	title, _, _ := strings.Cut(rest, "</title>")
	return html.UnescapeString(title)
}
