package authz_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authz/authz/authz"
)

const (
	parVerifier = "pushed-verifier-0123456789-0123456789-0123456789"
	parCallback = "https://app.example.com/callback"
)

func parChallenge() string {
	sum := sha256.Sum256([]byte(parVerifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// parClient registers a confidential sign-in client for two APIs.
func parClient(t *testing.T, e *env, requirePAR bool) authz.ClientMetadata {
	return e.createClient(t, authz.ClientMetadata{
		ClientName:                         "Contacts BFF",
		RedirectURIs:                       []string{parCallback},
		Scope:                              "openid profile contacts",
		Audience:                           []string{contactsAPI, calendarAPI},
		TokenEndpointAuthMethod:            "client_secret_basic",
		RequirePushedAuthorizationRequests: requirePAR,
	})
}

// parForm is a code flow request with PKCE, a nonce and a resource.
func parForm() url.Values {
	return url.Values{
		"response_type": {"code"}, "scope": {"openid contacts"}, "redirect_uri": {parCallback},
		"state": {"pushed-state"}, "nonce": {"pushed-nonce"}, "resource": {contactsAPI},
		"code_challenge": {parChallenge()}, "code_challenge_method": {"S256"},
	}
}

// parAnswer is POST /oauth2/par's JSON, success or error.
type parAnswer struct {
	RequestURI  string `json:"request_uri"`
	ExpiresIn   int    `json:"expires_in"`
	Error       string `json:"error"`
	Description string `json:"error_description"`
	status      int
	header      http.Header
	body        string
}

func pushAuthorization(t *testing.T, e *env, form url.Values, id, secret string) parAnswer {
	t.Helper()
	resp, body := postForm(t, e.url("/oauth2/par"), form, id, secret)
	var a parAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("PAR answer %d is not JSON: %s", resp.StatusCode, body)
	}
	a.status, a.header, a.body = resp.StatusCode, resp.Header, string(body)
	return a
}

// pushed pushes form for c, authenticated with its secret if it has one,
// and returns the request_uri.
func pushed(t *testing.T, e *env, c authz.ClientMetadata, form url.Values) string {
	t.Helper()
	id := c.ClientID
	if c.ClientSecret == "" {
		id = "" // a public client names itself in the form
	}
	a := pushAuthorization(t, e, form, id, c.ClientSecret)
	if a.status != http.StatusCreated || a.RequestURI == "" {
		t.Fatalf("push: %d %s", a.status, a.body)
	}
	return a.RequestURI
}

func parAuthorizeURL(e *env, clientID, requestURI string, extra url.Values) string {
	q := url.Values{"client_id": {clientID}, "request_uri": {requestURI}}
	for k, v := range extra {
		q[k] = v
	}
	return e.url("/oauth2/authorize?") + q.Encode()
}

// TestPARCodeFlow: a pushed request completes the code flow through the
// login and consent pages; the token carries what was pushed, not what
// the authorize URL said; the request_uri is then spent.
func TestPARCodeFlow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := parClient(t, e, false)
	rs := e.resourceServer(t)
	e.createUser(t, "alice")

	a := pushAuthorization(t, e, parForm(), c.ClientID, c.ClientSecret)
	if a.status != http.StatusCreated || !strings.HasPrefix(a.RequestURI, "urn:ietf:params:oauth:request_uri:") ||
		len(a.RequestURI) < len("urn:ietf:params:oauth:request_uri:")+32 || a.ExpiresIn != 60 {
		t.Fatalf("push = %d %s; want 201 with a request_uri and expires_in 60", a.status, a.body)
	}
	if cc := a.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}

	// Parameters on the URL other than client_id and request_uri are
	// ignored (RFC 9126 4): prompt=none would end the flow at once, the
	// scope and state would change the grant and the answer.
	b := newBrowser(t)
	ignored := url.Values{"prompt": {"none"}, "scope": {"openid profile contacts"}, "state": {"evil"}, "redirect_uri": {"https://evil.example/cb"}}
	p := b.get(parAuthorizeURL(e, c.ClientID, a.RequestURI, ignored))
	p = b.login(p, "alice", testPassword)
	if !isConsentPage(p) {
		t.Fatalf("want the consent page, got %d:\n%s", p.status, p.body)
	}
	hidden := p.form(t).values
	if hidden.Get("request_uri") != a.RequestURI || hidden.Has("scope") || hidden.Has("redirect_uri") || hidden.Has("code_challenge") {
		t.Fatalf("the consent form carries %v; want client_id and request_uri, not the parameters", hidden)
	}
	if strings.Contains(p.body, "profile") && !strings.Contains(parForm().Get("scope"), "profile") {
		t.Errorf("the consent page asks for profile, which was not pushed")
	}
	loc := b.consent(p, "allow")
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != parCallback || loc.Query().Get("state") != "pushed-state" {
		t.Fatalf("redirect %s; want the pushed redirect_uri and state", loc)
	}

	// Without the verifier the code is refused (PKCE came from the push).
	tr, raw := exchangeCode(t, e, c, loc, url.Values{"code_verifier": {parVerifier}})
	if tr.status != http.StatusOK {
		t.Fatalf("exchange: %d %s %s", tr.status, tr.Error, tr.Description)
	}
	if tr.Scope != "openid contacts" {
		t.Errorf("scope %q, want the pushed openid contacts", tr.Scope)
	}
	if idt, _ := raw["id_token"].(string); !strings.Contains(decodeJWTPayload(t, idt), `"nonce":"pushed-nonce"`) {
		t.Errorf("the ID token lacks the pushed nonce")
	}
	info := e.introspect(t, tr.AccessToken, rs.ClientID, rs.ClientSecret)
	aud, _ := json.Marshal(info["aud"])
	if info["active"] != true || string(aud) != `["`+contactsAPI+`"]` {
		t.Errorf("introspection %v; want active with aud [%s] (the pushed resource)", info, contactsAPI)
	}

	// Spent: neither this browser nor another may use it again.
	wantErrorPage(t, b.get(parAuthorizeURL(e, c.ClientID, a.RequestURI, nil)), http.StatusBadRequest, "invalid_request")
	wantErrorPage(t, newBrowser(t).get(parAuthorizeURL(e, c.ClientID, a.RequestURI, nil)), http.StatusBadRequest, "invalid_request")
}

func decodeJWTPayload(t *testing.T, jwt string) string {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", jwt)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPARConcurrentUse: two browsers open one request_uri at once; one
// gets the login page, the other our error page.
func TestPARConcurrentUse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := parClient(t, e, false)
	uri := pushed(t, e, c, parForm())
	pages := make([]*page, 2)
	var wg sync.WaitGroup
	for i := range pages {
		b := newBrowser(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := b.c.Get(parAuthorizeURL(e, c.ClientID, uri, nil))
			if err != nil {
				t.Error(err)
				return
			}
			pages[i] = readPage(t, resp)
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	logins := 0
	for _, p := range pages {
		switch {
		case isLoginPage(p):
			logins++
		default:
			wantErrorPage(t, p, http.StatusBadRequest, "invalid_request")
		}
	}
	if logins != 1 {
		t.Fatalf("%d browsers got the login page, want exactly 1", logins)
	}
}

// TestPARExpiry: a request_uri not used within its lifespan is refused,
// and the janitor deletes it.
func TestPARExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := parClient(t, e, false)
	uri := pushed(t, e, c, parForm())
	e.clock.Advance(61 * time.Second)
	wantErrorPage(t, newBrowser(t).get(parAuthorizeURL(e, c.ClientID, uri, nil)), http.StatusBadRequest, "invalid_request")
	deleted, err := e.store.DeleteExpired(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if deleted["pushed_authorization_requests"] != 1 {
		t.Fatalf("janitor deleted %v, want the one pushed request", deleted)
	}
}

// TestPARClientMismatch: a request_uri is only good with the client_id
// that pushed it; an unknown one is refused as well, on our page.
func TestPARClientMismatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := parClient(t, e, false)
	other := parClient(t, e, false)
	uri := pushed(t, e, c, parForm())
	b := newBrowser(t)
	wantErrorPage(t, b.get(parAuthorizeURL(e, other.ClientID, uri, nil)), http.StatusBadRequest, "invalid_request")
	wantErrorPage(t, b.get(parAuthorizeURL(e, c.ClientID, uri+"x", nil)), http.StatusBadRequest, "invalid_request")
	wantErrorPage(t, b.get(parAuthorizeURL(e, c.ClientID, "https://app.example.com/request.jwt", nil)), http.StatusBadRequest, "invalid_request")
	wantErrorPage(t, b.get(e.url("/oauth2/authorize?")+url.Values{"request_uri": {uri}}.Encode()), http.StatusBadRequest, "invalid_request")
	// The failed attempts did not spend it.
	if p := b.get(parAuthorizeURL(e, c.ClientID, uri, nil)); !isLoginPage(p) {
		t.Fatalf("the right client_id: want the login page, got %d:\n%s", p.status, p.body)
	}
}

// TestPARRequiredByClient: a client registered with
// require_pushed_authorization_requests gets no code without a pushed
// request, neither through a link nor through a crafted form post, and a
// post cannot change what was pushed.
func TestPARRequiredByClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := parClient(t, e, true)
	e.createUser(t, "alice")
	direct := parForm()
	direct.Set("client_id", c.ClientID)
	b := newBrowser(t)
	wantErrorPage(t, b.get(e.url("/oauth2/authorize?")+direct.Encode()), http.StatusBadRequest, "invalid_request")

	// Signed in through a pushed request, at the consent page, with a
	// valid CSRF token and login proof: a post of the whole request
	// without the request_uri is refused...
	uri := pushed(t, e, c, parForm())
	p := b.login(b.get(parAuthorizeURL(e, c.ClientID, uri, nil)), "alice", testPassword)
	if !isConsentPage(p) {
		t.Fatalf("want the consent page, got %d:\n%s", p.status, p.body)
	}
	f := p.form(t)
	crafted := url.Values{}
	for k, v := range direct {
		crafted[k] = v
	}
	crafted.Set("scope", "openid profile contacts")
	for _, k := range []string{"csrf_token", "login_proof"} {
		crafted.Set(k, f.values.Get(k))
	}
	crafted.Set("action", "allow")
	wantErrorPage(t, b.post(e.url("/oauth2/authorize"), crafted), http.StatusBadRequest, "invalid_request")

	// ...and with it, what the post adds is ignored: the code is for
	// what was pushed.
	crafted.Set("request_uri", uri)
	loc := b.post(e.url("/oauth2/authorize"), crafted).location(t)
	if loc.Query().Get("state") != "pushed-state" || loc.Query().Get("code") == "" {
		t.Fatalf("redirect %s; want a code with the pushed state", loc)
	}
	tr, _ := exchangeCode(t, e, c, loc, url.Values{"code_verifier": {parVerifier}})
	if tr.status != http.StatusOK || tr.Scope != "openid contacts" {
		t.Fatalf("exchange: %d %q %s; want the pushed scope openid contacts", tr.status, tr.Scope, tr.Description)
	}

	// Another client of the same server is not affected.
	plain := parClient(t, e, false)
	direct.Set("client_id", plain.ClientID)
	if p := newBrowser(t).get(e.url("/oauth2/authorize?") + direct.Encode()); !isLoginPage(p) {
		t.Fatalf("a client without the requirement: want the login page, got %d:\n%s", p.status, p.body)
	}
}

// TestPARRequiredForAll: AUTHZ_REQUIRE_PAR refuses every front-channel
// request, says so in discovery, and lets pushed requests through, with
// their prompt honoured.
func TestPARRequiredForAll(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *authz.Config) { c.RequirePAR = true })
	c := parClient(t, e, false)
	e.createUser(t, "alice")
	direct := parForm()
	direct.Set("client_id", c.ClientID)
	b := newBrowser(t)
	wantErrorPage(t, b.get(e.url("/oauth2/authorize?")+direct.Encode()), http.StatusBadRequest, "invalid_request")
	direct.Set("action", "login")
	wantErrorPage(t, b.post(e.url("/oauth2/authorize"), direct), http.StatusBadRequest, "invalid_request")

	doc := discovery(t, e)
	if doc["require_pushed_authorization_requests"] != true {
		t.Errorf("discovery require_pushed_authorization_requests = %v, want true", doc["require_pushed_authorization_requests"])
	}

	p := b.get(parAuthorizeURL(e, c.ClientID, pushed(t, e, c, parForm()), nil))
	p = b.login(p, "alice", testPassword)
	if loc := b.consent(p, "allow"); loc.Query().Get("code") == "" {
		t.Fatalf("no code in %s", loc)
	}
	// Signed in now; a pushed prompt=login still asks again.
	again := parForm()
	again.Set("prompt", "login")
	if p := b.get(parAuthorizeURL(e, c.ClientID, pushed(t, e, c, again), nil)); !isLoginPage(p) {
		t.Fatalf("pushed prompt=login: want the login page, got %d:\n%s", p.status, p.body)
	}
}

func discovery(t *testing.T, e *env) map[string]any {
	t.Helper()
	resp, err := http.Get(e.url("/.well-known/openid-configuration"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// TestPARDiscovery: the endpoint is advertised; PAR is not required by
// default.
func TestPARDiscovery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	doc := discovery(t, e)
	if doc["pushed_authorization_request_endpoint"] != e.url("/oauth2/par") || doc["require_pushed_authorization_requests"] != false {
		t.Fatalf("discovery: endpoint %v, required %v", doc["pushed_authorization_request_endpoint"], doc["require_pushed_authorization_requests"])
	}
}

// TestPARClientAuthentication: a confidential client authenticates as at
// the token endpoint (client_secret_basic, private_key_jwt with the PAR
// endpoint as audience); a public client names itself and needs PKCE.
func TestPARClientAuthentication(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := parClient(t, e, false)
	key := newECKey(t, "k1")
	kc := e.createClient(t, authz.ClientMetadata{
		ClientName:                  "Signed BFF",
		RedirectURIs:                []string{parCallback},
		Scope:                       "openid contacts",
		Audience:                    []string{contactsAPI},
		TokenEndpointAuthMethod:     "private_key_jwt",
		JWKS:                        publicJWKS(t, key),
		TokenEndpointAuthSigningAlg: string(key.alg),
	})
	pub := e.createClient(t, authzPublicClient())
	withID := func(id string, f url.Values) url.Values {
		f.Set("client_id", id)
		return f
	}
	withAssertion := func(aud string) url.Values {
		f := withID(kc.ClientID, parForm())
		f.Set("client_assertion_type", jwtBearer)
		f.Set("client_assertion", key.sign(t, assertionClaims(kc.ClientID, aud)))
		return f
	}
	publicForm := func(pkce bool) url.Values {
		f := withID(pub.ClientID, parForm())
		f.Set("redirect_uri", "http://127.0.0.1:5173/callback")
		f.Del("resource")
		if !pkce {
			f.Del("code_challenge")
			f.Del("code_challenge_method")
		}
		return f
	}
	for _, tc := range []struct {
		name       string
		form       url.Values
		id, secret string
		status     int
		error      string
	}{
		{"basic", parForm(), c.ClientID, c.ClientSecret, http.StatusCreated, ""},
		{"client_secret_post is not registered", withID(c.ClientID, url.Values{"client_secret": {c.ClientSecret}}), "", "", http.StatusUnauthorized, "invalid_client"},
		{"no credentials", withID(c.ClientID, parForm()), "", "", http.StatusUnauthorized, "invalid_client"},
		{"wrong secret", parForm(), c.ClientID, "wrong", http.StatusUnauthorized, "invalid_client"},
		{"unknown client", parForm(), "nobody", "x", http.StatusUnauthorized, "invalid_client"},
		{"private_key_jwt for the PAR endpoint", withAssertion(e.url("/oauth2/par")), "", "", http.StatusCreated, ""},
		{"private_key_jwt for the issuer", withAssertion(e.issuer), "", "", http.StatusCreated, ""},
		{"private_key_jwt for someone else", withAssertion("https://elsewhere.example"), "", "", http.StatusUnauthorized, "invalid_client"},
		{"public client with PKCE", publicForm(true), "", "", http.StatusCreated, ""},
		{"public client without PKCE", publicForm(false), "", "", http.StatusBadRequest, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := pushAuthorization(t, e, tc.form, tc.id, tc.secret)
			if a.status != tc.status || a.Error != tc.error {
				t.Fatalf("push = %d %s; want %d %q", a.status, a.body, tc.status, tc.error)
			}
			if tc.status == http.StatusUnauthorized && a.header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
		})
	}
	// What was stored holds no client credentials.
	var leaked int
	if err := e.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM pushed_authorization_requests WHERE form ? 'client_assertion' OR form ? 'client_secret'`).Scan(&leaked); err != nil || leaked != 0 {
		t.Fatalf("%d stored pushed requests hold client credentials (%v)", leaked, err)
	}
}

// TestPARInvalidRequests: what /oauth2/authorize would refuse before
// sign-in is refused at the push, with the RFC error and never a 5xx.
func TestPARInvalidRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := parClient(t, e, false)
	with := func(k string, v ...string) url.Values {
		f := parForm()
		if len(v) == 0 {
			f.Del(k)
		} else {
			f[k] = v
		}
		return f
	}
	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		error  string
	}{
		{"request_uri inside", with("request_uri", "urn:ietf:params:oauth:request_uri:abc"), 400, "invalid_request"},
		{"scope twice", with("scope", "openid", "contacts"), 400, "invalid_request"},
		{"unregistered redirect_uri", with("redirect_uri", "https://evil.example/cb"), 400, "invalid_request"},
		{"scope not registered", with("scope", "openid admin"), 400, "invalid_scope"},
		{"resource not registered", with("resource", "https://other.example/api"), 400, "invalid_target"},
		{"resource with fragment", with("resource", contactsAPI+"#x"), 400, "invalid_target"},
		{"unknown prompt", with("prompt", "sometimes"), 400, "invalid_request"},
		{"prompt none with login", with("prompt", "none login"), 400, "invalid_request"},
		{"plain PKCE", with("code_challenge_method", "plain"), 400, "invalid_request"},
		{"no response_type", with("response_type"), 400, "unsupported_response_type"},
		{"response_type token not registered", with("response_type", "token"), 400, "unsupported_response_type"},
		{"no redirect_uri with openid", with("redirect_uri"), 400, "invalid_request"},
		{"nul in scope", with("scope", "openid\x00"), 400, "invalid_request"},
		{"nul in state", with("state", "a\x00b"), 400, "invalid_request"},
		{"nul in an unknown parameter", with("foo", "\x00"), 400, "invalid_request"},
		{"invalid UTF-8", with("state", "\xff\xfe"), 400, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := pushAuthorization(t, e, tc.form, c.ClientID, c.ClientSecret)
			if a.status != tc.status || a.Error != tc.error {
				t.Fatalf("push = %d %s; want %d %q", a.status, a.body, tc.status, tc.error)
			}
		})
	}
	resp, err := http.Get(e.url("/oauth2/par"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /oauth2/par = %d, want 405", resp.StatusCode)
	}
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM pushed_authorization_requests`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d refused requests were stored (%v)", n, err)
	}
}

// TestPARRegistration: a client may require PAR of itself at dynamic
// registration; the server holds it to that.
func TestPARRegistration(t *testing.T) {
	t.Parallel()
	e := dcrEnv(t, authz.RegistrationOpen)
	md := dcrWebApp()
	md["require_pushed_authorization_requests"] = true
	m := e.dcrRegister(t, "", md)
	if !m.RequirePushedAuthorizationRequests {
		t.Fatalf("registered %+v; want require_pushed_authorization_requests", m)
	}
	q := url.Values{"response_type": {"code"}, "client_id": {m.ClientID}, "scope": {"openid"},
		"redirect_uri": {appCallback}, "state": {"state-123"}}
	wantErrorPage(t, newBrowser(t).get(e.url("/oauth2/authorize?")+q.Encode()), http.StatusBadRequest, "invalid_request")
}

// TestPARPublicClientWithoutState: a public client pushes a PKCE request
// without state (OAuth 2.1 allows it) and completes the flow; the answer
// carries no state.
func TestPARPublicClientWithoutState(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pub := e.createClient(t, authzPublicClient())
	e.createUser(t, "alice")
	f := parForm()
	f.Set("client_id", pub.ClientID)
	f.Set("redirect_uri", "http://127.0.0.1:5173/callback")
	f.Del("state")
	f.Del("resource")
	uri := pushed(t, e, pub, f)
	b := newBrowser(t)
	p := b.login(b.get(parAuthorizeURL(e, pub.ClientID, uri, nil)), "alice", testPassword)
	loc := b.consent(p, "allow")
	if loc.Query().Has("state") || loc.Query().Get("code") == "" {
		t.Fatalf("redirect %s; want a code and no state", loc)
	}
	tr := e.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"redirect_uri": {"http://127.0.0.1:5173/callback"}, "client_id": {pub.ClientID}, "code_verifier": {parVerifier}}, "", "")
	if tr.status != http.StatusOK || tr.AccessToken == "" {
		t.Fatalf("exchange: %d %s %s", tr.status, tr.Error, tr.Description)
	}
}

// TestPARConfig: AUTHZ_PAR_LIFESPAN and AUTHZ_REQUIRE_PAR are read, and
// the lifespan is bounded.
func TestPARConfig(t *testing.T) {
	t.Parallel()
	env := map[string]string{"AUTHZ_PAR_LIFESPAN": "30s", "AUTHZ_REQUIRE_PAR": "true"}
	c, err := authz.ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	c.Secrets = [][]byte{[]byte("0123456789abcdef0123456789abcdef-one")}
	if c.PARLifespan != 30*time.Second || !c.RequirePAR || c.Validate() != nil {
		t.Fatalf("PARLifespan %s, RequirePAR %v, Validate %v", c.PARLifespan, c.RequirePAR, c.Validate())
	}
	for _, d := range []time.Duration{5 * time.Second, 11 * time.Minute, -time.Second} {
		c.PARLifespan = d
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "AUTHZ_PAR_LIFESPAN") {
			t.Errorf("AUTHZ_PAR_LIFESPAN %s: %v, want refused", d, err)
		}
	}
}

// TestPARLifespanConfigured: expires_in follows AUTHZ_PAR_LIFESPAN.
func TestPARLifespanConfigured(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *authz.Config) { c.PARLifespan = 2 * time.Minute })
	c := parClient(t, e, false)
	a := pushAuthorization(t, e, parForm(), c.ClientID, c.ClientSecret)
	if a.status != http.StatusCreated || a.ExpiresIn != 120 {
		t.Fatalf("push = %d %s; want expires_in 120", a.status, a.body)
	}
	e.clock.Advance(90 * time.Second)
	if p := newBrowser(t).get(parAuthorizeURL(e, c.ClientID, a.RequestURI, nil)); !isLoginPage(p) {
		t.Fatalf("after 90s of 120: want the login page, got %d:\n%s", p.status, p.body)
	}
}
