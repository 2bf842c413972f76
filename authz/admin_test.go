package authz_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/storage"
)

const adminToken = "admin-token-admin-token-admin-token-0123"

// adminEnv is a server with its admin API on a listener of its own.
type adminEnv struct {
	*env
	admin *httptest.Server
}

func newAdminEnv(t *testing.T) *adminEnv {
	t.Helper()
	e := newEnv(t, func(c *authz.Config) { c.AdminToken = adminToken })
	h, err := authz.NewAdmin(e.cfg, e.store, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &adminEnv{env: e, admin: srv}
}

// adminResp is an admin API response with its body read.
type adminResp struct {
	method, path string
	status       int
	header       http.Header
	body         []byte
}

// adminRequest sends a request with the admin token. A non-nil body that
// is not a string is sent as JSON; a string is sent as it is, with
// contentType when that is not empty.
func (a *adminEnv) adminRequest(t *testing.T, method, path, contentType string, body any, header ...string) adminResp {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(raw)
		if contentType == "" {
			contentType = "application/json"
		}
	}
	req, err := http.NewRequest(method, a.admin.URL+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
			continue
		}
		if header[i+1] == "" {
			req.Header.Del(header[i])
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return adminResp{method: method, path: path, status: resp.StatusCode, header: resp.Header, body: raw}
}

func (a *adminEnv) get(t *testing.T, path string) adminResp {
	t.Helper()
	return a.adminRequest(t, http.MethodGet, path, "", nil)
}

// want checks the status and decodes the JSON body into v (when not nil).
func (r adminResp) want(t *testing.T, status int, v any) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s %s: status %d, want %d\n%s", r.method, r.path, r.status, status, r.body)
	}
	if v == nil {
		return
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", r.method, r.path, ct)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("%s %s: body is not the JSON expected: %v\n%s", r.method, r.path, err, r.body)
	}
}

// wantError checks an error response: status, error code, and a
// description mentioning each of mentions.
func (r adminResp) wantError(t *testing.T, status int, code string, mentions ...string) {
	t.Helper()
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if r.status != status {
		t.Errorf("%s %s: status %d, want %d (%s)\n%s", r.method, r.path, r.status, status, code, r.body)
		return
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error != code {
		t.Errorf("%s %s: body %s, want error %q", r.method, r.path, r.body, code)
		return
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", r.method, r.path, ct)
	}
	for _, m := range mentions {
		if !strings.Contains(e.Description, m) {
			t.Errorf("%s %s: error_description %q does not mention %q", r.method, r.path, e.Description, m)
		}
	}
}

// wantNoPasswords fails when a user's JSON shows a password or its hash:
// no member even mentions one.
func (r adminResp) wantNoPasswords(t *testing.T, passwords ...string) {
	t.Helper()
	r.wantNot(t, append([]string{"argon2", "password"}, passwords...)...)
}

// wantNot fails when the body contains any of bad, ignoring case.
func (r adminResp) wantNot(t *testing.T, bad ...string) {
	t.Helper()
	lower := strings.ToLower(string(r.body))
	for _, bad := range bad {
		if strings.Contains(lower, strings.ToLower(bad)) {
			t.Errorf("%s %s: the body shows %q:\n%s", r.method, r.path, bad, r.body)
		}
	}
}

// adminClientCredentials asks for a token with the client_credentials grant
// and returns the status.
func (a *adminEnv) adminClientCredentials(t *testing.T, id, secret string) int {
	t.Helper()
	return a.token(t, url.Values{"grant_type": {"client_credentials"}, "scope": {"reports"}}, id, secret).status
}

func TestAdminNeedsToken(t *testing.T) {
	t.Parallel()
	cfg := authz.Config{}
	if _, err := authz.NewAdmin(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), "AUTHZ_ADMIN_TOKEN") {
		t.Errorf("NewAdmin without a token: %v, want an error naming AUTHZ_ADMIN_TOKEN", err)
	}
	cfg.AdminToken = "short"
	if _, err := authz.NewAdmin(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Errorf("NewAdmin with a short token: %v, want an error", err)
	}
	cfg = authz.Config{AdminWithoutToken: true}
	if _, err := authz.NewAdmin(cfg, nil, nil); err != nil {
		t.Errorf("NewAdmin in dev mode without a token: %v", err)
	}
}

func TestAdminAuth(t *testing.T) {
	t.Parallel()
	a := newAdminEnv(t)
	tests := []struct {
		name, authorization string
		wantErrorParam      bool // error="invalid_token" in WWW-Authenticate
	}{
		{"no header", "", false},
		{"other scheme", "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+adminToken)), false},
		{"empty bearer", "Bearer ", false},
		{"wrong token", "Bearer not-the-admin-token-not-the-admin-token", true},
		{"token prefix", "Bearer " + adminToken[:len(adminToken)-1], true},
		{"token with more", "Bearer " + adminToken + "x", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, path := range []string{"/admin/clients", "/admin/users", "/admin/nowhere"} {
				r := a.adminRequest(t, http.MethodGet, path, "", nil, "Authorization", tc.authorization)
				r.wantError(t, http.StatusUnauthorized, "invalid_token")
				want := `Bearer realm="authz-admin"`
				if tc.wantErrorParam {
					want += `, error="invalid_token"`
				}
				if got := r.header.Get("WWW-Authenticate"); got != want {
					t.Errorf("GET %s: WWW-Authenticate %q, want %q", path, got, want)
				}
			}
			// Nothing happens without the token.
			a.adminRequest(t, http.MethodPost, "/admin/users", "", map[string]any{"username": "mallory", "password": testPassword},
				"Authorization", tc.authorization).wantError(t, http.StatusUnauthorized, "invalid_token")
			if _, err := a.store.UserByUsername(context.Background(), "mallory"); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("a request without the token created a user: %v", err)
			}
		})
	}

	// The scheme is case-insensitive (RFC 7235).
	a.adminRequest(t, http.MethodGet, "/admin/clients", "", nil, "Authorization", "bearer "+adminToken).want(t, http.StatusOK, nil)
	// A browser's cross-site write is refused even with the token.
	a.adminRequest(t, http.MethodPost, "/admin/users", "", map[string]any{"username": "xsite", "password": testPassword},
		"Sec-Fetch-Site", "cross-site").wantError(t, http.StatusForbidden, "forbidden")
	a.adminRequest(t, http.MethodPost, "/admin/users", "", map[string]any{"username": "xorigin", "password": testPassword},
		"Origin", "https://evil.example").wantError(t, http.StatusForbidden, "forbidden")
}

func TestAdminDevModeWithoutToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *authz.Config) { c.AdminWithoutToken = true })
	h, err := authz.NewAdmin(e.cfg, e.store, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	a := &adminEnv{env: e, admin: srv}
	for _, host := range []string{"", "localhost:8081", "LOCALHOST", "127.0.0.1", "[::1]:8081", "[::1]"} {
		r := a.adminRequest(t, http.MethodGet, "/admin/clients", "", nil, "Authorization", "", "Host", host)
		if r.status != http.StatusOK {
			t.Errorf("Host %q: status %d, want 200\n%s", host, r.status, r.body)
		}
	}
	// DNS rebinding: a page on evil.example whose name now points at
	// 127.0.0.1 sends its own name as Host.
	for _, host := range []string{"evil.example", "evil.example:8081", "localhost.evil.example", "127.0.0.1.nip.io:8081", "10.0.0.1:8081"} {
		a.adminRequest(t, http.MethodGet, "/admin/clients", "", nil, "Authorization", "", "Host", host).
			wantError(t, http.StatusForbidden, "forbidden", "localhost")
	}
}

func TestAdminRecoversAndLogs(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	// A nil store panics at the first query: the panic must become a JSON
	// 500 and a log line, not a dropped connection.
	h, err := authz.NewAdmin(authz.Config{AdminToken: adminToken}, nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	body := `{"username": "alice", "password": "` + testPassword + `"}`
	req := httptest.NewRequest(http.MethodPost, "/admin/users", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	r := adminResp{method: "POST", path: "/admin/users", status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	r.wantError(t, http.StatusInternalServerError, "server_error")
	out := logs.String()
	for _, want := range []string{"panic", "method=POST", "path=/admin/users", "status=500"} {
		if !strings.Contains(out, want) {
			t.Errorf("log does not show %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, testPassword) || strings.Contains(out, adminToken) {
		t.Errorf("log shows the request's password or the admin token:\n%s", out)
	}

	// One line per request, 4xx included.
	req = httptest.NewRequest(http.MethodGet, "/admin/nowhere?cursor=secret-ish", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotFound {
		t.Errorf("GET /admin/nowhere: %d, want 404", rec.Code)
	}
	if out := logs.String(); !strings.Contains(out, "path=/admin/nowhere status=404") || strings.Contains(out, "secret-ish") {
		t.Errorf("log of a 404:\n%s\nwant the path and status, and no query string", out)
	}
}

func TestAdminRouting(t *testing.T) {
	t.Parallel()
	a := newAdminEnv(t)
	for _, path := range []string{"/", "/admin", "/admin/", "/admin/clients/", "/admin/nowhere", "/admin/clients/x/y", "/admin/users/x/tokens", "/oauth2/token"} {
		a.get(t, path).wantError(t, http.StatusNotFound, "not_found")
	}
	tests := []struct {
		method, path, allow string
	}{
		{http.MethodDelete, "/admin/clients", "GET, POST"},
		{http.MethodPost, "/admin/clients/x", "DELETE, GET, PATCH, PUT"},
		{http.MethodGet, "/admin/clients/x/secret", "POST"},
		{http.MethodPut, "/admin/users", "GET, POST"},
		{http.MethodPut, "/admin/users/x", "DELETE, GET, PATCH"},
		{http.MethodGet, "/admin/users/x/sessions", "DELETE"},
		{http.MethodPost, "/admin/users/x/consents", "DELETE"},
		{http.MethodOptions, "/admin/users", "GET, POST"},
	}
	for _, tc := range tests {
		r := a.adminRequest(t, tc.method, tc.path, "", nil)
		r.wantError(t, http.StatusMethodNotAllowed, "method_not_allowed")
		if got := r.header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
	if r := a.get(t, "/admin/clients"); r.header.Get("Cache-Control") != "no-store" || r.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("GET /admin/clients headers: %v", r.header)
	}
}

// adminClient is the client metadata the tests send and read back.
type adminClient struct {
	ClientID                string   `json:"client_id"`
	ClientSecret            string   `json:"client_secret"`
	ClientSecretExpiresAt   *int64   `json:"client_secret_expires_at"`
	ClientName              string   `json:"client_name"`
	RedirectURIs            []string `json:"redirect_uris"`
	GrantTypes              []string `json:"grant_types"`
	Scope                   string   `json:"scope"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	Contacts                []string `json:"contacts"`
	LogoURI                 string   `json:"logo_uri"`
	SkipConsent             bool     `json:"skip_consent"`
	PreviousSecretExpiresAt *int64   `json:"previous_client_secret_expires_at"`
}

func TestAdminClients(t *testing.T) {
	t.Parallel()
	a := newAdminEnv(t)

	// Create with a generated id and secret.
	r := a.adminRequest(t, http.MethodPost, "/admin/clients", "", map[string]any{
		"client_name":   "Contacts BFF",
		"redirect_uris": []string{"https://app.example.com/callback"},
		"scope":         "openid contacts",
	})
	var created adminClient
	r.want(t, http.StatusCreated, &created)
	if created.ClientID == "" || created.ClientSecret == "" || created.ClientSecretExpiresAt == nil || *created.ClientSecretExpiresAt != 0 ||
		created.TokenEndpointAuthMethod != "client_secret_basic" || created.Scope != "openid contacts" {
		t.Errorf("created client = %+v", created)
	}
	if loc := r.header.Get("Location"); loc != "/admin/clients/"+created.ClientID {
		t.Errorf("Location = %q", loc)
	}
	stored, err := a.store.Client(context.Background(), created.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	if err := storage.CompareSecret(stored.SecretHash, created.ClientSecret); err != nil {
		t.Errorf("the secret returned does not match the stored hash: %v", err)
	}

	// Create with an id and secret of the operator's choosing; the id may
	// hold characters that need escaping in the path.
	const secret = "an operator chose this secret"
	r = a.adminRequest(t, http.MethodPost, "/admin/clients", "", map[string]any{
		"client_id": "svc/reports+1", "client_secret": secret, "client_name": "Reports",
		"grant_types": []string{"client_credentials"}, "scope": "reports",
	})
	var svc adminClient
	r.want(t, http.StatusCreated, &svc)
	if svc.ClientID != "svc/reports+1" || svc.ClientSecret != secret {
		t.Errorf("created client = %+v", svc)
	}
	loc := r.header.Get("Location")
	if loc != "/admin/clients/svc%2Freports+1" {
		t.Errorf("Location = %q, want the id escaped", loc)
	}
	var got adminClient
	g := a.get(t, loc)
	g.want(t, http.StatusOK, &got)
	if got.ClientID != "svc/reports+1" || got.ClientName != "Reports" {
		t.Errorf("GET %s = %+v", loc, got)
	}
	if strings.Contains(string(g.body), "client_secret\"") || strings.Contains(string(g.body), secret) {
		t.Errorf("GET shows the secret:\n%s", g.body)
	}
	if st := a.adminClientCredentials(t, svc.ClientID, secret); st != http.StatusOK {
		t.Errorf("client_credentials with the chosen secret: %d", st)
	}

	// An id that is taken.
	a.adminRequest(t, http.MethodPost, "/admin/clients", "", map[string]any{
		"client_id": "svc/reports+1", "client_name": "Again", "grant_types": []string{"client_credentials"},
	}).wantError(t, http.StatusConflict, "conflict", "svc/reports+1")

	// PUT replaces everything: what it leaves out takes its default.
	path := "/admin/clients/" + created.ClientID
	var put adminClient
	a.adminRequest(t, http.MethodPut, path, "", map[string]any{
		"client_name":   "Renamed",
		"redirect_uris": []string{"https://app.example.com/callback2"},
	}).want(t, http.StatusOK, &put)
	if put.ClientName != "Renamed" || put.Scope != authz.DefaultClientScope || strings.Join(put.RedirectURIs, " ") != "https://app.example.com/callback2" {
		t.Errorf("after PUT: %+v", put)
	}
	if put.ClientSecret != "" {
		t.Errorf("PUT of a client that keeps its secret returned a secret")
	}
	stored, err = a.store.Client(context.Background(), created.ClientID)
	if err != nil {
		t.Fatal(err)
	}
	if err := storage.CompareSecret(stored.SecretHash, created.ClientSecret); err != nil {
		t.Errorf("PUT changed the secret: %v", err)
	}
	a.adminRequest(t, http.MethodPut, path, "", map[string]any{
		"client_name": "X", "redirect_uris": []string{"https://app.example.com/cb"}, "client_secret": "new-secret-new-secret",
	}).wantError(t, http.StatusBadRequest, "invalid_client_metadata", "rotate")
	a.adminRequest(t, http.MethodPut, path, "", map[string]any{
		"client_id": "another", "client_name": "X", "redirect_uris": []string{"https://app.example.com/cb"},
	}).wantError(t, http.StatusBadRequest, "invalid_client_metadata", "does not match")
	a.adminRequest(t, http.MethodPut, path, "", map[string]any{"client_name": "X"}).
		wantError(t, http.StatusBadRequest, "invalid_redirect_uri", "at least one redirect URI")
	a.adminRequest(t, http.MethodPut, path, "", `{"client_name": 7}`, "Content-Type", "application/json").
		wantError(t, http.StatusBadRequest, "invalid_client_metadata", "client_name")
	a.adminRequest(t, http.MethodPut, "/admin/clients/nope", "", map[string]any{
		"client_name": "X", "redirect_uris": []string{"https://app.example.com/cb"},
	}).wantError(t, http.StatusNotFound, "not_found", "nope")

	// Delete: gone, with what was issued to it.
	tok := a.token(t, url.Values{"grant_type": {"client_credentials"}, "scope": {"reports"}}, svc.ClientID, secret)
	if tok.status != http.StatusOK {
		t.Fatalf("client_credentials: %d %+v", tok.status, tok)
	}
	a.adminRequest(t, http.MethodDelete, loc, "", nil).want(t, http.StatusNoContent, nil)
	a.get(t, loc).wantError(t, http.StatusNotFound, "not_found")
	a.adminRequest(t, http.MethodDelete, loc, "", nil).wantError(t, http.StatusNotFound, "not_found")
	if st := a.adminClientCredentials(t, svc.ClientID, secret); st != http.StatusUnauthorized {
		t.Errorf("client_credentials of a deleted client: %d, want 401", st)
	}
	a.get(t, "/admin/clients/nope").wantError(t, http.StatusNotFound, "not_found", `"nope"`)
	a.get(t, "/admin/clients/"+url.PathEscape(created.ClientID)+"?x=1").wantError(t, http.StatusBadRequest, "invalid_request", `"x"`)
}

func TestAdminClientBadInput(t *testing.T) {
	t.Parallel()
	a := newAdminEnv(t)
	valid := `{"client_name": "X", "redirect_uris": ["https://app.example.com/cb"]}`
	tests := []struct {
		name, contentType, body string
		status                  int
		code                    string
		mention                 string
	}{
		{"invalid JSON", "application/json", `{"client_name": "X",`, 400, "invalid_request", "not valid JSON"},
		{"not JSON at all", "application/json", `client_name=X`, 400, "invalid_request", "not valid JSON"},
		{"redirect_uris a string", "application/json", `{"client_name": "X", "redirect_uris": "x"}`, 400, "invalid_client_metadata", `"redirect_uris" must be an array of strings`},
		{"skip_consent a string", "application/json", `{"client_name": "X", "skip_consent": "yes"}`, 400, "invalid_client_metadata", `"skip_consent" must be true or false`},
		{"lifespan a string", "application/json", `{"client_name": "X", "access_token_lifespan": "1h"}`, 400, "invalid_client_metadata", `"access_token_lifespan" must be an integer`},
		{"unknown field", "application/json", `{"client_name": "X", "colour": "red"}`, 400, "invalid_client_metadata", `unknown field "colour"`},
		{"array", "application/json", `[]`, 400, "invalid_request", "must be a JSON object"},
		{"empty body", "application/json", ``, 400, "invalid_request", "empty"},
		{"two objects", "application/json", valid + valid, 400, "invalid_request", "data after the JSON object"},
		{"no Content-Type", "", valid, 415, "invalid_request", "Content-Type: application/json"},
		{"form Content-Type", "application/x-www-form-urlencoded", valid, 415, "invalid_request", "Content-Type: application/json"},
		{"too large", "application/json", `{"client_name": "` + strings.Repeat("x", 70<<10) + `"}`, 413, "invalid_request", "larger than"},
		{"relative redirect URI", "application/json", `{"client_name": "X", "redirect_uris": ["/cb"]}`, 400, "invalid_redirect_uri", "not absolute"},
		{"unknown grant type", "application/json", `{"client_name": "X", "grant_types": ["password"]}`, 400, "invalid_client_metadata", `unknown grant type "password"`},
		{"private_key_jwt without keys", "application/json", `{"client_name": "X", "grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt"}`, 400, "invalid_client_metadata", "exactly one of jwks and jwks_uri"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := a.adminRequest(t, http.MethodPost, "/admin/clients", "", tc.body, "Content-Type", tc.contentType)
			r.wantError(t, tc.status, tc.code, tc.mention)
		})
	}
	t.Run("query parameter", func(t *testing.T) {
		t.Parallel()
		a.adminRequest(t, http.MethodPost, "/admin/clients?client_id=x", "application/json", valid).
			wantError(t, http.StatusBadRequest, "invalid_request", `unknown query parameter "client_id"`)
	})
	// Nothing was stored by any of them.
	t.Cleanup(func() {
		cs, err := a.store.ListClients(context.Background(), "", 10)
		if err != nil || len(cs) != 0 {
			t.Errorf("bad requests stored %d clients (%v)", len(cs), err)
		}
	})
}

func TestAdminClientPatch(t *testing.T) {
	t.Parallel()
	a := newAdminEnv(t)
	var c adminClient
	a.adminRequest(t, http.MethodPost, "/admin/clients", "", map[string]any{
		"client_name": "Portal", "redirect_uris": []string{"https://portal.example.com/cb"},
		"grant_types": []string{"authorization_code", "refresh_token", "client_credentials"},
		"scope":       "openid reports", "contacts": []string{"ops@example.com"},
		"logo_uri": "https://portal.example.com/logo.png", "skip_consent": true,
	}).want(t, http.StatusCreated, &c)
	path := "/admin/clients/" + c.ClientID
	patch := func(contentType, body string) adminResp {
		t.Helper()
		return a.adminRequest(t, http.MethodPatch, path, "", body, "Content-Type", contentType)
	}

	// Members given change; the others stay.
	var p adminClient
	patch("application/merge-patch+json", `{"client_name": "Portal 2", "contacts": ["ops@example.com", "dev@example.com"]}`).want(t, http.StatusOK, &p)
	if p.ClientName != "Portal 2" || strings.Join(p.Contacts, ",") != "ops@example.com,dev@example.com" ||
		p.Scope != "openid reports" || p.LogoURI != "https://portal.example.com/logo.png" || !p.SkipConsent ||
		strings.Join(p.RedirectURIs, ",") != "https://portal.example.com/cb" || len(p.GrantTypes) != 3 {
		t.Errorf("after patching the name and contacts: %+v", p)
	}
	if p.ClientSecret != "" {
		t.Errorf("PATCH returned a secret")
	}
	// null removes a member: it takes its default.
	p = adminClient{}
	patch("application/json", `{"scope": null, "logo_uri": null, "contacts": null, "skip_consent": null}`).want(t, http.StatusOK, &p)
	if p.Scope != authz.DefaultClientScope || p.LogoURI != "" || p.Contacts != nil || p.SkipConsent || p.ClientName != "Portal 2" {
		t.Errorf("after patching with nulls: %+v", p)
	}
	var fetched adminClient
	a.get(t, path).want(t, http.StatusOK, &fetched)
	if fetched.Scope != authz.DefaultClientScope || fetched.LogoURI != "" || fetched.ClientName != "Portal 2" {
		t.Errorf("stored after PATCH: %+v", fetched)
	}
	// The secret survives a patch.
	if st := a.token(t, url.Values{"grant_type": {"client_credentials"}}, c.ClientID, c.ClientSecret).status; st != http.StatusOK {
		t.Errorf("client_credentials after PATCH: %d", st)
	}
	// An empty patch changes nothing.
	patch("application/merge-patch+json", `{}`).want(t, http.StatusOK, &p)
	if p.ClientName != "Portal 2" {
		t.Errorf("after an empty patch: %+v", p)
	}

	bad := []struct {
		name, contentType, body string
		status                  int
		code, mention           string
	}{
		{"unknown field", "application/merge-patch+json", `{"colour": "red"}`, 400, "invalid_client_metadata", `unknown field "colour"`},
		{"wrong type", "application/merge-patch+json", `{"redirect_uris": "x"}`, 400, "invalid_client_metadata", `"redirect_uris" must be an array of strings`},
		{"invalid redirect URI", "application/merge-patch+json", `{"redirect_uris": ["/relative"]}`, 400, "invalid_redirect_uri", "not absolute"},
		{"removing what a grant needs", "application/merge-patch+json", `{"redirect_uris": null}`, 400, "invalid_redirect_uri", "at least one redirect URI"},
		{"another client id", "application/merge-patch+json", `{"client_id": "other"}`, 400, "invalid_client_metadata", "does not match"},
		{"a secret", "application/merge-patch+json", `{"client_secret": "s3cret-s3cret"}`, 400, "invalid_client_metadata", "rotate it instead"},
		{"invalid JSON", "application/merge-patch+json", `{"client_name": `, 400, "invalid_request", "not valid JSON"},
		{"array", "application/merge-patch+json", `[{"client_name": "X"}]`, 400, "invalid_request", "must be a JSON object"},
		{"null", "application/merge-patch+json", `null`, 400, "invalid_request", "must be a JSON object"},
		{"trailing data", "application/merge-patch+json", `{} {}`, 400, "invalid_request", "data after"},
		{"text", "text/plain", `{"client_name": "X"}`, 415, "invalid_request", "merge-patch+json"},
		{"no Content-Type", "", `{"client_name": "X"}`, 415, "invalid_request", "merge-patch+json"},
	}
	for _, tc := range bad {
		patch(tc.contentType, tc.body).wantError(t, tc.status, tc.code, tc.mention)
	}
	fetched = adminClient{}
	a.get(t, path).want(t, http.StatusOK, &fetched)
	if fetched.ClientName != "Portal 2" || strings.Join(fetched.RedirectURIs, ",") != "https://portal.example.com/cb" {
		t.Errorf("a refused patch changed the client: %+v", fetched)
	}
	a.adminRequest(t, http.MethodPatch, "/admin/clients/nope", "application/merge-patch+json", `{"client_name": "X"}`).
		wantError(t, http.StatusNotFound, "not_found", "nope")
}

// adminPages walks a list endpoint with limit and returns every page.
func adminPages[T any](t *testing.T, a *adminEnv, path string, limit int) [][]T {
	t.Helper()
	var pages [][]T
	cursor := ""
	for range 20 {
		q := url.Values{"limit": {fmt.Sprint(limit)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var p struct {
			Items      []T     `json:"items"`
			NextCursor *string `json:"next_cursor"`
		}
		r := a.get(t, path+"?"+q.Encode())
		r.want(t, http.StatusOK, &p)
		if p.Items == nil {
			t.Fatalf("GET %s: no items array:\n%s", r.path, r.body)
		}
		pages = append(pages, p.Items)
		if p.NextCursor == nil {
			return pages
		}
		if *p.NextCursor == "" {
			t.Fatalf("GET %s: empty next_cursor", r.path)
		}
		cursor = *p.NextCursor
	}
	t.Fatalf("GET %s: more than 20 pages", path)
	return nil
}

func TestAdminClientsPagination(t *testing.T) {
	t.Parallel()
	a := newAdminEnv(t)
	var empty struct {
		Items []adminClient `json:"items"`
	}
	r := a.get(t, "/admin/clients")
	r.want(t, http.StatusOK, &empty)
	if strings.TrimSpace(string(r.body)) != `{"items":[]}` {
		t.Errorf("empty list = %s, want {\"items\":[]}", r.body)
	}
	for _, id := range []string{"c3", "c1", "c5", "c2", "c4"} {
		a.createClient(t, authz.ClientMetadata{ClientID: id, ClientName: id, GrantTypes: []string{"client_credentials"}})
	}
	ids := func(pages [][]adminClient) string {
		var out []string
		for _, p := range pages {
			var page []string
			for _, c := range p {
				page = append(page, c.ClientID)
				if c.ClientSecret != "" {
					t.Errorf("list shows a secret of %s", c.ClientID)
				}
			}
			out = append(out, strings.Join(page, ","))
		}
		return strings.Join(out, " | ")
	}
	for _, tc := range []struct {
		limit int
		want  string
	}{
		{2, "c1,c2 | c3,c4 | c5"},
		{1, "c1 | c2 | c3 | c4 | c5"},
		{5, "c1,c2,c3,c4,c5"}, // exactly a page: no next cursor
		{500, "c1,c2,c3,c4,c5"},
	} {
		if got := ids(adminPages[adminClient](t, a, "/admin/clients", tc.limit)); got != tc.want {
			t.Errorf("limit %d: pages %s, want %s", tc.limit, got, tc.want)
		}
	}
	var all struct {
		Items []adminClient `json:"items"`
	}
	a.get(t, "/admin/clients").want(t, http.StatusOK, &all)
	if len(all.Items) != 5 {
		t.Errorf("default page has %d clients, want 5", len(all.Items))
	}

	for _, q := range []string{"limit=0", "limit=501", "limit=-1", "limit=abc", "limit=", "limit=1.5", "limit=1&limit=2",
		"cursor=***", "cursor=%20", "cursor=AA", "cursor=_w", "page=2", "after=c1"} {
		a.get(t, "/admin/clients?"+q).wantError(t, http.StatusBadRequest, "invalid_request")
		a.get(t, "/admin/users?"+q).wantError(t, http.StatusBadRequest, "invalid_request")
	}
}

// adminUser is a user as the admin API shows one.
type adminUser struct {
	ID            string    `json:"id"`
	Username      string    `json:"username"`
	Email         string    `json:"email"`
	EmailVerified bool      `json:"email_verified"`
	Name          string    `json:"name"`
	Disabled      bool      `json:"disabled"`
	CreatedAt     time.Time `json:"created_at"`
}

func TestAdminUsers(t *testing.T) {
	t.Parallel()
	a := newAdminEnv(t)
	ctx := context.Background()

	r := a.adminRequest(t, http.MethodPost, "/admin/users", "", map[string]any{
		"username": "alice", "password": testPassword, "email": "alice@example.com", "name": "Alice Liddell",
	})
	var alice adminUser
	r.want(t, http.StatusCreated, &alice)
	r.wantNoPasswords(t, testPassword)
	if alice.ID == "" || alice.Username != "alice" || alice.Email != "alice@example.com" || alice.Name != "Alice Liddell" ||
		alice.EmailVerified || alice.Disabled || alice.CreatedAt.IsZero() {
		t.Errorf("created user = %+v", alice)
	}
	path := "/admin/users/" + alice.ID
	if loc := r.header.Get("Location"); loc != path {
		t.Errorf("Location = %q, want %q", loc, path)
	}
	if _, err := a.store.Authenticate(ctx, "alice", testPassword); err != nil {
		t.Errorf("authenticate with the password given: %v", err)
	}
	var got adminUser
	g := a.get(t, path)
	g.want(t, http.StatusOK, &got)
	g.wantNoPasswords(t)
	if got.ID != alice.ID || got.Username != "alice" {
		t.Errorf("GET %s = %+v", path, got)
	}

	a.adminRequest(t, http.MethodPost, "/admin/users", "", map[string]any{"username": "ALICE", "password": testPassword}).
		wantError(t, http.StatusConflict, "conflict", `"ALICE"`)

	var disabled adminUser
	a.adminRequest(t, http.MethodPost, "/admin/users", "", map[string]any{
		"username": "bob", "password": testPassword, "email": "bob@example.com", "email_verified": true, "disabled": true,
	}).want(t, http.StatusCreated, &disabled)
	if !disabled.Disabled || !disabled.EmailVerified {
		t.Errorf("created user = %+v", disabled)
	}
	if _, err := a.store.Authenticate(ctx, "bob", testPassword); !errors.Is(err, storage.ErrInvalidCredentials) {
		t.Errorf("a user created disabled can log in: %v", err)
	}

	patch := func(body string) adminResp {
		t.Helper()
		r := a.adminRequest(t, http.MethodPatch, path, "application/merge-patch+json", body)
		if r.status == http.StatusOK {
			r.wantNoPasswords(t)
		}
		return r
	}
	var u adminUser
	patch(`{"name": "Alice L.", "email_verified": true}`).want(t, http.StatusOK, &u)
	if u.Name != "Alice L." || !u.EmailVerified || u.Email != "alice@example.com" {
		t.Errorf("after PATCH name and email_verified: %+v", u)
	}
	// A new address is not verified, unless the patch says so.
	patch(`{"email": "alice@example.org"}`).want(t, http.StatusOK, &u)
	if u.Email != "alice@example.org" || u.EmailVerified {
		t.Errorf("after PATCH email: %+v, want the new address unverified", u)
	}
	patch(`{"email": "alice@example.net", "email_verified": true}`).want(t, http.StatusOK, &u)
	if u.Email != "alice@example.net" || !u.EmailVerified {
		t.Errorf("after PATCH email and email_verified: %+v", u)
	}
	// null removes email and name.
	u = adminUser{}
	patch(`{"email": null, "name": null}`).want(t, http.StatusOK, &u)
	if u.Email != "" || u.Name != "" || u.EmailVerified || u.Username != "alice" {
		t.Errorf("after PATCH with nulls: %+v", u)
	}
	patch(`{"email_verified": true}`).wantError(t, http.StatusBadRequest, "invalid_request", "without an email address")

	// A new password works at once, the old one no more, and the user's
	// sessions end.
	cookie, _, err := a.store.CreateLoginSession(ctx, alice.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	const newPassword = "battery staple horse correct"
	patch(`{"password": "`+newPassword+`"}`).want(t, http.StatusOK, &u)
	if _, err := a.store.Authenticate(ctx, "alice", newPassword); err != nil {
		t.Errorf("authenticate with the new password: %v", err)
	}
	if _, err := a.store.Authenticate(ctx, "alice", testPassword); !errors.Is(err, storage.ErrInvalidCredentials) {
		t.Errorf("authenticate with the old password: %v, want ErrInvalidCredentials", err)
	}
	if _, _, err := a.store.SessionUser(ctx, cookie); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("login session after a password change: %v, want it ended", err)
	}

	patch(`{"disabled": true}`).want(t, http.StatusOK, &u)
	if !u.Disabled {
		t.Errorf("after PATCH disabled: %+v", u)
	}
	if _, err := a.store.Authenticate(ctx, "alice", newPassword); !errors.Is(err, storage.ErrInvalidCredentials) {
		t.Errorf("a disabled user can log in: %v", err)
	}
	patch(`{"disabled": false}`).want(t, http.StatusOK, &u)
	if _, err := a.store.Authenticate(ctx, "alice", newPassword); err != nil {
		t.Errorf("a re-enabled user cannot log in: %v", err)
	}

	for _, tc := range []struct {
		body, code, mention string
	}{
		{`{"password": null}`, "invalid_request", `"password" cannot be null`},
		{`{"disabled": null}`, "invalid_request", `"disabled" cannot be null`},
		{`{"username": "alice2"}`, "invalid_request", `unknown field "username"`},
		{`{"password_hash": "$argon2id$v=19$..."}`, "invalid_request", `unknown field "password_hash"`},
		{`{"disabled": "yes"}`, "invalid_request", `"disabled" must be true or false`},
		{`{"email": 5}`, "invalid_request", `"email" must be a string`},
		{`{"password": "short"}`, "invalid_request", "password too short"},
		{`{"email": "Alice <alice@example.com>"}`, "invalid_request", "not an address"},
		{`{"name": "a\u0007b"}`, "invalid_request", "control characters"},
		{`{"name": `, "invalid_request", "not valid JSON"},
	} {
		patch(tc.body).wantError(t, http.StatusBadRequest, tc.code, tc.mention)
	}
	a.adminRequest(t, http.MethodPatch, path, "text/plain", `{"name": "X"}`).wantError(t, http.StatusUnsupportedMediaType, "invalid_request")
	if _, err := a.store.Authenticate(ctx, "alice", newPassword); err != nil {
		t.Errorf("a refused patch changed the password: %v", err)
	}

	// Delete.
	a.adminRequest(t, http.MethodDelete, path, "", nil).want(t, http.StatusNoContent, nil)
	a.get(t, path).wantError(t, http.StatusNotFound, "not_found", alice.ID)
	a.adminRequest(t, http.MethodDelete, path, "", nil).wantError(t, http.StatusNotFound, "not_found")
	a.adminRequest(t, http.MethodPatch, path, "application/json", `{"name": "X"}`).wantError(t, http.StatusNotFound, "not_found")
	a.get(t, "/admin/users/nope").wantError(t, http.StatusNotFound, "not_found", `"nope"`)
	if _, err := a.store.UserByUsername(ctx, "alice"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("deleted user still stored: %v", err)
	}
}

func TestAdminUserBadInput(t *testing.T) {
	t.Parallel()
	a := newAdminEnv(t)
	tests := []struct {
		name, contentType, body string
		status                  int
		mention                 string
	}{
		{"invalid JSON", "application/json", `{"username": "u1"`, 400, "not valid JSON"},
		{"username a number", "application/json", `{"username": 5, "password": "a good password"}`, 400, `"username" must be a string`},
		{"disabled a string", "application/json", `{"username": "u1", "password": "a good password", "disabled": "no"}`, 400, `"disabled" must be true or false`},
		{"unknown field", "application/json", `{"username": "u1", "password": "a good password", "role": "admin"}`, 400, `unknown field "role"`},
		{"a password hash", "application/json", `{"username": "u1", "password_hash": "$argon2id$v=19$m=1,t=1,p=1$x$y"}`, 400, `unknown field "password_hash"`},
		{"an id", "application/json", `{"id": "00000000000000000000000000000000", "username": "u1", "password": "a good password"}`, 400, `unknown field "id"`},
		{"no password", "application/json", `{"username": "u1"}`, 400, "password is required"},
		{"short password", "application/json", `{"username": "u1", "password": "1234567"}`, 400, "password too short: it has 7 characters; at least 8 are required"},
		{"long password", "application/json", `{"username": "u1", "password": "` + strings.Repeat("x", 1025) + `"}`, 400, "password too long"},
		{"no username", "application/json", `{"password": "a good password"}`, 400, "must have 1 to 64"},
		{"username with a space", "application/json", `{"username": "alice smith", "password": "a good password"}`, 400, "must not contain spaces"},
		{"username too long", "application/json", `{"username": "` + strings.Repeat("a", 65) + `", "password": "a good password"}`, 400, "is 65 characters long"},
		{"bad email", "application/json", `{"username": "u1", "password": "a good password", "email": "not-an-email"}`, 400, "not an address"},
		{"verified without email", "application/json", `{"username": "u1", "password": "a good password", "email_verified": true}`, 400, "without an email address"},
		{"no Content-Type", "", `{"username": "u1", "password": "a good password"}`, 415, "Content-Type: application/json"},
		{"too large", "application/json", `{"username": "u1", "password": "` + strings.Repeat("x", 20<<10) + `"}`, 413, "larger than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := a.adminRequest(t, http.MethodPost, "/admin/users", "", tc.body, "Content-Type", tc.contentType)
			r.wantError(t, tc.status, "invalid_request", tc.mention)
			r.wantNot(t, "a good password", "argon2")
		})
	}
	t.Cleanup(func() {
		us, err := a.store.ListUsers(context.Background(), "", 10)
		if err != nil || len(us) != 0 {
			t.Errorf("bad requests stored %d users (%v)", len(us), err)
		}
	})
}

func TestAdminUsersPagination(t *testing.T) {
	t.Parallel()
	a := newAdminEnv(t)
	for _, name := range []string{"eve", "Bob", "alice", "Dave", "carol"} {
		a.createUser(t, name)
	}
	names := func(pages [][]adminUser) string {
		var out []string
		for _, p := range pages {
			var page []string
			for _, u := range p {
				page = append(page, u.Username)
			}
			out = append(out, strings.Join(page, ","))
		}
		return strings.Join(out, " | ")
	}
	// Ordered by username, ignoring case, as usernames are unique.
	for _, tc := range []struct {
		limit int
		want  string
	}{
		{2, "alice,Bob | carol,Dave | eve"},
		{4, "alice,Bob,carol,Dave | eve"},
		{5, "alice,Bob,carol,Dave,eve"},
	} {
		if got := names(adminPages[adminUser](t, a, "/admin/users", tc.limit)); got != tc.want {
			t.Errorf("limit %d: pages %s, want %s", tc.limit, got, tc.want)
		}
	}
	r := a.get(t, "/admin/users")
	var all struct {
		Items []adminUser `json:"items"`
	}
	r.want(t, http.StatusOK, &all)
	r.wantNoPasswords(t, testPassword)
	if len(all.Items) != 5 || all.Items[0].ID == "" {
		t.Errorf("default page: %s", r.body)
	}
}

func TestAdminUserSessions(t *testing.T) {
	t.Parallel()
	a := newAdminEnv(t)
	ctx := context.Background()
	alice, bob := a.createUser(t, "alice"), a.createUser(t, "bob")
	var aliceCookies []string
	for range 2 {
		c, _, err := a.store.CreateLoginSession(ctx, alice.ID, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		aliceCookies = append(aliceCookies, c)
	}
	bobCookie, _, err := a.store.CreateLoginSession(ctx, bob.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	a.adminRequest(t, http.MethodDelete, "/admin/users/"+alice.ID+"/sessions", "", nil).want(t, http.StatusNoContent, nil)
	for _, c := range aliceCookies {
		if _, _, err := a.store.SessionUser(ctx, c); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("alice's session after DELETE sessions: %v, want it ended", err)
		}
	}
	if u, _, err := a.store.SessionUser(ctx, bobCookie); err != nil || u.ID != bob.ID {
		t.Errorf("bob's session ended with alice's: %v", err)
	}
	// Ending no sessions is fine; an unknown user is not.
	a.adminRequest(t, http.MethodDelete, "/admin/users/"+alice.ID+"/sessions", "", nil).want(t, http.StatusNoContent, nil)
	a.adminRequest(t, http.MethodDelete, "/admin/users/nope/sessions", "", nil).wantError(t, http.StatusNotFound, "not_found", `"nope"`)
}

func TestAdminUserConsents(t *testing.T) {
	t.Parallel()
	a := newAdminEnv(t)
	ctx := context.Background()
	appA, appB := a.confidential(t, "client_secret_basic"), a.confidential(t, "client_secret_basic")
	rs := a.resourceServer(t)
	alice := a.createUser(t, "alice")
	b := newBrowser(t)

	signIn := func(c authz.ClientMetadata) tokenResponse {
		t.Helper()
		loc := authorizeCode(t, a.env, b, c.ClientID, map[string]string{
			"response_type": "code", "client_id": c.ClientID, "scope": "openid contacts",
			"redirect_uri": "https://app.example.com/callback", "state": "state-123",
		}, "alice")
		tok := a.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
			"redirect_uri": {"https://app.example.com/callback"}}, c.ClientID, c.ClientSecret)
		if tok.status != http.StatusOK || tok.AccessToken == "" || tok.RefreshToken == "" {
			t.Fatalf("code exchange: %d %+v", tok.status, tok)
		}
		return tok
	}
	tokA, tokB := signIn(appA), signIn(appB)
	active := func(tok string) bool {
		t.Helper()
		return a.introspect(t, tok, rs.ClientID, rs.ClientSecret)["active"] == true
	}
	consented := func(c authz.ClientMetadata) bool {
		t.Helper()
		ok, err := a.store.HasConsent(ctx, alice.ID, c.ClientID, []string{"openid", "contacts"})
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !consented(appA) || !consented(appB) || !active(tokA.AccessToken) || !active(tokB.AccessToken) {
		t.Fatal("the flows left no consent or no active token")
	}

	// Withdraw the consent to app A: its tokens go, app B's stay.
	base := "/admin/users/" + alice.ID + "/consents"
	a.adminRequest(t, http.MethodDelete, base+"?client_id="+url.QueryEscape(appA.ClientID), "", nil).want(t, http.StatusNoContent, nil)
	if consented(appA) || !consented(appB) {
		t.Errorf("after withdrawing app A: consent A %v, B %v; want false, true", consented(appA), consented(appB))
	}
	if active(tokA.AccessToken) {
		t.Error("app A's access token is active after its consent was withdrawn")
	}
	if tr := a.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tokA.RefreshToken}}, appA.ClientID, appA.ClientSecret); tr.status != http.StatusBadRequest || tr.Error != "invalid_grant" {
		t.Errorf("app A's refresh token after its consent was withdrawn: %d %s", tr.status, tr.Error)
	}
	if !active(tokB.AccessToken) {
		t.Error("app B's access token was revoked with app A's consent")
	}

	// Without client_id: every consent.
	a.adminRequest(t, http.MethodDelete, base, "", nil).want(t, http.StatusNoContent, nil)
	if consented(appB) || active(tokB.AccessToken) {
		t.Error("app B's consent or token survived withdrawing every consent")
	}

	a.adminRequest(t, http.MethodDelete, "/admin/users/nope/consents", "", nil).wantError(t, http.StatusNotFound, "not_found", `user with id "nope"`)
	a.adminRequest(t, http.MethodDelete, base+"?client_id=nope", "", nil).wantError(t, http.StatusNotFound, "not_found", `client with id "nope"`)
	a.adminRequest(t, http.MethodDelete, base+"?client_id=", "", nil).wantError(t, http.StatusBadRequest, "invalid_request", "client_id")
	a.adminRequest(t, http.MethodDelete, base+"?client=x", "", nil).wantError(t, http.StatusBadRequest, "invalid_request", `unknown query parameter "client"`)
}

func TestAdminRotateSecret(t *testing.T) {
	t.Parallel()
	a := newAdminEnv(t)
	var c adminClient
	a.adminRequest(t, http.MethodPost, "/admin/clients", "", map[string]any{
		"client_name": "Batch job", "grant_types": []string{"client_credentials"}, "scope": "reports",
	}).want(t, http.StatusCreated, &c)
	s0 := c.ClientSecret
	path := "/admin/clients/" + c.ClientID + "/secret"
	works := func(secret string) bool {
		t.Helper()
		switch st := a.adminClientCredentials(t, c.ClientID, secret); st {
		case http.StatusOK:
			return true
		case http.StatusUnauthorized:
			return false
		default:
			t.Fatalf("client_credentials: status %d", st)
			return false
		}
	}

	// No body: a generated secret, the old one kept for the configured grace.
	before := time.Now()
	var r1 adminClient
	a.adminRequest(t, http.MethodPost, path, "", nil).want(t, http.StatusOK, &r1)
	s1 := r1.ClientSecret
	if s1 == "" || s1 == s0 || r1.ClientID != c.ClientID || r1.ClientSecretExpiresAt == nil || *r1.ClientSecretExpiresAt != 0 {
		t.Fatalf("rotation answered %+v", r1)
	}
	if r1.PreviousSecretExpiresAt == nil {
		t.Fatal("no previous_client_secret_expires_at after a rotation with a grace period")
	}
	if exp := time.Unix(*r1.PreviousSecretExpiresAt, 0); exp.Before(before.Add(authz.DefaultClientSecretGrace-time.Minute)) || exp.After(time.Now().Add(authz.DefaultClientSecretGrace+time.Minute)) {
		t.Errorf("previous secret expires at %v, want about now + %v", exp, authz.DefaultClientSecretGrace)
	}
	if !works(s1) || !works(s0) {
		t.Errorf("within the grace period: new secret works %v, old %v; want both", works(s1), works(s0))
	}

	// A secret of the operator's choosing, with a grace period of its own.
	const chosen = "an operator chose this secret"
	var r2 adminClient
	a.adminRequest(t, http.MethodPost, path, "", map[string]any{"client_secret": chosen, "grace_period": 600}).want(t, http.StatusOK, &r2)
	if r2.ClientSecret != chosen || r2.PreviousSecretExpiresAt == nil ||
		time.Until(time.Unix(*r2.PreviousSecretExpiresAt, 0)) > 11*time.Minute || time.Until(time.Unix(*r2.PreviousSecretExpiresAt, 0)) < 9*time.Minute {
		t.Errorf("rotation to a chosen secret answered %+v", r2)
	}
	if !works(chosen) || !works(s1) || works(s0) {
		t.Errorf("after a second rotation: chosen %v, previous %v, oldest %v; want true, true, false", works(chosen), works(s1), works(s0))
	}

	// grace_period 0: the previous secret ends at once.
	var r3 adminClient
	a.adminRequest(t, http.MethodPost, path, "application/json", `{"grace_period": 0}`).want(t, http.StatusOK, &r3)
	if r3.PreviousSecretExpiresAt != nil {
		t.Errorf("rotation with grace_period 0 answered previous_client_secret_expires_at %d", *r3.PreviousSecretExpiresAt)
	}
	if !works(r3.ClientSecret) || works(chosen) || works(s1) {
		t.Errorf("after a rotation without grace: new %v, previous %v, older %v; want true, false, false", works(r3.ClientSecret), works(chosen), works(s1))
	}
	// The secret is shown once: not by GET.
	if g := a.get(t, "/admin/clients/"+c.ClientID); strings.Contains(string(g.body), r3.ClientSecret) {
		t.Errorf("GET shows the rotated secret:\n%s", g.body)
	}

	for _, tc := range []struct {
		name, contentType, body string
		status                  int
		mention                 string
	}{
		{"negative grace", "application/json", `{"grace_period": -1}`, 400, "grace_period"},
		{"grace as a duration", "application/json", `{"grace_period": "1h"}`, 400, `"grace_period" must be an integer`},
		{"fractional grace", "application/json", `{"grace_period": 1.5}`, 400, `"grace_period" must be an integer`},
		{"unknown field", "application/json", `{"grace": 60}`, 400, `unknown field "grace"`},
		{"invalid JSON", "application/json", `{"grace_period": `, 400, "not valid JSON"},
		{"body without Content-Type", "", `{"grace_period": 0}`, 415, "application/json"},
		{"form", "application/x-www-form-urlencoded", `grace_period=0`, 415, "application/json"},
	} {
		a.adminRequest(t, http.MethodPost, path, "", tc.body, "Content-Type", tc.contentType).wantError(t, tc.status, "invalid_request", tc.mention)
	}
	if !works(r3.ClientSecret) {
		t.Error("a refused rotation changed the secret")
	}

	pub := a.createClient(t, authzPublicClient())
	a.adminRequest(t, http.MethodPost, "/admin/clients/"+pub.ClientID+"/secret", "", nil).
		wantError(t, http.StatusBadRequest, "invalid_request", "does not authenticate with a client secret")
	a.adminRequest(t, http.MethodPost, "/admin/clients/nope/secret", "", nil).wantError(t, http.StatusNotFound, "not_found", `"nope"`)
}
