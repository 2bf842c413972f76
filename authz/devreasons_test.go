package authz_test

import (
	"bufio"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/authz/authz/authz"
)

// devMode is the configuration `authz dev` runs with.
func devMode(c *authz.Config) { c.Dev = true }

// TestDevReasonsOnErrorPage: under `authz dev` a refused authorization
// request that cannot go back to the client shows the developer exactly
// why on our error page: which redirect_uri is not registered and which
// are, which client_id is unknown. Before, the page said only "The
// sign-in link is incomplete or malformed".
func TestDevReasonsOnErrorPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devMode)
	client := e.confidential(t, "client_secret_basic")
	registered := client.RedirectURIs[0]
	cases := []struct {
		name   string
		params map[string]string
		code   string
		reason string
	}{
		{"wrong redirect_uri", map[string]string{"redirect_uri": "https://app.example.com/callbak"}, "invalid_request",
			"redirect_uri https://app.example.com/callbak is not registered for client " + client.ClientID + "; registered: " + registered},
		{"no redirect_uri with openid", map[string]string{"redirect_uri": "", "scope": "openid"}, "invalid_request",
			"The request has no redirect_uri, which OpenID Connect (scope openid) requires; registered for client " + client.ClientID + ": " + registered},
		{"unknown client", map[string]string{"client_id": "demo-bf"}, "invalid_client",
			`client_id "demo-bf" is not registered with this server.`},
		{"no client", map[string]string{"client_id": ""}, "invalid_client", "The request has no client_id."},
		{"unsupported response_mode", map[string]string{"response_mode": "bogus"}, "unsupported_response_mode", `unsupported response_mode "bogus"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			params := codeParams(client, "contacts")
			for k, v := range tc.params {
				params[k] = v
			}
			p := newBrowser(t).get(authorizeURL(e.issuer, params))
			wantErrorPage(t, p, http.StatusBadRequest, tc.code)
			if body := html.UnescapeString(p.body); !strings.Contains(body, tc.reason) {
				t.Errorf("the dev error page does not say %q\n%s", tc.reason, body)
			}
			if id := p.header.Get("X-Request-Id"); id == "" || !strings.Contains(p.body, id) {
				t.Errorf("the error page does not show the request id %q", id)
			}
		})
	}

	// A refusal that goes back to the client carries its reason in
	// error_description, in dev mode as always.
	params := codeParams(client, "contacts")
	params["scope"] = "contacts admin"
	p := newBrowser(t).get(authorizeURL(e.issuer, params))
	wantRedirectError(t, p, registered, "invalid_scope", params["state"])
	if d := p.location(t).Query().Get("error_description"); !strings.Contains(d, "admin") {
		t.Errorf("error_description %q does not name the scope", d)
	}
}

// TestProdReasonsLoggedNotShown: outside dev mode the page stays plain (a
// crafted link cannot make it say anything), and the precise reason is
// logged at info with the request id and the client id, so an operator
// can answer the developer. Before, it was logged at debug only, without
// the request id.
func TestProdReasonsLoggedNotShown(t *testing.T) {
	t.Parallel()
	a := newAuditEnv(t)
	client := a.confidential(t, "client_secret_basic")
	params := codeParams(client, "contacts")
	params["redirect_uri"] = "https://app.example.com/callbak"
	p := newBrowser(t).get(authorizeURL(a.issuer, params))
	wantErrorPage(t, p, http.StatusBadRequest, "invalid_request", "callbak", "registered", "Why")
	id := p.header.Get("X-Request-Id")
	if id == "" || !strings.Contains(p.body, id) {
		t.Errorf("the error page does not show the request id %q\n%s", id, p.body)
	}

	want := "redirect_uri https://app.example.com/callbak is not registered for client " + client.ClientID +
		"; registered: " + client.RedirectURIs[0]
	line := findLog(t, a.logs.String(), "authorize request refused")
	if line == nil {
		t.Fatalf("no 'authorize request refused' log line\n%s", a.logs.String())
	}
	for k, v := range map[string]string{"level": "INFO", "request_id": id, "client_id": client.ClientID, "error": "invalid_request", "reason": want} {
		if got, _ := line[k].(string); got != v {
			t.Errorf("log line %s = %q, want %q\n%v", k, got, v, line)
		}
	}
}

// TestDevReasonLogout: a post_logout_redirect_uri that is not registered
// is named, with the registered ones, on the dev error page.
func TestDevReasonLogout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devMode)
	c := e.createClient(t, authz.ClientMetadata{
		ClientName: "RP", RedirectURIs: []string{"https://rp.example.com/callback"},
		PostLogoutRedirectURIs: []string{"https://rp.example.com/bye"}, Scope: "openid",
	})
	q := url.Values{"client_id": {c.ClientID}, "post_logout_redirect_uri": {"https://rp.example.com/by"}}
	p := newBrowser(t).get(e.url("/oauth2/logout?" + q.Encode()))
	wantErrorPage(t, p, http.StatusBadRequest, "invalid_request")
	want := "post_logout_redirect_uri https://rp.example.com/by is not registered for client " + c.ClientID + "; registered: https://rp.example.com/bye"
	if !strings.Contains(html.UnescapeString(p.body), want) {
		t.Errorf("the dev error page does not say %q\n%s", want, p.body)
	}
}

// findLog returns the first JSON log line with msg, or nil.
func findLog(t *testing.T, logs, msg string) map[string]any {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, sc.Text())
		}
		if line["msg"] == msg {
			return line
		}
	}
	return nil
}
