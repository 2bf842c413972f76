package authz

import (
	"errors"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestRedirectURIRegistration: the redirect URIs a client may register, and
// the post-logout redirect URIs, which follow the same rules. Before the
// review's fix only http(s) URIs without a host were refused: wildcards
// (which would also have put "https://*" in the consent page's CSP
// form-action), javascript:, data:, file:, vbscript: and dotless private-use
// schemes were all registered.
func TestRedirectURIRegistration(t *testing.T) {
	t.Parallel()
	cases := []struct {
		uri string
		ok  bool
	}{
		{"https://app.example.com/cb", true},
		{"https://app.example.com:8443/cb?tenant=1", true},
		{"http://localhost:3000/cb", true},
		{"http://127.0.0.1:8080/cb", true},
		{"http://[::1]:8080/cb", true},
		{"com.example.app:/oauth/cb", true},

		{"/cb", false}, // relative
		{"cb", false},  // relative
		{"https://app.example.com/cb#frag", false}, // fragment
		{"https://app.example.com/cb#", false},     // empty fragment
		{"http://app.example.com/cb", false},       // http off the machine
		{"https://*/cb", false},
		{"https://*.evil.example/cb", false},
		{"https://%2A.evil.example/cb", false}, // an encoded wildcard
		{"javascript://x/%0aalert(1)", false},
		{"javascript:alert(1)", false},
		{"JavaScript://x/%0aalert(1)", false},
		{"data://x/y", false},
		{"data:text/html,<script>alert(1)</script>", false},
		{"file:///etc/passwd", false},
		{"vbscript:x", false},
		{"blob:https://app.example.com/uuid", false},
		{"myapp:/cb", false}, // a private-use scheme must be a reverse domain name
		{"https:///cb", false},
		{"http:///cb", false},
		{"https://app.example.com:bad/cb", false},
	}
	for _, tc := range cases {
		t.Run(tc.uri, func(t *testing.T) {
			t.Parallel()
			// Private-use schemes are a native app's (redirect_rules_test.go
			// has the rules of each application type).
			appType := "web"
			if !strings.HasPrefix(tc.uri, "http") {
				appType = "native"
			}
			m := ClientMetadata{ClientName: "App", ApplicationType: appType, RedirectURIs: []string{tc.uri}}
			m.Normalize()
			err := m.Validate()
			if tc.ok {
				if err != nil {
					t.Fatalf("redirect URI %q refused: %v", tc.uri, err)
				}
				// The consent page's CSP lets its form end at the client's
				// origin: exactly that origin, no wildcard.
				u, _ := url.Parse(tc.uri)
				rec := httptest.NewRecorder()
				(&Handler{}).allowFormRedirect(rec, u)
				if csp := rec.Header().Get("Content-Security-Policy"); strings.Contains(csp, "*") || !strings.Contains(csp, "form-action 'self' "+u.Scheme+":") {
					t.Errorf("CSP for %q: %q", tc.uri, csp)
				}
			} else {
				wantInvalidMetadata(t, err, "invalid_redirect_uri", tc.uri)
			}

			// The same URI as a post-logout redirect URI.
			m = ClientMetadata{ClientName: "App", ApplicationType: appType, RedirectURIs: []string{"https://app.example.com/cb"}, PostLogoutRedirectURIs: []string{tc.uri}}
			m.Normalize()
			err = m.Validate()
			if tc.ok {
				if err != nil {
					t.Fatalf("post-logout redirect URI %q refused: %v", tc.uri, err)
				}
				return
			}
			wantInvalidMetadata(t, err, "invalid_client_metadata", "post_logout_redirect_uri")
		})
	}
}

// wantInvalidMetadata asserts an *InvalidMetadataError with code whose
// message mentions mention.
func wantInvalidMetadata(t *testing.T, err error, code, mention string) {
	t.Helper()
	var ime *InvalidMetadataError
	if !errors.As(err, &ime) {
		t.Fatalf("want an %s error mentioning %q, got %v", code, mention, err)
	}
	if ime.Code != code || !strings.Contains(ime.Message, mention) {
		t.Fatalf("got %s %q, want %s mentioning %q", ime.Code, ime.Message, code, mention)
	}
}

// TestNewClientID: generated client ids never start with "-" or "_", so a
// command line never takes one for a flag (1 in 32 did before).
func TestNewClientID(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 2000 {
		id, err := newClientID()
		if err != nil {
			t.Fatal(err)
		}
		if len(id) != 22 || id[0] == '-' || id[0] == '_' || seen[id] {
			t.Fatalf("client id %q: want 22 characters, unique, not starting with - or _", id)
		}
		seen[id] = true
	}
}
