package bff

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// jwtAudience is the aud of a JWT access token, read without verifying
// it (the API verifies).
func jwtAudience(t *testing.T, token string) []string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("the access token is not a JWT: %d parts", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Aud []string `json:"aud"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatalf("aud: %v", err)
	}
	return c.Aud
}

// tokenRequests records the forms posted to a token endpoint.
type tokenRequests struct {
	mu    sync.Mutex
	forms []url.Values
}

func (rec *tokenRequests) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/oauth2/token") {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		r.Body.Close()
		form, _ := url.ParseQuery(string(body))
		rec.mu.Lock()
		rec.forms = append(rec.forms, form)
		rec.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	return http.DefaultTransport.RoundTrip(r)
}

// resources is the resource values of the last request for grant.
func (rec *tokenRequests) resources(grant string) []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for i := len(rec.forms) - 1; i >= 0; i-- {
		if rec.forms[i].Get("grant_type") == grant {
			return rec.forms[i]["resource"]
		}
	}
	return nil
}

// With a Resource the BFF asks for it at sign-in, code exchange and
// refresh: every access token it gets is for the API only, which verifies
// it itself and shows the user's contacts, under her username although
// the token does not carry it.
func TestResource(t *testing.T) {
	t.Parallel()
	rec := &tokenRequests{}
	r := newJWTRig(t, func(c *Config) { c.HTTPClient = &http.Client{Transport: rec} })
	b := newBrowser(t)
	p := r.signIn(t, b)
	if table, _ := p.Text(t, "contacts"); !strings.HasPrefix(table, "Contacts of alice (Alice Liddell)") {
		t.Errorf("the contacts table's caption: %q", table)
	}
	sess := r.session(b)
	old, _ := sess.tokens()
	if aud := jwtAudience(t, old.AccessToken); len(aud) != 1 || aud[0] != r.api.URL {
		t.Fatalf("the signed-in access token's aud %v, want the API's %s only", aud, r.api.URL)
	}

	sess.mu.Lock()
	expired := *old
	expired.Expiry = time.Now().Add(-time.Minute)
	sess.token = &expired
	sess.mu.Unlock()
	p = b.Get(r.url + "/contacts")
	if _, ok := p.Text(t, "contacts"); p.Status != http.StatusOK || !ok {
		t.Fatalf("after refresh: %d\n%s", p.Status, p.Body)
	}
	tok, idToken := sess.tokens()
	if tok.AccessToken == old.AccessToken || tok.RefreshToken == old.RefreshToken || tok.RefreshToken == "" {
		t.Fatal("the refresh's tokens were not kept")
	}
	if aud := jwtAudience(t, tok.AccessToken); len(aud) != 1 || aud[0] != r.api.URL {
		t.Errorf("the refreshed access token's aud %v, want the API's %s only", aud, r.api.URL)
	}
	if idToken == "" || !tok.Expiry.After(time.Now()) {
		t.Errorf("the refresh's ID token or expiry was not kept (expiry %s)", tok.Expiry)
	}
	if seen := r.api.tokens(); seen[len(seen)-1] != tok.AccessToken {
		t.Error("the API was not called with the refreshed token")
	}
	for _, grant := range []string{"authorization_code", "refresh_token"} {
		if got := rec.resources(grant); len(got) != 1 || got[0] != r.api.URL {
			t.Errorf("%s request's resource %v, want the API's %s", grant, got, r.api.URL)
		}
	}

	// A refresh the provider refuses signs the user in again, as without
	// a resource.
	r.authz.Revoke(t, r.web, tok.RefreshToken)
	sess.mu.Lock()
	expired = *tok
	expired.Expiry = time.Now().Add(-time.Minute)
	sess.token = &expired
	sess.mu.Unlock()
	p = b.Get(r.url + "/contacts")
	loc := p.Location(t)
	if p.Status != http.StatusSeeOther || !strings.HasPrefix(loc.String(), r.authz.URL+"/oauth2/authorize?") || loc.Query().Get("resource") != r.api.URL {
		t.Fatalf("after a refused refresh: %d to %s, want a sign-in asking for the resource %s", p.Status, loc, r.api.URL)
	}
}

func TestResourceValidated(t *testing.T) {
	t.Parallel()
	base := Config{Issuer: "http://localhost:8080", ClientID: "c", ClientSecret: "s", RedirectURI: "http://localhost:3000/callback",
		APIURL: "http://localhost:4000", Scopes: []string{"openid"}}
	for _, bad := range []string{"api", "/contacts", "http://localhost:4000#x"} {
		c := base
		c.Resource = bad
		if err := c.Validate(); err == nil {
			t.Errorf("resource %q: no error", bad)
		}
	}
	base.Resource = "http://localhost:4000"
	if err := base.Validate(); err != nil {
		t.Error(err)
	}
}
