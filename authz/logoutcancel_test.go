package authz_test

import (
	"html"
	"net/http"
	"strings"
	"testing"
)

// TestLogoutStaySignedIn: "Stay signed in" on the logout confirmation
// keeps the session and lands on a calm page that says so, offering the
// way back to the app that asked (its registered post_logout_redirect_uri,
// with its state) when there is one. Before, it showed the red error
// template with nowhere to go.
func TestLogoutStaySignedIn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := newRP(t, e)
	cases := []struct {
		name     string
		params   map[string]string
		wantLink string // "" for none
	}{
		{"asked by an app", map[string]string{"client_id": r.client.ClientID, "post_logout_redirect_uri": rpSignedOut, "state": "st-stay"},
			`<a href="` + rpSignedOut + `?state=st-stay">Continue to `},
		{"asked by no app", nil, ""},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			name := "stay" + string(rune('a'+i))
			u := e.createUser(t, name)
			b := newBrowser(t)
			r.signIn(t, b, name)
			p := b.get(logoutURL(e, tc.params))
			res := b.submit(p, wantConfirmation(t, p), map[string]string{"action": "cancel"})
			if res.status != http.StatusOK || res.header.Get("Location") != "" {
				t.Fatalf("stay signed in: %d (Location %q), want 200 and a page\n%s", res.status, res.header.Get("Location"), res.body)
			}
			body := html.UnescapeString(res.body)
			if !strings.Contains(body, "still signed in") || strings.Contains(body, "status-error") || strings.Contains(body, "signed out") {
				t.Errorf("want the calm 'still signed in' page, not an error or 'signed out'\n%s", body)
			}
			if tc.wantLink != "" && !strings.Contains(body, tc.wantLink) {
				t.Errorf("the page does not offer %s\n%s", tc.wantLink, body)
			}
			if tc.wantLink == "" && strings.Contains(body, "<a href") {
				t.Errorf("no app asked, yet the page links somewhere\n%s", body)
			}
			if n := sessions(t, e, u.ID); n != 1 {
				t.Errorf("%d login sessions after staying signed in, want 1", n)
			}
		})
	}
}
