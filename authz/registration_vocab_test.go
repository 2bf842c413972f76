package authz_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/authz/authz/authz"
)

// TestRegistrationVocabulary: every OpenID Connect Registration field is
// stored and echoed; names nobody registered, and language-tagged names,
// are ignored and not echoed (RFC 7591 2, 3.2.1).
func TestRegistrationVocabulary(t *testing.T) {
	t.Parallel()
	e := dcrEnv(t, authz.RegistrationOpen)
	body := map[string]any{
		"client_name":                          "Vocabulary App",
		"client_name#ja-Jpan-JP":               "語彙",
		"application_type":                     "web",
		"redirect_uris":                        []string{appCallback},
		"post_logout_redirect_uris":            []string{"https://app.example.com/bye"},
		"scope":                                "openid profile",
		"tos_uri":                              "https://app.example.com/tos",
		"policy_uri":                           "https://app.example.com/privacy",
		"logo_uri":                             "https://app.example.com/logo.png",
		"client_uri":                           "https://app.example.com/",
		"contacts":                             []string{"ops@app.example.com"},
		"software_id":                          "4NRB1-0XZABZI9E6-5SM3R",
		"software_version":                     "2.1",
		"default_max_age":                      3600,
		"require_auth_time":                    true,
		"default_acr_values":                   []string{"urn:mace:incommon:iap:silver"},
		"subject_type":                         "public",
		"userinfo_signed_response_alg":         "RS256",
		"id_token_signed_response_alg":         "ES256",
		"initiate_login_uri":                   "https://app.example.com/login",
		"frontchannel_logout_uri":              "https://app.example.com/fc",
		"frontchannel_logout_session_required": true,
		"backchannel_logout_uri":               "https://app.example.com/bc",
		"backchannel_logout_session_required":  true,
		"colour":                               "red",
		"x_vendor_extension":                   map[string]any{"a": 1},
	}
	r := e.dcrCall(t, http.MethodPost, "/oauth2/register", "", body)
	m := dcrClient(t, r, http.StatusCreated)
	if m.ApplicationType != "web" || m.TOSURI != body["tos_uri"] || m.PolicyURI != body["policy_uri"] ||
		m.SoftwareID != "4NRB1-0XZABZI9E6-5SM3R" || m.SoftwareVersion != "2.1" || m.DefaultMaxAge != 3600 ||
		!m.RequireAuthTime || !slices.Equal(m.DefaultACRValues, []string{"urn:mace:incommon:iap:silver"}) ||
		m.SubjectType != "public" || m.UserinfoSignedResponseAlg != "RS256" || m.IDTokenSignedResponseAlg != "ES256" ||
		m.InitiateLoginURI != body["initiate_login_uri"] || m.FrontchannelLogoutURI != body["frontchannel_logout_uri"] ||
		!m.FrontchannelLogoutSessionRequired || m.BackchannelLogoutURI != body["backchannel_logout_uri"] || !m.BackchannelLogoutSessionRequired ||
		!slices.Equal(m.PostLogoutRedirectURIs, []string{"https://app.example.com/bye"}) {
		t.Fatalf("registered %+v", m)
	}
	for _, dropped := range []string{"colour", "x_vendor_extension", "client_name#ja-Jpan-JP"} {
		if strings.Contains(string(r.body), dropped) {
			t.Errorf("the response echoes %s, which was not stored:\n%s", dropped, r.body)
		}
	}
	// What was stored is what GET (RFC 7592) reads back.
	got := dcrClient(t, e.dcrCall(t, http.MethodGet, "/oauth2/register/"+m.ClientID, m.RegistrationAccessToken, nil), http.StatusOK)
	got.RegistrationAccessToken, m.RegistrationAccessToken, m.ClientSecret, m.ClientSecretExpiresAt = "", "", "", nil
	if gj, mj := mustJSON(t, got), mustJSON(t, m); gj != mj {
		t.Errorf("read back %+v\nregistered %+v", got, m)
	}

	// A value of the wrong type for a known name is still refused.
	wantRegError(t, e.dcrCall(t, http.MethodPost, "/oauth2/register", "", map[string]any{
		"redirect_uris": []string{appCallback}, "default_max_age": "3600",
	}), http.StatusBadRequest, "invalid_client_metadata", "default_max_age")
}

// TestRegistrationUnsupportedMetadata: registered names asking for what
// this server does not do are refused by name, in registration and the
// admin API; the same names with their "nothing" value are accepted and
// not stored.
func TestRegistrationUnsupportedMetadata(t *testing.T) {
	t.Parallel()
	e := dcrEnv(t, authz.RegistrationOpen)
	a := withAdmin(t, e)
	refused := []struct {
		name   string
		value  any
		reason string
	}{
		{"request_object_signing_alg", "RS256", "request objects are not supported"},
		{"request_object_encryption_alg", "RSA-OAEP", "request objects"},
		{"request_uris", []string{"https://app.example.com/r"}, "request objects"},
		{"require_signed_request_object", true, "request objects"},
		{"id_token_encrypted_response_alg", "RSA-OAEP", "encrypted ID tokens"},
		{"id_token_encrypted_response_enc", "A128CBC-HS256", "encrypted ID tokens"},
		{"userinfo_encrypted_response_alg", "RSA-OAEP", "encrypted userinfo"},
		{"authorization_signed_response_alg", "RS256", "JARM"},
		{"authorization_encrypted_response_enc", "A128CBC-HS256", "JARM"},
		{"introspection_signed_response_alg", "RS256", "RFC 9701"},
		{"tls_client_certificate_bound_access_tokens", true, "RFC 8705"},
		{"tls_client_auth_subject_dn", "CN=app", "RFC 8705"},
		{"dpop_bound_access_tokens", true, "RFC 9449"},
		{"authorization_details_types", []string{"payment_initiation"}, "RFC 9396"},
		{"backchannel_token_delivery_mode", "poll", "CIBA"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body := dcrWebApp()
			body[tc.name] = tc.value
			r := e.dcrCall(t, http.MethodPost, "/oauth2/register", "", body)
			wantRegError(t, r, http.StatusBadRequest, "invalid_client_metadata", tc.name+": ")
			if !strings.Contains(string(r.body), tc.reason) || !strings.Contains(string(r.body), "leave "+tc.name+" out") {
				t.Errorf("registration: %s", r.body)
			}
			ar := a.adminRequest(t, http.MethodPost, "/admin/clients", "", body)
			if ar.status != http.StatusBadRequest || !strings.Contains(string(ar.body), "invalid_client_metadata") || !strings.Contains(string(ar.body), tc.reason) {
				t.Errorf("admin API: %d %s", ar.status, ar.body)
			}
		})
	}
	t.Cleanup(func() {
		if n := e.count(t, `SELECT count(*) FROM clients`); n != 3 {
			t.Errorf("%d clients, want the 3 accepted ones: refused requests created clients", n)
		}
	})

	// "Nothing" values ask for nothing: accepted, not stored.
	nothing := dcrWebApp()
	nothing["request_uris"] = []string{}
	nothing["id_token_encrypted_response_alg"] = "none"
	nothing["userinfo_encrypted_response_enc"] = nil
	nothing["tls_client_certificate_bound_access_tokens"] = false
	nothing["request_object_signing_alg"] = ""
	r := e.dcrCall(t, http.MethodPost, "/oauth2/register", "", nothing)
	dcrClient(t, r, http.StatusCreated)
	if strings.Contains(string(r.body), "request_uris") || strings.Contains(string(r.body), "encrypted") {
		t.Errorf("nothing values echoed: %s", r.body)
	}
	ar := a.adminRequest(t, http.MethodPost, "/admin/clients", "", nothing)
	if ar.status != http.StatusCreated {
		t.Errorf("admin API refused nothing values: %d %s", ar.status, ar.body)
	}
	// A "none" that is not about encryption is not a nothing value.
	none := dcrWebApp()
	none["request_object_signing_alg"] = "none"
	wantRegError(t, e.dcrCall(t, http.MethodPost, "/oauth2/register", "", none), http.StatusBadRequest, "invalid_client_metadata", "request_object_signing_alg")

	// The admin API still refuses names nobody registered: typos.
	typo := dcrWebApp()
	typo["redirect_uri"] = appCallback
	if r := a.adminRequest(t, http.MethodPost, "/admin/clients", "", typo); r.status != http.StatusBadRequest || !strings.Contains(string(r.body), `unknown field \"redirect_uri\"`) {
		t.Errorf("admin API with a typo: %d %s", r.status, r.body)
	}
	// ... also in a merge patch.
	var c authz.ClientMetadata
	a.adminRequest(t, http.MethodPost, "/admin/clients", "", dcrWebApp()).want(t, http.StatusCreated, &c)
	if r := a.adminRequest(t, http.MethodPatch, "/admin/clients/"+c.ClientID, "application/merge-patch+json", `{"request_uris": ["https://app.example.com/r"]}`); r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "request objects") {
		t.Errorf("admin patch with request_uris: %d %s", r.status, r.body)
	}
}

// TestRegistrationNativeClaimedHTTPS: a native app's https redirect URI to
// another host is a claimed one (RFC 8252 7.2): a client cannot vouch for
// it itself, an operator can.
func TestRegistrationNativeClaimedHTTPS(t *testing.T) {
	t.Parallel()
	e := dcrEnv(t, authz.RegistrationOpen)
	a := withAdmin(t, e)
	body := map[string]any{
		"client_name": "Native", "application_type": "native", "token_endpoint_auth_method": "none",
		"redirect_uris": []string{"https://app.example.com/oauth"}, "scope": "openid",
	}
	wantRegError(t, e.dcrCall(t, http.MethodPost, "/oauth2/register", "", body), http.StatusBadRequest, "invalid_redirect_uri", "claimed https")
	var c authz.ClientMetadata
	a.adminRequest(t, http.MethodPost, "/admin/clients", "", body).want(t, http.StatusCreated, &c)
	if c.ApplicationType != "native" || !slices.Equal(c.RedirectURIs, []string{"https://app.example.com/oauth"}) {
		t.Errorf("admin created %+v", c)
	}
}

// TestRegistrationOIDCAgent registers exactly the body oidc-agent's
// oidc-gen sends (src/oidc-agent/oidc/flows/registration.c: application
// type web, http://localhost on its default, a random and its fallback
// port) and completes the code flow on one of those ports.
func TestRegistrationOIDCAgent(t *testing.T) {
	t.Parallel()
	e := dcrEnv(t, authz.RegistrationOpen)
	// What oidc-gen 4.2.6 (Debian's oidc-agent-cli) sends: a web client
	// with loopback redirect URIs and its private-use scheme, and no
	// token_endpoint_auth_method (client_secret_basic, the default).
	raw := `{"application_type":"web","client_name":"oidc-agent:alice-laptop","redirect_uris":["http://localhost:4242","http://localhost:8080","http://localhost:43985","edu.kit.data.oidc-agent:/redirect"],"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"scope":"openid profile offline_access"}`
	app := e.dcrRegister(t, "", raw)
	if app.ClientSecret == "" || app.ApplicationType != "web" {
		t.Fatalf("registered %+v", app)
	}
	alice := e.createUser(t, "alice")
	b := newBrowser(t)
	redirect := "http://localhost:43985"
	verifier, challenge := pkcePair()
	loc := authorizeCode(t, e, b, app.ClientID, map[string]string{
		"response_type": "code", "client_id": app.ClientID, "redirect_uri": redirect,
		"scope": "openid profile offline_access", "state": "agent", "prompt": "consent", "access_type": "offline",
		"code_challenge": challenge, "code_challenge_method": "S256",
	}, "alice")
	if loc.Host != "localhost:43985" || loc.Query().Get("state") != "agent" || loc.Query().Get("code") == "" {
		t.Fatalf("redirected to %s", loc)
	}
	form := exchangeForm(loc.Query().Get("code"), redirect)
	form.Set("code_verifier", verifier)
	tok := e.token(t, form, app.ClientID, app.ClientSecret)
	if tok.status != http.StatusOK || tok.AccessToken == "" || tok.RefreshToken == "" {
		t.Fatalf("token: %d %+v", tok.status, tok)
	}
	rs := e.resourceServer(t)
	if info := e.introspect(t, tok.AccessToken, rs.ClientID, rs.ClientSecret); info["active"] != true || info["sub"] != alice.ID {
		t.Fatalf("introspection: %v", info)
	}
}

// TestRegistrationNativeLoopbackAnyPort: a native app registered with a
// loopback redirect URI, with or without a port, may use any port at
// authorize (RFC 8252 7.3), and must then use that URI at the token
// endpoint; another path or host is still refused.
func TestRegistrationNativeLoopbackAnyPort(t *testing.T) {
	t.Parallel()
	e := dcrEnv(t, authz.RegistrationOpen)
	app := e.dcrRegister(t, "", map[string]any{
		"client_name": "Native CLI", "application_type": "native", "token_endpoint_auth_method": "none",
		"redirect_uris": []string{"http://127.0.0.1/cb", "http://127.0.0.1:8080/other"}, "scope": "openid",
	})
	e.createUser(t, "alice")
	b := newBrowser(t)
	for _, redirect := range []string{"http://127.0.0.1:53124/cb", "http://127.0.0.1:9/other"} {
		verifier, challenge := pkcePair()
		loc := authorizeCode(t, e, b, app.ClientID, map[string]string{
			"response_type": "code", "client_id": app.ClientID, "redirect_uri": redirect, "scope": "openid",
			"state": "s", "code_challenge": challenge, "code_challenge_method": "S256",
		}, "alice")
		if loc.Scheme+"://"+loc.Host+loc.Path != redirect || loc.Query().Get("code") == "" {
			t.Fatalf("authorize with %s: redirected to %s", redirect, loc)
		}
		form := exchangeForm(loc.Query().Get("code"), redirect)
		form.Set("client_id", app.ClientID)
		form.Set("code_verifier", verifier)
		if tok := e.token(t, form, "", ""); tok.status != http.StatusOK || tok.AccessToken == "" {
			t.Fatalf("token with %s: %d %+v", redirect, tok.status, tok)
		}
	}
	for _, bad := range []string{"http://127.0.0.1:53124/elsewhere", "http://localhost:53124/cb", "http://127.0.0.2:53124/cb"} {
		p := b.get(authorizeURL(e.issuer, map[string]string{
			"response_type": "code", "client_id": app.ClientID, "redirect_uri": bad, "scope": "openid", "state": "s",
		}))
		if p.status != http.StatusBadRequest || p.header.Get("Location") != "" {
			t.Errorf("authorize with unregistered %s: %d, Location %q", bad, p.status, p.header.Get("Location"))
		}
	}
}

// TestDiscoveryRegistrationVocabulary: discovery lists what the
// validators accept, and says what is not supported.
func TestDiscoveryRegistrationVocabulary(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	resp, err := http.Get(e.url("/.well-known/openid-configuration"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	list := func(name string) []string {
		var out []string
		for _, v := range doc[name].([]any) {
			out = append(out, v.(string))
		}
		return out
	}
	if got := list("subject_types_supported"); !slices.Equal(got, []string{"public", "pairwise"}) {
		t.Errorf("subject_types_supported = %q", got)
	}
	for _, name := range []string{"userinfo_signing_alg_values_supported", "id_token_signing_alg_values_supported"} {
		if got := list(name); !slices.Equal(got, []string{"RS256", "PS256", "ES256", "EdDSA"}) {
			t.Errorf("%s = %q", name, got)
		}
	}
	for _, name := range []string{"request_parameter_supported", "request_uri_parameter_supported", "claims_parameter_supported"} {
		if v, ok := doc[name]; !ok || v != false {
			t.Errorf("%s = %v (present %v), want false", name, v, ok)
		}
	}
	for name := range doc {
		if strings.Contains(name, "encryption") {
			t.Errorf("discovery lists %s, but nothing is encrypted", name)
		}
	}
	// Each listed userinfo algorithm registers; one not listed does not.
	a := dcrEnv(t, authz.RegistrationOpen)
	for _, alg := range append(list("userinfo_signing_alg_values_supported"), "HS256") {
		body := dcrWebApp()
		body["userinfo_signed_response_alg"] = alg
		r := a.dcrCall(t, http.MethodPost, "/oauth2/register", "", body)
		if listed := alg != "HS256"; listed != (r.status == http.StatusCreated) {
			t.Errorf("userinfo_signed_response_alg %s: %d %s", alg, r.status, r.body)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRegistrationKeepsSubjectType: a self-registered client cannot change
// its subject_type (RFC 7592 PUT): either way every user's sub would
// change, and a switch to public would hand it its users' ids, which they
// never consented to give it. The operator can.
func TestRegistrationKeepsSubjectType(t *testing.T) {
	t.Parallel()
	e := dcrEnv(t, authz.RegistrationOpen)
	base := map[string]any{"client_name": "Pairwise app", "redirect_uris": []string{"https://app.example.com/cb"}, "scope": "openid"}
	pairwise := map[string]any{"subject_type": "pairwise"}
	for k, v := range base {
		pairwise[k] = v
	}
	app := e.dcrRegister(t, "", pairwise)
	if app.SubjectType != "pairwise" {
		t.Fatalf("registered %+v", app)
	}
	path := "/oauth2/register/" + app.ClientID
	switched := map[string]any{"client_id": app.ClientID, "subject_type": "public"}
	for k, v := range base {
		switched[k] = v
	}
	wantRegError(t, e.dcrCall(t, http.MethodPut, path, app.RegistrationAccessToken, switched), http.StatusBadRequest, "invalid_client_metadata", "subject_type")
	delete(switched, "subject_type") // the default, public: the same change
	wantRegError(t, e.dcrCall(t, http.MethodPut, path, app.RegistrationAccessToken, switched), http.StatusBadRequest, "invalid_client_metadata", "subject_type")
	switched["subject_type"] = "pairwise"
	if r := e.dcrCall(t, http.MethodPut, path, app.RegistrationAccessToken, switched); r.status != http.StatusOK {
		t.Fatalf("an update keeping subject_type: %s", r)
	}
	m := app
	m.SubjectType, m.ClientSecret = "public", ""
	if _, err := authz.UpdateClient(context.Background(), e.store, app.ClientID, m); err != nil {
		t.Fatalf("the operator's switch to public: %v", err)
	}
}
