package authz_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/pgcluster"
	"github.com/authz/authz/storage"
)

// ownCluster starts a PostgreSQL cluster for this test alone, so that it
// can be stopped and frozen under a running server, and returns it with an
// instrumented pool on a migrated database.
func ownCluster(t *testing.T) (*pgcluster.Cluster, *env, authz.Config) {
	t.Helper()
	ctx := t.Context()
	c, err := pgcluster.Start(ctx, pgcluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Thaw() // a frozen server cannot shut down
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
	})
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE authz"); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)
	if conn, err = pgx.Connect(ctx, c.URL("authz")); err != nil {
		t.Fatal(err)
	}
	if _, err := storage.Migrate(ctx, conn); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)
	pool, err := storage.NewPool(context.Background(), c.URL("authz"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	var cfg authz.Config
	e := newEnvOnPool(t, pool, func(c *authz.Config) {
		c.RequestTimeout = 2 * time.Second
		c.Registration = authz.RegistrationOpen
		c.AdminWithoutToken = true
		cfg = *c
	})
	return c, e, cfg
}

// waitReady polls /readyz until the server reaches its database again.
func waitReady(t *testing.T, e *env) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(e.url("/readyz"))
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	t.Fatal("the server did not reach its database again within 30 s")
}

// wantUnavailable asserts the 503 of a machine endpoint during an outage.
func wantUnavailable(t *testing.T, what string, r reply) {
	t.Helper()
	var body struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(r.body, &body)
	if r.status != http.StatusServiceUnavailable || body.Error != "temporarily_unavailable" {
		t.Errorf("%s with the database down: %d %s, want 503 temporarily_unavailable", what, r.status, r.body)
		return
	}
	if r.header.Get("Retry-After") == "" {
		t.Errorf("%s: 503 without Retry-After", what)
	}
}

// postAs posts form to path authenticated as c.
func postAs(t *testing.T, e *env, c authz.ClientMetadata, path string, form url.Values) reply {
	t.Helper()
	form, id, secret := withCreds(c, form)
	return post(t, e.url(path), form, id, secret)
}

// faultFixture is what the outage tests hold before the database fails:
// a grant's tokens and a code not yet exchanged.
type faultFixture struct {
	app, rs authz.ClientMetadata
	grant   tokenResponse
	code    string
}

func newFaultFixture(t *testing.T, e *env) faultFixture {
	t.Helper()
	f := faultFixture{app: e.confidential(t, "client_secret_basic"), rs: e.resourceServer(t)}
	e.createUser(t, "alice")
	b := newBrowser(t)
	f.grant = tokens(t, e.tokenAs(t, f.app, exchangeForm(newCode(t, e, b, codeParams(f.app, "openid contacts"), "alice"), f.app.RedirectURIs[0])))
	f.code = newCode(t, e, b, codeParams(f.app, "openid contacts"), "alice")
	return f
}

// afterRecovery asserts that the outage lost and spent nothing: the grant's
// tokens are active (a revocation answered 503 revoked nothing), and the
// code and the refresh token still work once each.
func (f faultFixture) afterRecovery(t *testing.T, e *env) {
	t.Helper()
	wantActive(t, e, f.rs, f.grant.AccessToken, true, "access token issued before the outage")
	wantActive(t, e, f.app, f.grant.RefreshToken, true, "refresh token issued before the outage")
	tokens(t, e.tokenAs(t, f.app, exchangeForm(f.code, f.app.RedirectURIs[0])))
	tokens(t, e.tokenAs(t, f.app, refreshForm(f.grant.RefreshToken)))
}

// TestDatabaseDown: with PostgreSQL stopped, every endpoint that needs it
// says so (503 temporarily_unavailable with Retry-After, or our page), none
// claims work it did not do or blames the client, and after PostgreSQL is
// back nothing was lost or spent.
func TestDatabaseDown(t *testing.T) {
	t.Parallel()
	cluster, e, cfg := ownCluster(t)
	f := newFaultFixture(t, e)
	admin, err := authz.NewAdmin(cfg, e.store, nil)
	if err != nil {
		t.Fatal(err)
	}
	adminSrv := httptest.NewServer(admin)
	t.Cleanup(adminSrv.Close)

	if err := cluster.Halt(); err != nil {
		t.Fatal(err)
	}

	bearer := func(method, path, token string) reply {
		req, err := http.NewRequest(method, path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return reply{status: resp.StatusCode, header: resp.Header, body: body}
	}
	// RFC 7009 2.2.1: never 200 for a revocation that did not happen.
	wantUnavailable(t, "revoking a refresh token", postAs(t, e, f.app, "/oauth2/revoke", url.Values{"token": {f.grant.RefreshToken}}))
	wantUnavailable(t, "revoking an access token", postAs(t, e, f.app, "/oauth2/revoke", url.Values{"token": {f.grant.AccessToken}}))
	// Not invalid_client: a resource server told that may rotate a good secret.
	wantUnavailable(t, "introspection", postAs(t, e, f.rs, "/oauth2/introspect", url.Values{"token": {f.grant.AccessToken}}))
	wantUnavailable(t, "userinfo", bearer(http.MethodGet, e.url("/userinfo"), f.grant.AccessToken))
	wantUnavailable(t, "code exchange", e.tokenAs(t, f.app, exchangeForm(f.code, f.app.RedirectURIs[0])))
	wantUnavailable(t, "refresh", e.tokenAs(t, f.app, refreshForm(f.grant.RefreshToken)))
	wantUnavailable(t, "client_credentials", e.tokenAs(t, f.rs, url.Values{"grant_type": {"client_credentials"}}))
	wantUnavailable(t, "registration", send(t, newRequest(t, http.MethodPost, e.url("/oauth2/register"), "application/json", `{"redirect_uris":["https://new.example.com/cb"]}`)))
	wantUnavailable(t, "admin API", bearer(http.MethodGet, adminSrv.URL+"/admin/clients", ""))

	// A person is told to try again, not that the app is broken.
	p := newBrowser(t).get(authorizeURL(e.issuer, codeParams(f.app, "openid")))
	wantErrorPage(t, p, http.StatusServiceUnavailable, "temporarily_unavailable")
	if p.header.Get("Retry-After") == "" {
		t.Error("503 page without Retry-After")
	}
	if strings.Contains(p.body, "not registered") {
		t.Errorf("the outage page blames the app:\n%s", p.body)
	}

	if err := cluster.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitReady(t, e)
	f.afterRecovery(t, e)
}

// TestDatabaseStalls: with PostgreSQL frozen (SIGSTOP), requests answer 503
// once their deadline passes instead of hanging, and when it resumes, none
// of their work is committed: the code was not spent, the refresh token
// not rotated, nothing revoked.
func TestDatabaseStalls(t *testing.T) {
	t.Parallel()
	cluster, e, cfg := ownCluster(t)
	f := newFaultFixture(t, e)

	if err := cluster.Freeze(); err != nil {
		t.Fatal(err)
	}
	// The deadline bounds every request; the client allows a generous
	// margin on top, so a hang shows as a transport error, not as a flake.
	client := &http.Client{Timeout: cfg.RequestTimeout + 5*time.Second}
	defer client.CloseIdleConnections()
	type call struct {
		what string
		c    authz.ClientMetadata
		path string
		form url.Values
	}
	calls := []call{
		{"code exchange", f.app, "/oauth2/token", exchangeForm(f.code, f.app.RedirectURIs[0])},
		{"refresh", f.app, "/oauth2/token", refreshForm(f.grant.RefreshToken)},
		{"revocation", f.app, "/oauth2/revoke", url.Values{"token": {f.grant.RefreshToken}}},
		{"introspection", f.rs, "/oauth2/introspect", url.Values{"token": {f.grant.AccessToken}}},
	}
	replies := make([]reply, len(calls))
	errs := make([]error, len(calls))
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Go(func() {
			form, id, secret := withCreds(c.c, c.form)
			req, _ := http.NewRequest(http.MethodPost, e.url(c.path), strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if id != "" {
				req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
			}
			resp, err := client.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			replies[i] = reply{status: resp.StatusCode, header: resp.Header, body: body}
		})
	}
	wg.Wait()
	for i, c := range calls {
		if errs[i] != nil {
			t.Errorf("%s with the database frozen: no answer: %v", c.what, errs[i])
			continue
		}
		wantUnavailable(t, c.what+" with the database frozen", replies[i])
	}

	if err := cluster.Thaw(); err != nil {
		t.Fatal(err)
	}
	waitReady(t, e)
	f.afterRecovery(t, e)
}

// TestClientGoneIsNotAServerError: a request whose client hung up fails
// its database work, but it is logged once at info as such, not as a 5xx
// that would drown real failures.
func TestClientGoneIsNotAServerError(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rs := e.resourceServer(t)
	var logs syncBuffer
	h, err := authz.New(e.cfg, e.store, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the client went away before the server read the database
	form := url.Values{"grant_type": {"client_credentials"}}
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, e.url("/oauth2/token"), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(rs.ClientID, rs.ClientSecret)
	h.ServeHTTP(httptest.NewRecorder(), req)

	out := logs.String()
	if strings.Contains(out, "level=ERROR") {
		t.Errorf("a client that hung up was logged as an error:\n%s", out)
	}
	if !strings.Contains(out, "client_gone=true") || !strings.Contains(out, "level=INFO") {
		t.Errorf("the request's line does not say the client went away:\n%s", out)
	}
	if n := strings.Count(out, "msg="); n != 1 {
		t.Errorf("%d log lines for one request, want 1:\n%s", n, out)
	}
}

// TestAbsoluteFormTarget: a request target naming another host is
// refused, never redirected there (the router redirects unclean paths).
func TestAbsoluteFormTarget(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	host := strings.TrimPrefix(e.issuer, "http://")
	raw := func(target, hostHeader string) *http.Response {
		conn, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, "GET "+target+" HTTP/1.1\r\nHost: "+hostHeader+"\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, target := range []string{"http://evil.example/oauth2/../healthz", "http://evil.example/healthz"} {
		resp := raw(target, "evil.example")
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("GET %s: %d Location %q, want 400 and no redirect", target, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	if resp := raw("http://"+host+"/healthz", host); resp.StatusCode != http.StatusOK {
		t.Errorf("absolute-form target for our own host: %d, want 200", resp.StatusCode)
	}
}

// TestStrictRefreshReuse: with AUTHZ_REFRESH_REUSE_WINDOW=0 a rotated
// refresh token presented again, even at once, revokes the family (RFC
// 9700 4.14.2); with the default window the same reuse is refused and the
// family lives.
func TestStrictRefreshReuse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		window     time.Duration
		familyLive bool
	}{{0, false}, {authz.DefaultRefreshReuseWindow, true}} {
		f := newTokenFixture(t, func(c *authz.Config) { c.RefreshReuseWindow = tc.window })
		g := f.grant(t, f.basic)
		next := tokens(t, f.e.tokenAs(t, f.basic, refreshForm(g.RefreshToken)))
		wantOAuthError(t, f.e.tokenAs(t, f.basic, refreshForm(g.RefreshToken)), http.StatusBadRequest, "invalid_grant")
		wantActive(t, f.e, f.rs, next.AccessToken, tc.familyLive, "window "+tc.window.String()+": the newest access token after an immediate reuse")
	}
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
