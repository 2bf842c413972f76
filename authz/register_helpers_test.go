package authz_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/authz/authz/authz"
)

// Initial access tokens of the "token" registration policy in tests.
const (
	dcrInitialToken = "initial-access-token-for-the-tests-0123456789"
	dcrOtherToken   = "a-second-initial-access-token-abcdefghijklmnop"
)

// dcrEnv starts a server with dynamic client registration under policy.
func dcrEnv(t *testing.T, policy string) *env {
	t.Helper()
	return newEnv(t, func(c *authz.Config) {
		c.Registration = policy
		if policy == authz.RegistrationToken {
			c.RegistrationTokens = []string{dcrInitialToken, dcrOtherToken}
		}
	})
}

// dcrCall sends body (JSON, or a string sent as it is) to path with an
// optional bearer token.
func (e *env) dcrCall(t *testing.T, method, path, token string, body any) reply {
	t.Helper()
	var raw, ct string
	switch b := body.(type) {
	case nil:
	case string:
		raw, ct = b, "application/json"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		raw, ct = string(j), "application/json"
	}
	req := newRequest(t, method, e.url(path), ct, raw)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return send(t, req)
}

// dcrRegister registers metadata through POST /oauth2/register and wants a
// 201 that carries everything RFC 7591 3.2.1 and RFC 7592 3 ask for.
func (e *env) dcrRegister(t *testing.T, token string, metadata any) authz.ClientMetadata {
	t.Helper()
	m := dcrClient(t, e.dcrCall(t, http.MethodPost, "/oauth2/register", token, metadata), http.StatusCreated)
	if m.ClientID == "" || m.ClientIDIssuedAt == 0 || m.RegistrationAccessToken == "" {
		t.Fatalf("registration response lacks client_id, client_id_issued_at or registration_access_token: %+v", m)
	}
	if want := e.issuer + "/oauth2/register/" + m.ClientID; m.RegistrationClientURI != want {
		t.Fatalf("registration_client_uri = %q, want %q", m.RegistrationClientURI, want)
	}
	if (m.ClientSecret != "") != (m.ClientSecretExpiresAt != nil && *m.ClientSecretExpiresAt == 0) {
		t.Fatalf("client_secret and client_secret_expires_at 0 must come together: %+v", m)
	}
	return m
}

// dcrClient decodes a response carrying client metadata, with the status
// and the Cache-Control that a response with credentials needs.
func dcrClient(t *testing.T, r reply, status int) authz.ClientMetadata {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d\n%s", r.status, status, r)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	var m authz.ClientMetadata
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not client metadata: %v\n%s", err, r)
	}
	return m
}

// wantRegError asserts an RFC 7591 3.2.2 error: status, code, and a
// description that mentions what went wrong.
func wantRegError(t *testing.T, r reply, status int, code, mentions string) {
	t.Helper()
	wantOAuthError(t, r, status, code)
	var e struct {
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal(r.body, &e)
	if !strings.Contains(e.Description, mentions) {
		t.Errorf("error_description %q does not mention %q", e.Description, mentions)
	}
	if status == http.StatusUnauthorized && !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("WWW-Authenticate = %q, want Bearer error=\"invalid_token\"", r.header.Get("WWW-Authenticate"))
	}
}

// dcrWebApp is the metadata of a confidential web app.
func dcrWebApp() map[string]any {
	return map[string]any{
		"client_name":   "Registered Web App",
		"redirect_uris": []string{appCallback},
		"scope":         "openid profile",
	}
}
