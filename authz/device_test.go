package authz_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/authz/authz/authz"
)

const deviceGrant = "urn:ietf:params:oauth:grant-type:device_code"

// deviceClient registers a command-line client for the device flow, public
// (client_id alone) or confidential (client_secret_basic).
func deviceClient(t *testing.T, e *env, public bool) authz.ClientMetadata {
	m := authz.ClientMetadata{
		ClientName:              "Contacts CLI",
		GrantTypes:              []string{deviceGrant, "refresh_token"},
		Scope:                   "openid profile contacts",
		Audience:                []string{"https://api.example.com"},
		TokenEndpointAuthMethod: "client_secret_basic",
	}
	if public {
		m.TokenEndpointAuthMethod = "none"
	}
	return e.createClient(t, m)
}

// deviceAuthAnswer is POST /oauth2/device/auth's JSON, success or error.
type deviceAuthAnswer struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
	Error                   string `json:"error"`
	Description             string `json:"error_description"`
	status                  int
}

// credentials puts a client's credentials on a form (public) or returns
// them for HTTP Basic.
func credentials(c authz.ClientMetadata, form url.Values) (id, secret string) {
	if c.TokenEndpointAuthMethod == "none" {
		form.Set("client_id", c.ClientID)
		return "", ""
	}
	return c.ClientID, c.ClientSecret
}

func (e *env) deviceAuth(t *testing.T, c authz.ClientMetadata, form url.Values) deviceAuthAnswer {
	t.Helper()
	id, secret := credentials(c, form)
	resp, body := postForm(t, e.url("/oauth2/device/auth"), form, id, secret)
	var out deviceAuthAnswer
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("device auth answer %d is not JSON: %v\n%s", resp.StatusCode, err, body)
	}
	out.status = resp.StatusCode
	return out
}

func (e *env) devicePoll(t *testing.T, c authz.ClientMetadata, deviceCode string) tokenResponse {
	t.Helper()
	form := url.Values{"grant_type": {deviceGrant}, "device_code": {deviceCode}}
	id, secret := credentials(c, form)
	return e.token(t, form, id, secret)
}

// openDevicePage opens verification_uri_complete and submits the
// prefilled code: the answer is the login page or the confirmation.
func openDevicePage(t *testing.T, b *browser, da deviceAuthAnswer) *page {
	t.Helper()
	p := b.get(da.VerificationURIComplete)
	f := p.form(t)
	if got := f.values.Get("user_code"); got != da.UserCode {
		t.Fatalf("the code field holds %q, want %q prefilled", got, da.UserCode)
	}
	return b.submit(p, f, map[string]string{"action": "code"})
}

// decideDevice goes through the pages (signing in as alice when asked)
// and presses Allow or Deny; it returns the final page.
func decideDevice(t *testing.T, b *browser, da deviceAuthAnswer, decision string) *page {
	t.Helper()
	p := openDevicePage(t, b, da)
	if isLoginPage(p) {
		p = b.login(p, "alice", testPassword)
	}
	if !strings.Contains(p.body, da.UserCode) {
		t.Fatalf("the confirmation page does not show the code %s to compare:\n%s", da.UserCode, p.body)
	}
	done := b.get(b.consentLocation(p, decision).String())
	if done.status != http.StatusOK || !strings.Contains(done.body, "return to your device") {
		t.Fatalf("final page %d:\n%s", done.status, done.body)
	}
	return done
}

// consentLocation presses decision on a confirmation page and returns
// where it redirects.
func (b *browser) consentLocation(p *page, decision string) *url.URL {
	b.t.Helper()
	if p.status != http.StatusOK || !strings.Contains(p.body, `value="allow"`) {
		b.t.Fatalf("want the device confirmation page, got %d:\n%s", p.status, p.body)
	}
	return b.submit(p, p.form(b.t), map[string]string{"action": decision}).location(b.t)
}

var userCodeFormat = regexp.MustCompile(`^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$`)

// TestDeviceFlow: the whole device flow for a public and a confidential
// client: the device request, polling (pending, then slow_down when too
// fast), sign-in and approval through the pages, tokens (access, refresh,
// ID token), one redemption, a working refresh, and remembered consent
// still asking to confirm the code.
func TestDeviceFlow(t *testing.T) {
	t.Parallel()
	for _, public := range []bool{true, false} {
		name := "confidential"
		if public {
			name = "public"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			cli := deviceClient(t, e, public)
			alice := e.createUser(t, "alice")
			rs := e.resourceServer(t)

			var disc map[string]any
			resp, err := http.Get(e.url("/.well-known/openid-configuration"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.NewDecoder(resp.Body).Decode(&disc); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if disc["device_authorization_endpoint"] != e.url("/oauth2/device/auth") {
				t.Errorf("discovery device_authorization_endpoint = %v", disc["device_authorization_endpoint"])
			}
			if gts, _ := disc["grant_types_supported"].([]any); !slices.Contains(gts, any(deviceGrant)) {
				t.Errorf("grant_types_supported %v lacks the device grant", gts)
			}

			da := e.deviceAuth(t, cli, url.Values{"scope": {"openid profile contacts"}, "resource": {"https://api.example.com"}})
			if da.status != http.StatusOK || da.DeviceCode == "" || !userCodeFormat.MatchString(da.UserCode) ||
				da.VerificationURI != e.url("/device") || da.ExpiresIn != 600 || da.Interval != 5 ||
				da.VerificationURIComplete != e.url("/device")+"?user_code="+da.UserCode {
				t.Fatalf("device auth = %+v", da)
			}

			b := newBrowser(t)
			p := openDevicePage(t, b, da)
			if !isLoginPage(p) {
				t.Fatalf("want the login page for a person not signed in, got %d:\n%s", p.status, p.body)
			}
			// Signed in now, before the clock moves: fosite refuses an
			// ID token whose auth_time is ahead of the real clock.
			p = b.login(p, "alice", testPassword)
			for _, want := range []string{"Contacts CLI", da.UserCode, "See your name and username"} {
				if !strings.Contains(p.body, want) {
					t.Errorf("confirmation page lacks %q:\n%s", want, p.body)
				}
			}
			if tr := e.devicePoll(t, cli, da.DeviceCode); tr.status != http.StatusBadRequest || tr.Error != "authorization_pending" {
				t.Fatalf("first poll: %d %s %s", tr.status, tr.Error, tr.Description)
			}
			if tr := e.devicePoll(t, cli, da.DeviceCode); tr.status != http.StatusBadRequest || tr.Error != "slow_down" || !strings.Contains(tr.Description, "10 seconds") {
				t.Fatalf("second poll at once: %d %s %s; want slow_down to 10 seconds", tr.status, tr.Error, tr.Description)
			}
			e.clock.Advance(6 * time.Second) // more than 5 s, less than the 10 s now asked
			if tr := e.devicePoll(t, cli, da.DeviceCode); tr.Error != "slow_down" || !strings.Contains(tr.Description, "15 seconds") {
				t.Fatalf("poll after 6 s: %d %s %s; want slow_down to 15 seconds", tr.status, tr.Error, tr.Description)
			}
			e.clock.Advance(15 * time.Second)
			if tr := e.devicePoll(t, cli, da.DeviceCode); tr.Error != "authorization_pending" {
				t.Fatalf("poll after the interval: %d %s %s", tr.status, tr.Error, tr.Description)
			}

			// Signed in already: the session is honoured, the code confirmed.
			p = openDevicePage(t, b, da)
			loc := b.consentLocation(p, "allow")
			if done := b.get(loc.String()); !strings.Contains(done.body, "return to your device") {
				t.Fatalf("done page:\n%s", done.body)
			}

			e.clock.Advance(15 * time.Second)
			tr := e.devicePoll(t, cli, da.DeviceCode)
			if tr.status != http.StatusOK || tr.AccessToken == "" || tr.RefreshToken == "" || tr.Scope != "openid profile contacts" {
				t.Fatalf("poll after approval: %+v", tr)
			}
			var raw map[string]any
			again, againID, againSecret := deviceCreds(cli, url.Values{"grant_type": {deviceGrant}, "device_code": {da.DeviceCode}})
			_, body := postForm(t, e.url("/oauth2/token"), again, againID, againSecret)
			_ = json.Unmarshal(body, &raw)
			if raw["error"] != "invalid_grant" {
				t.Fatalf("second redemption: %s", body)
			}
			info := e.introspect(t, tr.AccessToken, rs.ClientID, rs.ClientSecret)
			if info["active"] != true || info["sub"] != alice.ID || info["client_id"] != cli.ClientID {
				t.Fatalf("introspection: %v", info)
			}
			if aud, _ := info["aud"].([]any); len(aud) != 1 || aud[0] != "https://api.example.com" {
				t.Errorf("aud = %v, want the resource asked for", info["aud"])
			}

			// Refresh works, and the ID token came with the first answer.
			form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}}
			id, secret := credentials(cli, form)
			resp2, body2 := postForm(t, e.url("/oauth2/token"), form, id, secret)
			if resp2.StatusCode != http.StatusOK || !strings.Contains(string(body2), `"id_token"`) {
				t.Fatalf("refresh: %d %s", resp2.StatusCode, body2)
			}

			// A second device request: remembered consent, but the code
			// must still be confirmed.
			da2 := e.deviceAuth(t, cli, url.Values{"scope": {"openid profile"}})
			p = openDevicePage(t, b, da2)
			if isLoginPage(p) || !strings.Contains(p.body, ">Confirm<") || !strings.Contains(p.body, da2.UserCode) {
				t.Fatalf("remembered consent: want the code confirmation, got %d:\n%s", p.status, p.body)
			}
		})
	}
}

// deviceCreds adds a client's credentials to form and returns postForm's
// last three arguments.
func deviceCreds(c authz.ClientMetadata, form url.Values) (url.Values, string, string) {
	id, secret := credentials(c, form)
	return form, id, secret
}

// TestDeviceIDToken: the ID token is signed for the client, names the
// person who approved, and has no nonce.
func TestDeviceIDToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cli := deviceClient(t, e, true)
	alice := e.createUser(t, "alice")
	da := e.deviceAuth(t, cli, url.Values{"scope": {"openid"}})
	decideDevice(t, newBrowser(t), da, "allow")
	form, id, secret := deviceCreds(cli, url.Values{"grant_type": {deviceGrant}, "device_code": {da.DeviceCode}, "prompt": {"none"}, "max_age": {"1"}})
	resp, body := postForm(t, e.url("/oauth2/token"), form, id, secret)
	var out struct {
		IDToken string `json:"id_token"`
	}
	if err := json.Unmarshal(body, &out); err != nil || resp.StatusCode != http.StatusOK || out.IDToken == "" {
		t.Fatalf("token: %d %s", resp.StatusCode, body)
	}
	parts := strings.Split(out.IDToken, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	_ = json.Unmarshal(payload, &claims)
	if claims["sub"] != alice.ID || claims["iss"] != e.issuer || claims["nonce"] != nil || claims["aud"] == nil {
		t.Fatalf("ID token claims %v", claims)
	}
}

// TestDeviceCodeRedeemedOnce: concurrent polls of an approved device code:
// exactly one gets tokens, every other invalid_grant, none a 5xx.
func TestDeviceCodeRedeemedOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cli := deviceClient(t, e, false)
	e.createUser(t, "alice")
	da := e.deviceAuth(t, cli, url.Values{"scope": {"openid contacts"}})
	decideDevice(t, newBrowser(t), da, "allow")

	const n = 8
	statuses := make([]int, n)
	errs := make([]string, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			form := url.Values{"grant_type": {deviceGrant}, "device_code": {da.DeviceCode}}
			req, _ := http.NewRequest(http.MethodPost, e.url("/oauth2/token"), strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(url.QueryEscape(cli.ClientID), url.QueryEscape(cli.ClientSecret))
			<-start
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs[i] = err.Error()
				return
			}
			defer resp.Body.Close()
			var out tokenResponse
			_ = json.NewDecoder(resp.Body).Decode(&out)
			statuses[i], errs[i] = resp.StatusCode, out.Error
		}()
	}
	close(start)
	wg.Wait()
	won := 0
	for i := range n {
		switch {
		case statuses[i] == http.StatusOK:
			won++
		case statuses[i] == http.StatusBadRequest && errs[i] == "invalid_grant":
		default:
			t.Errorf("poll %d: %d %s", i, statuses[i], errs[i])
		}
	}
	if won != 1 {
		t.Fatalf("%d polls got tokens, want exactly 1", won)
	}
}

// TestDeviceDeniedAndExpired: a denied request polls access_denied; one
// left past its lifespan polls expired_token and its code no longer
// opens the page.
func TestDeviceDeniedAndExpired(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cli := deviceClient(t, e, true)
	e.createUser(t, "alice")
	b := newBrowser(t)

	denied := e.deviceAuth(t, cli, url.Values{"scope": {"openid"}})
	done := decideDevice(t, b, denied, "deny")
	if !strings.Contains(done.body, "denied") {
		t.Errorf("done page after deny:\n%s", done.body)
	}
	if tr := e.devicePoll(t, cli, denied.DeviceCode); tr.status != http.StatusBadRequest || tr.Error != "access_denied" {
		t.Fatalf("denied: %d %s", tr.status, tr.Error)
	}

	late := e.deviceAuth(t, cli, url.Values{"scope": {"openid"}})
	e.clock.Advance(10*time.Minute + time.Second)
	if tr := e.devicePoll(t, cli, late.DeviceCode); tr.status != http.StatusBadRequest || tr.Error != "expired_token" {
		t.Fatalf("expired: %d %s", tr.status, tr.Error)
	}
	if p := openDevicePage(t, b, late); !strings.Contains(p.body, "not valid or has expired") {
		t.Fatalf("expired code on the page: %d\n%s", p.status, p.body)
	}
}

// TestDeviceUserCodeThrottled: wrong user codes count against the client
// address; past the free ones even the right code waits, until the delay
// has passed.
func TestDeviceUserCodeThrottled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cli := deviceClient(t, e, true)
	e.createUser(t, "alice")
	da := e.deviceAuth(t, cli, url.Values{"scope": {"openid"}})
	b := newBrowser(t)
	p := b.get(e.url("/device"))
	for i := range 5 {
		got := b.submit(p, p.form(t), map[string]string{"action": "code", "user_code": "bcdf-ghjk"})
		if got.status != http.StatusOK || !strings.Contains(got.body, "not valid or has expired") {
			t.Fatalf("wrong code %d: %d\n%s", i+1, got.status, got.body)
		}
	}
	got := b.submit(p, p.form(t), map[string]string{"action": "code", "user_code": da.UserCode})
	if got.status != http.StatusTooManyRequests || got.header.Get("Retry-After") == "" || isLoginPage(got) {
		t.Fatalf("right code after 5 wrong ones: %d\n%s", got.status, got.body)
	}
	e.clock.Advance(2 * time.Second)
	// Lower case, no dash: the code is read as the person types it.
	got = b.submit(p, p.form(t), map[string]string{"action": "code", "user_code": strings.ToLower(strings.ReplaceAll(da.UserCode, "-", " "))})
	if !isLoginPage(got) {
		t.Fatalf("right code after the delay: %d\n%s", got.status, got.body)
	}
}

// TestDeviceRequestRefused: what the device authorization endpoint and the
// token endpoint refuse, with the RFC's error.
func TestDeviceRequestRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cli := deviceClient(t, e, false)
	web := e.confidential(t, "client_secret_basic") // no device grant
	for _, tc := range []struct {
		name   string
		client authz.ClientMetadata
		form   url.Values
		secret string
		status int
		error  string
	}{
		{"client without the grant", web, url.Values{"scope": {"openid"}}, "", http.StatusBadRequest, "unauthorized_client"},
		{"wrong secret", cli, url.Values{}, "wrong", http.StatusUnauthorized, "invalid_client"},
		{"scope not registered", cli, url.Values{"scope": {"openid admin"}}, "", http.StatusBadRequest, "invalid_scope"},
		{"resource not registered", cli, url.Values{"resource": {"https://other.example.com"}}, "", http.StatusBadRequest, "invalid_target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.client
			if tc.secret != "" {
				c.ClientSecret = tc.secret
			}
			if da := e.deviceAuth(t, c, tc.form); da.status != tc.status || da.Error != tc.error {
				t.Fatalf("%d %s %s; want %d %s", da.status, da.Error, da.Description, tc.status, tc.error)
			}
		})
	}
	da := e.deviceAuth(t, cli, url.Values{})
	if tr := e.devicePoll(t, web, da.DeviceCode); tr.status != http.StatusBadRequest || tr.Error != "unauthorized_client" {
		t.Fatalf("poll by a client without the grant: %d %s", tr.status, tr.Error)
	}
	if tr := e.devicePoll(t, cli, "not-a-device-code"); tr.status != http.StatusBadRequest || tr.Error != "invalid_grant" {
		t.Fatalf("unknown device code: %d %s", tr.status, tr.Error)
	}
}

// TestDeviceOAuth2Library: golang.org/x/oauth2, written by nobody here,
// completes the device flow while the test approves through the pages.
func TestDeviceOAuth2Library(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cli := deviceClient(t, e, true)
	e.createUser(t, "alice")
	conf := &oauth2.Config{
		ClientID: cli.ClientID,
		Endpoint: oauth2.Endpoint{DeviceAuthURL: e.url("/oauth2/device/auth"), TokenURL: e.url("/oauth2/token"), AuthStyle: oauth2.AuthStyleInParams},
		Scopes:   []string{"openid", "contacts"},
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	resp, err := conf.DeviceAuth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resp.Interval = 1 // the library waits an interval of real time before each poll
	type result struct {
		tok *oauth2.Token
		err error
	}
	got := make(chan result, 1)
	go func() {
		tok, err := conf.DeviceAccessToken(ctx, resp)
		got <- result{tok, err}
	}()
	da := deviceAuthAnswer{DeviceCode: resp.DeviceCode, UserCode: resp.UserCode, VerificationURIComplete: resp.VerificationURIComplete}
	decideDevice(t, newBrowser(t), da, "allow")
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !r.tok.Valid() || r.tok.RefreshToken == "" || r.tok.Extra("id_token") == nil {
		t.Fatalf("token %+v", r.tok)
	}
}

// TestDeviceRegistrationGate: a self-registered client may take the device
// flow only when the operator allows it, since the confirmation page names
// the client as it named itself.
func TestDeviceRegistrationGate(t *testing.T) {
	t.Parallel()
	device := map[string]any{
		"client_name": "Some CLI", "scope": "openid", "token_endpoint_auth_method": "none",
		"grant_types": []string{"urn:ietf:params:oauth:grant-type:device_code"},
	}
	e := dcrEnv(t, authz.RegistrationOpen)
	wantRegError(t, e.dcrCall(t, http.MethodPost, "/oauth2/register", "", device), http.StatusBadRequest, "invalid_client_metadata", "AUTHZ_REGISTRATION_DEVICE")
	allowed := newEnv(t, func(c *authz.Config) { c.Registration, c.RegistrationDevice = authz.RegistrationOpen, true })
	if m := allowed.dcrRegister(t, "", device); !slices.Contains(m.GrantTypes, "urn:ietf:params:oauth:grant-type:device_code") {
		t.Errorf("registered device client: %+v", m)
	}
}
