package authz_test

import (
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authz/authz/authz"
)

// Abuse resistance: sign-in throttling per account and per address, fair
// shares of password checks, the client address behind a trusted proxy,
// throttled client secrets, and a new session id at every sign-in.

// stoppedClock is a clock that moves only when told to. Sign-in waits are
// a second or two: on the real clock, a slow machine could let one run out
// between a failure and the next attempt.
type stoppedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stoppedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stoppedClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// stopClock gives the server a stoppedClock and returns it.
func stopClock(clock **stoppedClock) envOption {
	return func(c *authz.Config) {
		*clock = &stoppedClock{t: time.Now()}
		c.Now = (*clock).Now
	}
}

// trustLoopback makes the test's requests, which come from 127.0.0.1,
// arrive as from a trusted reverse proxy: X-Forwarded-For names the client.
func trustLoopback(c *authz.Config) {
	c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
}

// forwarding is a transport that says, through the proxy, that its
// requests come from addr.
type forwarding struct{ addr string }

func (f forwarding) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Forwarded-For", f.addr)
	return http.DefaultTransport.RoundTrip(r)
}

// browserFrom is a fresh browser whose requests carry X-Forwarded-For: addr.
func browserFrom(t *testing.T, addr string) *browser {
	b := newBrowser(t)
	b.c.Transport = forwarding{addr}
	return b
}

// signInOutcome is what a sign-in attempt got, as a person sees it.
type signInOutcome struct {
	status     int
	retryAfter string
	alert      string // the login page's error; "signed in" for the consent page
}

func (o signInOutcome) String() string {
	return fmt.Sprintf("%d Retry-After=%q %q", o.status, o.retryAfter, o.alert)
}

var alertRE = regexp.MustCompile(`role="alert">([^<]*)<`)

func signInOutcomeOf(p *page) signInOutcome {
	o := signInOutcome{status: p.status, retryAfter: p.header.Get("Retry-After")}
	if isConsentPage(p) {
		o.alert = "signed in"
	} else if m := alertRE.FindStringSubmatch(p.body); m != nil {
		o.alert = html.UnescapeString(m[1])
	}
	return o
}

// signInFrom opens target in a fresh browser from addr and signs in.
func signInFrom(t *testing.T, target, addr, username, password string) signInOutcome {
	t.Helper()
	b := browserFrom(t, addr)
	p := b.get(target)
	if !isLoginPage(p) {
		t.Fatalf("from %s: want the login page, got %d\n%s", addr, p.status, p.body)
	}
	return signInOutcomeOf(b.submit(p, p.form(t), map[string]string{"action": "login", "username": username, "password": password}))
}

var (
	incorrect = signInOutcome{http.StatusOK, "", "Incorrect username or password."}
	signedIn  = signInOutcome{http.StatusOK, "", "signed in"}
)

func throttled(seconds int, wait string) signInOutcome {
	return signInOutcome{http.StatusTooManyRequests, strconv.Itoa(seconds), "Too many failed attempts. Wait " + wait + ", then try again."}
}

// withAdmin starts the admin API of e.
func withAdmin(t *testing.T, e *env) *adminEnv {
	t.Helper()
	e.cfg.AdminToken = adminToken
	h, err := authz.NewAdmin(e.cfg, e.store, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &adminEnv{env: e, admin: srv}
}

// TestThrottleAccount: failed sign-ins as one username are limited over
// every address: five are free, then each attempt waits 1 s, 2 s, 4 s ...
// (429 with Retry-After, whatever the password), and the twentieth failure
// locks the username for 15 minutes, until the admin API unlocks it. An
// unknown username gets exactly the same answers. Before, the limit was
// per username and address: 30 addresses made 300 guesses in 10 seconds.
func TestThrottleAccount(t *testing.T) {
	t.Parallel()
	var clock *stoppedClock
	e := newEnv(t, trustLoopback, stopClock(&clock))
	a := withAdmin(t, e)
	client := e.confidential(t, "client_secret_basic")
	alice := e.createUser(t, "alice")
	target := authorizeURL(e.issuer, codeParams(client, "contacts"))

	var want []signInOutcome
	for range 5 {
		want = append(want, incorrect)
	}
	waits := []int{1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60, 60, 60, 60, 60}
	for _, s := range waits {
		wait := strconv.Itoa(s) + " seconds"
		if s == 1 {
			wait = "1 second"
		} else if s == 60 {
			wait = "1 minute"
		}
		want = append(want, throttled(s, wait), incorrect)
	}
	want = append(want, throttled(900, "15 minutes"))

	// guess makes 20 failed sign-ins as username, each from an address
	// of its own, waiting as told, then tries once more.
	addr := 0
	guess := func(username string) []signInOutcome {
		var got []signInOutcome
		for failures := 0; failures < 20; {
			addr++
			o := signInFrom(t, target, fmt.Sprintf("198.51.100.%d", addr), username, "wrong password")
			got = append(got, o)
			switch o.status {
			case http.StatusOK:
				failures++
			case http.StatusTooManyRequests:
				s, err := strconv.Atoi(o.retryAfter)
				if err != nil || s <= 0 {
					t.Fatalf("429 with Retry-After %q, want seconds", o.retryAfter)
				}
				clock.Advance(time.Duration(s) * time.Second)
			default:
				t.Fatalf("sign-in %d as %s: %v", len(got), username, o)
			}
			if len(got) > len(want) {
				break
			}
		}
		return append(got, signInFrom(t, target, "203.0.113.1", username, testPassword))
	}
	check := func(username string, got []signInOutcome) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d answers, want %d:\n%v", username, len(got), len(want), got)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: answer %d is %v, want %v\nall: %v", username, i+1, got[i], want[i], got)
			}
		}
	}

	check("alice", guess("alice"))
	if n := sessions(t, e, alice.ID); n != 0 {
		t.Fatalf("alice has %d sessions after a locked sign-in", n)
	}
	clock.Advance(14 * time.Minute)
	if o := signInFrom(t, target, "203.0.113.2", "ALICE", testPassword); o != throttled(60, "1 minute") {
		t.Fatalf("ALICE 14 minutes into the lock: %v, want the lock's last minute", o)
	}

	a.adminRequest(t, http.MethodGet, "/admin/users/"+alice.ID+"/unlock", "", nil).want(t, http.StatusMethodNotAllowed, nil)
	a.adminRequest(t, http.MethodPost, "/admin/users/nobody/unlock", "", nil).wantError(t, http.StatusNotFound, "not_found", "nobody")
	a.adminRequest(t, http.MethodPost, "/admin/users/"+alice.ID+"/unlock", "", nil).want(t, http.StatusNoContent, nil)
	if o := signInFrom(t, target, "203.0.113.3", "alice", testPassword); o != signedIn {
		t.Fatalf("alice after the admin API unlocked her: %v, want signed in", o)
	}

	// A username nobody has is counted and locked the same way.
	check("nobody", guess("nobody"))
}

// TestThrottleAddress: failed sign-ins from one address are limited over
// every username: after 100, the address waits 15 minutes, even with the
// right password; other addresses are not held up. Behind a trusted proxy
// the address is the last one in X-Forwarded-For that is not a trusted
// proxy: what the client put before it does not change it.
func TestThrottleAddress(t *testing.T) {
	t.Parallel()
	var clock *stoppedClock // Retry-After counts down with the clock
	e := newEnv(t, trustLoopback, stopClock(&clock))
	client := e.confidential(t, "client_secret_basic")
	e.createUser(t, "alice")
	target := authorizeURL(e.issuer, codeParams(client, "contacts"))

	failMany(t, target, 100, func(i int) (string, string) {
		return "198.51.100.7", fmt.Sprintf("user%d", i)
	})
	want := signInOutcome{http.StatusTooManyRequests, "900", "Too many failed attempts from your network. Wait 15 minutes, then try again."}
	for _, addr := range []string{"198.51.100.7", "203.0.113.50, 198.51.100.7", "198.51.100.7, 127.0.0.1"} {
		if o := signInFrom(t, target, addr, "alice", testPassword); o != want {
			t.Errorf("alice from X-Forwarded-For %q after 100 failures from 198.51.100.7: %v, want %v", addr, o, want)
		}
	}
	if o := signInFrom(t, target, "203.0.113.50", "alice", testPassword); o != signedIn {
		t.Errorf("alice from another address: %v, want signed in", o)
	}
}

// TestThrottleSpoofedForwardedFor: X-Forwarded-For from a peer that is not
// a trusted proxy is ignored: a client cannot dodge the address limit by
// naming a new address in every request.
func TestThrottleSpoofedForwardedFor(t *testing.T) {
	t.Parallel()
	var clock *stoppedClock           // Retry-After counts down with the clock
	e := newEnv(t, stopClock(&clock)) // no trusted proxies
	client := e.confidential(t, "client_secret_basic")
	e.createUser(t, "alice")
	target := authorizeURL(e.issuer, codeParams(client, "contacts"))

	failMany(t, target, 100, func(i int) (string, string) {
		return fmt.Sprintf("198.51.100.%d", i), fmt.Sprintf("user%d", i)
	})
	if o := signInFrom(t, target, "203.0.113.99", "alice", testPassword); o.status != http.StatusTooManyRequests || o.retryAfter != "900" {
		t.Errorf("alice claiming another address after 100 failures from this one: %v, want 429 for 15 minutes", o)
	}
}

// failMany makes n failed sign-ins, two at a time (an address's share),
// from and as who(i) says.
func failMany(t *testing.T, target string, n int, who func(i int) (addr, username string)) {
	t.Helper()
	var (
		wg   sync.WaitGroup
		next atomic.Int64
	)
	for range 2 {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
				addr, username := who(i)
				if o := signInFrom(t, target, addr, username, "wrong password"); o != incorrect {
					t.Errorf("failed sign-in %d of %d: %v, want %v", i+1, n, o, incorrect)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// TestThrottleFairShare: a flood of 150 simultaneous sign-ins from one
// address cannot starve a person signing in from another: the flood gets
// at most two password checks at a time, the rest wait briefly and are told
// to retry (429 with Retry-After), and the person's sign-in succeeds without
// waiting behind the flood. Before, one address could take every password
// check slot: a real person's sign-in took 7.3 s and then failed "busy".
//
// How long the person waited is not asserted (no timings in tests); what
// is counted instead is how many of the flood's password checks were
// answered while the person's sign-in ran. Queued behind the flood, that is
// nearly all of them; with fair shares, a handful.
//
// Not parallel: the password check slots it measures are the process's,
// and other tests' sign-ins would take them too.
func TestThrottleFairShare(t *testing.T) {
	e := newEnv(t, trustLoopback)
	client := e.confidential(t, "client_secret_basic")
	e.createUser(t, "alice")
	target := authorizeURL(e.issuer, codeParams(client, "contacts"))

	person := browserFrom(t, "203.0.113.9")
	personPage := person.get(target)
	attacker := browserFrom(t, "198.51.100.66")
	attackPage := attacker.get(target)
	attackForm := attackPage.form(t)

	const flood = 150
	var (
		checked atomic.Int64 // flood sign-ins whose password was checked
		started = make(chan struct{})
		wg      sync.WaitGroup
		mu      sync.Mutex
		answers = map[string]int{}
	)
	for i := range flood {
		form := url.Values{}
		for k, v := range attackForm.values {
			form[k] = v
		}
		form.Set("action", "login")
		form.Set("username", fmt.Sprintf("random-%d", i))
		form.Set("password", "wrong password")
		wg.Go(func() {
			<-started
			resp, err := attacker.c.PostForm(e.url("/oauth2/authorize"), form)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			o := signInOutcomeOf(&page{status: resp.StatusCode, header: resp.Header, body: string(body)})
			if o == incorrect {
				checked.Add(1)
			}
			if o.status == http.StatusTooManyRequests && o.retryAfter == "" {
				t.Errorf("a 429 without Retry-After: %v", o)
			}
			mu.Lock()
			answers[o.String()]++
			mu.Unlock()
		})
	}
	close(started)
	floodOver := make(chan struct{})
	go func() {
		wg.Wait()
		close(floodOver)
	}()
	// Wait until the flood's checks are under way (polling: the flood is
	// what is being waited for, not a time).
	for checked.Load() < 4 {
		select {
		case <-floodOver:
			t.Fatalf("the flood ended before 4 of its password checks did: %v", answers)
		case <-time.After(5 * time.Millisecond):
		}
	}
	before := checked.Load()
	res := person.login(personPage, "alice", testPassword)
	during := checked.Load() - before
	<-floodOver

	t.Logf("flood answers: %v; %d of the flood's checks ended while the person signed in", answers, during)
	if o := signInOutcomeOf(res); o != signedIn {
		t.Fatalf("the person's sign-in during the flood: %v, want signed in\n%s", o, res.body)
	}
	for a := range answers {
		if !strings.HasPrefix(a, "200 ") && !strings.HasPrefix(a, "429 ") {
			t.Errorf("the flood got %s: want only failed sign-ins and 429s", a)
		}
	}
	if during > 30 {
		t.Errorf("%d of the flood's password checks ended while the person's sign-in ran: it queued behind the flood", during)
	}
}

// TestThrottleClientSecret: wrong secrets for a client whose secret an
// operator chose (Argon2id) are limited to 10 a minute; then the client is
// refused with 401 invalid_client at every endpoint, even with the right
// secret, until the minute is over. A generated secret is not throttled.
// Before, any number of guesses was checked.
func TestThrottleClientSecret(t *testing.T) {
	t.Parallel()
	var clock *stoppedClock
	e := newEnv(t, stopClock(&clock))
	chosen := e.machine(t, authz.ClientMetadata{ClientSecret: "an operator chose this secret"})
	generated := e.machine(t, authz.ClientMetadata{})

	for i := range 10 {
		if tok := e.clientCredentials(t, chosen.ClientID, fmt.Sprintf("guess %d", i)); tok.status != http.StatusUnauthorized || tok.Error != "invalid_client" {
			t.Fatalf("wrong secret %d: %d %q, want 401 invalid_client", i+1, tok.status, tok.Error)
		}
	}
	tok := e.clientCredentials(t, chosen.ClientID, chosen.ClientSecret)
	if tok.status != http.StatusUnauthorized || tok.Error != "invalid_client" || !strings.Contains(tok.Description, "Too many failed authentications") {
		t.Fatalf("the right secret after 10 wrong ones: %d %q %q, want 401 invalid_client saying why", tok.status, tok.Error, tok.Description)
	}
	introspect := post(t, e.url("/oauth2/introspect"), url.Values{"token": {"whatever"}}, chosen.ClientID, chosen.ClientSecret)
	wantOAuthError(t, introspect, http.StatusUnauthorized, "invalid_client")
	revoke := post(t, e.url("/oauth2/revoke"), url.Values{"token": {"whatever"}}, chosen.ClientID, chosen.ClientSecret)
	wantOAuthError(t, revoke, http.StatusUnauthorized, "invalid_client")
	token := post(t, e.url("/oauth2/token"), url.Values{"grant_type": {"client_credentials"}}, chosen.ClientID, chosen.ClientSecret)
	for what, r := range map[string]reply{"token": token, "introspection": introspect, "revocation": revoke} {
		if r.header.Get("Retry-After") == "" {
			t.Errorf("%s: a throttled client's 401 carries no Retry-After", what)
		}
	}

	clock.Advance(time.Minute)
	if tok := e.clientCredentials(t, chosen.ClientID, chosen.ClientSecret); tok.status != http.StatusOK {
		t.Fatalf("the right secret a minute later: %d %q %q, want tokens", tok.status, tok.Error, tok.Description)
	}

	for i := range 15 {
		if tok := e.clientCredentials(t, generated.ClientID, fmt.Sprintf("guess %d", i)); tok.status != http.StatusUnauthorized {
			t.Fatalf("wrong generated secret %d: %d, want 401", i+1, tok.status)
		}
	}
	if tok := e.clientCredentials(t, generated.ClientID, generated.ClientSecret); tok.status != http.StatusOK {
		t.Fatalf("a generated secret after 15 wrong ones: %d %q, want tokens: generated secrets are not throttled", tok.status, tok.Error)
	}
}

// TestSignInRenewsSession: every sign-in issues a new session id and ends
// the one the browser came with, so an id someone planted in the browser,
// or saw before the sign-in, is worth nothing after it. Before, the old
// id kept working after a second sign-in.
func TestSignInRenewsSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	client := e.confidential(t, "client_secret_basic")
	alice := e.createUser(t, "alice")
	mallory := e.createUser(t, "mallory")
	target := authorizeURL(e.issuer, codeParams(client, "contacts"))
	u, err := url.Parse(e.issuer)
	if err != nil {
		t.Fatal(err)
	}

	// Mallory signs in and plants her session cookie in alice's browser.
	mb := newBrowser(t)
	mb.login(mb.get(target), "mallory", testPassword)
	planted := findCookieInJar(t, mb, e.issuer, "authz_session")
	b := newBrowser(t)
	b.c.Jar.SetCookies(u, []*http.Cookie{{Name: "authz_session", Value: planted.Value, Path: "/"}})

	params := codeParams(client, "contacts")
	params["prompt"] = "login"
	res := b.login(b.get(authorizeURL(e.issuer, params)), "alice", testPassword)
	if !isConsentPage(res) {
		t.Fatalf("alice's sign-in: %d\n%s", res.status, res.body)
	}
	first := findCookie(res.header, "authz_session")
	if first == nil || first.Value == planted.Value {
		t.Fatalf("alice's sign-in kept the planted session id: %v", first)
	}
	if _, err := e.store.LoginSession(t.Context(), planted.Value); err == nil {
		t.Errorf("the planted session still works after alice signed in over it")
	}
	if n := sessions(t, e, mallory.ID); n != 0 {
		t.Errorf("mallory has %d sessions, want the planted one ended", n)
	}

	// Signing in again (prompt=login) renews the id once more.
	res = b.login(b.get(authorizeURL(e.issuer, params)), "alice", testPassword)
	second := findCookie(res.header, "authz_session")
	if !isConsentPage(res) || second == nil || second.Value == first.Value {
		t.Fatalf("second sign-in: %d, cookie %v; want the consent page and a new id", res.status, second)
	}
	if _, err := e.store.LoginSession(t.Context(), first.Value); err == nil {
		t.Errorf("the previous session id still works after a second sign-in")
	}
	if n := sessions(t, e, alice.ID); n != 1 {
		t.Errorf("alice has %d sessions after signing in twice in one browser, want 1", n)
	}
	old := newBrowser(t)
	old.c.Jar.SetCookies(u, []*http.Cookie{{Name: "authz_session", Value: first.Value, Path: "/"}})
	if p := old.get(target); !isLoginPage(p) {
		t.Errorf("a browser with the previous session id: %d, want the login page", p.status)
	}
}
