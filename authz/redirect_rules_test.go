package authz

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// TestRedirectRulesByApplicationType: the redirect URIs each application
// type may register (OpenID Connect Registration 2, RFC 8252 7), for
// redirect_uris and post_logout_redirect_uris alike.
func TestRedirectRulesByApplicationType(t *testing.T) {
	t.Parallel()
	cases := []struct {
		appType, uri string
		ok           bool
	}{
		{"web", "https://app.example.com/cb", true},
		{"web", "http://localhost:3000/cb", true},
		{"web", "http://127.0.0.1:8080/cb", true},
		{"web", "http://dev.localhost/cb", true},
		{"web", "http://app.example.com/cb", false},
		{"web", "com.example.app:/cb", true}, // as oidc-agent registers; only implicit web clients are held to https
		{"web", "javascript:alert(1)", false},

		{"native", "com.example.app:/cb", true},
		{"native", "http://127.0.0.1/cb", true},
		{"native", "http://127.0.0.1:8080/cb", true},
		{"native", "http://[::1]:8080/cb", true},
		{"native", "http://localhost:4242", true},       // RFC 8252 8.3 discourages it; oidc-agent uses it
		{"native", "https://app.example.com/cb", true},  // claimed https: an operator may vouch for it
		{"native", "http://dev.localhost/cb", false},    // not a loopback address
		{"native", "http://app.example.com/cb", false},  // http off the machine
		{"native", "myapp:/cb", false},                  // not a reverse domain name
		{"native", "com.example.app:/cb#frag", false},   // fragment
		{"native", "javascript://x/%0aalert(1)", false}, // script
		{"native", "https://*.example.com/cb", false},   // wildcard
	}
	for _, tc := range cases {
		t.Run(tc.appType+" "+tc.uri, func(t *testing.T) {
			t.Parallel()
			m := ClientMetadata{ClientName: "App", ApplicationType: tc.appType, RedirectURIs: []string{tc.uri}}
			m.Normalize()
			err := m.Validate()
			if tc.ok != (err == nil) {
				t.Fatalf("redirect URI %q for %s: err = %v, want ok %v", tc.uri, tc.appType, err, tc.ok)
			}
			if err != nil {
				wantInvalidMetadata(t, err, "invalid_redirect_uri", tc.uri)
			}
			m = ClientMetadata{ClientName: "App", ApplicationType: tc.appType, RedirectURIs: []string{"http://127.0.0.1/cb"}, PostLogoutRedirectURIs: []string{tc.uri}}
			m.Normalize()
			if err := m.Validate(); tc.ok != (err == nil) {
				t.Fatalf("post-logout redirect URI %q for %s: err = %v, want ok %v", tc.uri, tc.appType, err, tc.ok)
			}
		})
	}
}

// TestImplicitWebRedirectRules: a web client of the implicit flow, whose
// tokens travel in the redirect itself, may register https redirect URIs
// only, and not to localhost (OpenID Connect Registration 2); a native one
// keeps the native rules.
func TestImplicitWebRedirectRules(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		appType, uri string
		ok           bool
	}{
		{"web", "https://app.example.com/cb", true},
		{"web", "http://localhost:3000/cb", false},
		{"web", "https://localhost/cb", false},
		{"web", "http://127.0.0.1/cb", false},
		{"web", "com.example.app:/cb", false},
		{"native", "http://127.0.0.1/cb", true},
		{"native", "com.example.app:/cb", true},
	} {
		m := ClientMetadata{ClientName: "App", ApplicationType: tc.appType, RedirectURIs: []string{tc.uri},
			GrantTypes: []string{"implicit"}, ResponseTypes: []string{"token"}}
		m.Normalize()
		err := m.Validate()
		if tc.ok != (err == nil) {
			t.Errorf("implicit %s client, redirect URI %q: err = %v, want ok %v", tc.appType, tc.uri, err, tc.ok)
		}
		if err != nil {
			wantInvalidMetadata(t, err, "invalid_redirect_uri", tc.uri)
		}
	}
}

// TestClaimedHTTPSRedirects: only a native client's https URIs to other
// hosts are claimed ones, which registration refuses.
func TestClaimedHTTPSRedirects(t *testing.T) {
	t.Parallel()
	m := ClientMetadata{ApplicationType: "native", RedirectURIs: []string{"https://app.example.com/cb", "https://127.0.0.1/cb", "com.example.app:/cb"},
		PostLogoutRedirectURIs: []string{"https://app.example.com/bye"}}
	if got := m.claimedHTTPSRedirects(); !slices.Equal(got, []string{"https://app.example.com/cb", "https://app.example.com/bye"}) {
		t.Errorf("native: %q", got)
	}
	m.ApplicationType = "web"
	if got := m.claimedHTTPSRedirects(); got != nil {
		t.Errorf("web: %q", got)
	}
}

// TestValidateRegistrationMetadata: each OpenID Connect Registration field
// is refused with its name when its value cannot be stored or acted on.
func TestValidateRegistrationMetadata(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 256)
	cases := []struct {
		name     string
		set      func(*ClientMetadata)
		mentions string
	}{
		{"application_type", func(m *ClientMetadata) { m.ApplicationType = "browser" }, "application_type"},
		{"tos_uri http", func(m *ClientMetadata) { m.TOSURI = "http://app.example.com/tos" }, "tos_uri"},
		{"tos_uri javascript", func(m *ClientMetadata) { m.TOSURI = "javascript:alert(1)" }, "tos_uri"},
		{"policy_uri javascript", func(m *ClientMetadata) { m.PolicyURI = "javascript:alert(1)" }, "policy_uri"},
		{"logo_uri data", func(m *ClientMetadata) { m.LogoURI = "data:image/png;base64,AAAA" }, "logo_uri"},
		{"client_uri javascript", func(m *ClientMetadata) { m.ClientURI = "javascript:alert(1)" }, "client_uri"},
		{"initiate_login_uri http", func(m *ClientMetadata) { m.InitiateLoginURI = "http://app.example.com/login" }, "initiate_login_uri"},
		{"sector_identifier_uri http", func(m *ClientMetadata) { m.SectorIdentifierURI = "http://app.example.com/s.json" }, "sector_identifier_uri"},
		{"frontchannel_logout_uri http", func(m *ClientMetadata) { m.FrontchannelLogoutURI = "http://app.example.com/logout" }, "frontchannel_logout_uri"},
		{"backchannel_logout_uri javascript", func(m *ClientMetadata) { m.BackchannelLogoutURI = "javascript:x" }, "backchannel_logout_uri"},
		{"frontchannel session without uri", func(m *ClientMetadata) { m.FrontchannelLogoutSessionRequired = true }, "frontchannel_logout_session_required"},
		{"backchannel session without uri", func(m *ClientMetadata) { m.BackchannelLogoutSessionRequired = true }, "backchannel_logout_session_required"},
		{"software_id control", func(m *ClientMetadata) { m.SoftwareID = "a\x00b" }, "software_id"},
		{"software_version too long", func(m *ClientMetadata) { m.SoftwareVersion = long }, "software_version"},
		{"software_statement not a JWT", func(m *ClientMetadata) { m.SoftwareStatement = "a b" }, "software_statement"},
		{"default_acr_values space", func(m *ClientMetadata) { m.DefaultACRValues = []string{"urn:a b"} }, "default_acr_values"},
		{"default_acr_values empty", func(m *ClientMetadata) { m.DefaultACRValues = []string{""} }, "default_acr_values"},
		{"default_acr_values too many", func(m *ClientMetadata) { m.DefaultACRValues = strings.Fields(strings.Repeat("a ", 11)) }, "default_acr_values"},
		{"default_max_age negative", func(m *ClientMetadata) { m.DefaultMaxAge = -1 }, "default_max_age"},
		{"default_max_age over a year", func(m *ClientMetadata) { m.DefaultMaxAge = maxDefaultMaxAge + 1 }, "default_max_age"},
		{"subject_type", func(m *ClientMetadata) { m.SubjectType = "ephemeral" }, "subject_type"},
		{"userinfo_signed_response_alg HS256", func(m *ClientMetadata) { m.UserinfoSignedResponseAlg = "HS256" }, "userinfo_signed_response_alg"},
		{"userinfo_signed_response_alg none", func(m *ClientMetadata) { m.UserinfoSignedResponseAlg = "none" }, "userinfo_signed_response_alg"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := ClientMetadata{ClientName: "App", RedirectURIs: []string{"https://app.example.com/cb"}}
			m.Normalize()
			tc.set(&m)
			wantInvalidMetadata(t, m.Validate(), "invalid_client_metadata", tc.mentions)
		})
	}

	good := ClientMetadata{
		ClientName: "App", RedirectURIs: []string{"https://app.example.com/cb"},
		TOSURI: "https://app.example.com/tos", PolicyURI: "https://app.example.com/privacy",
		InitiateLoginURI: "https://app.example.com/login", SectorIdentifierURI: "https://app.example.com/sector.json",
		FrontchannelLogoutURI: "http://localhost:3000/logout", FrontchannelLogoutSessionRequired: true,
		BackchannelLogoutURI: "https://app.example.com/bc", BackchannelLogoutSessionRequired: true,
		SoftwareID: "4NRB1-0XZABZI9E6-5SM3R", SoftwareVersion: "2.1", DefaultACRValues: []string{"urn:mace:incommon:iap:silver"},
		DefaultMaxAge: 3600, RequireAuthTime: true, SubjectType: "pairwise", UserinfoSignedResponseAlg: "ES256",
	}
	good.Normalize()
	if err := good.Validate(); err != nil {
		t.Fatalf("every field with a good value: %v", err)
	}
}

// TestConsentPageLinks: the consent page links the app's terms and policy
// (rel noopener noreferrer), and never a URL that is not https, whatever
// reached the page.
func TestConsentPageLinks(t *testing.T) {
	t.Parallel()
	p := mustLoadPages(t, "")
	render := func(d consentPage) string {
		rec := httptest.NewRecorder()
		p.renderConsent(rec, http.StatusOK, d)
		return rec.Body.String()
	}
	body := render(consentPage{Action: "/", ClientName: "App", ClientURI: "https://app.example.com/",
		TOSURI: "https://app.example.com/tos?a=1&b=2", PolicyURI: "https://app.example.com/privacy"})
	for _, want := range []string{
		`<a href="https://app.example.com/tos?a=1&amp;b=2" rel="noopener noreferrer" target="_blank">Terms of service</a>`,
		`<a href="https://app.example.com/privacy" rel="noopener noreferrer" target="_blank">Privacy policy</a>`,
		`<a href="https://app.example.com/" rel="noopener noreferrer" target="_blank">Learn more about App</a>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("consent page lacks %s\n%s", want, body)
		}
	}
	body = render(consentPage{Action: "/", ClientName: "App", TOSURI: "javascript:alert(1)", PolicyURI: "http://app.example.com/p", ClientURI: "JavaScript:alert(2)"})
	if strings.Contains(strings.ToLower(body), "javascript:") || strings.Contains(body, "app.example.com/p") || strings.Contains(body, "Terms of service") {
		t.Errorf("consent page links a URL that is not https:\n%s", body)
	}
}
