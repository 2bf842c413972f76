package authz_test

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/storage"
	"github.com/authz/authz/storage/pgtest"
)

// auditEnv is an env whose server and admin API log, at debug, into logs.
type auditEnv struct {
	*adminEnv
	logs *syncBuffer
}

func newAuditEnv(t *testing.T, opts ...envOption) *auditEnv {
	t.Helper()
	pool, err := storage.NewPool(context.Background(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	var handler atomic.Pointer[authz.Handler]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.Load().ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	cfg, err := authz.ConfigFromEnv(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Issuer = srv.URL
	cfg.Secrets = [][]byte{[]byte("test-secret-test-secret-test-secret-0123")}
	cfg.AdminToken = adminToken
	clock := &testClock{}
	cfg.Now = clock.Now
	for _, o := range opts {
		o(&cfg)
	}
	store := storage.New(pool, storage.WithClock(cfg.Now))
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h, err := authz.New(cfg, store, logger)
	if err != nil {
		t.Fatal(err)
	}
	handler.Store(h)
	admin, err := authz.NewAdmin(cfg, store, logger)
	if err != nil {
		t.Fatal(err)
	}
	asrv := httptest.NewServer(admin)
	t.Cleanup(asrv.Close)
	e := &env{clock: clock, srv: srv, store: store, pool: pool, cfg: cfg, issuer: cfg.Issuer, h: h}
	return &auditEnv{adminEnv: &adminEnv{env: e, admin: asrv}, logs: logs}
}

// events returns the audit events logged so far.
func (a *auditEnv) events(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(a.logs.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, sc.Text())
		}
		if line["msg"] == "audit" {
			out = append(out, line)
		}
	}
	return out
}

// wantEvent checks that exactly one audit event matches want (every field
// given, as a string) and returns it.
func wantEvent(t *testing.T, events []map[string]any, want map[string]string) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, ev := range events {
		match := true
		for k, v := range want {
			if s, ok := ev[k]; !ok || toString(s) != v {
				match = false
				break
			}
		}
		if match {
			found = append(found, ev)
		}
	}
	if len(found) != 1 {
		t.Errorf("%d audit events match %v, want 1; events:\n%s", len(found), want, dumpEvents(events))
		return nil
	}
	for _, k := range []string{"event", "outcome", "request_id", "client_id", "subject", "client_addr"} {
		if _, ok := found[0][k]; !ok {
			t.Errorf("audit event %v has no %s", found[0], k)
		}
	}
	if found[0]["request_id"] == "" || found[0]["client_addr"] != "127.0.0.1" {
		t.Errorf("audit event %v: want a request_id and client_addr 127.0.0.1", found[0])
	}
	return found[0]
}

func toString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func dumpEvents(events []map[string]any) string {
	var b strings.Builder
	for _, ev := range events {
		line, _ := json.Marshal(ev)
		b.Write(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// TestAuditEvents runs the whole flow with its failures and the admin
// API's changes, and checks that each action is told once, with its
// fields, and that no log line holds any secret the test used.
func TestAuditEvents(t *testing.T) {
	t.Parallel()
	a := newAuditEnv(t)
	client := a.confidential(t, "client_secret_basic")
	alice := a.createUser(t, "alice")
	carol := a.createUser(t, "carol")
	if _, err := a.store.UpdateUser(context.Background(), carol.ID, storage.UserUpdate{Disabled: ptrTo(true)}); err != nil {
		t.Fatal(err)
	}
	const wrongPassword = "wrong-password-Zq81xv"
	secrets := []string{client.ClientSecret, testPassword, wrongPassword, adminToken}

	b := newBrowser(t)
	params := map[string]string{
		"response_type": "code", "client_id": client.ClientID, "scope": "openid contacts",
		"redirect_uri": "https://app.example.com/callback", "state": "st-123",
	}
	p := b.get(authorizeURL(a.issuer, params))
	p = b.login(p, "alice", wrongPassword)
	p = b.login(p, "nobody", wrongPassword)
	p = b.login(p, "carol", testPassword)
	p = b.login(p, "alice", testPassword)
	loc := b.consent(p, "allow")
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in %s", loc)
	}
	secrets = append(secrets, code)

	exchange := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {"https://app.example.com/callback"}}
	tok := a.token(t, exchange, client.ClientID, client.ClientSecret)
	if tok.status != http.StatusOK || tok.RefreshToken == "" {
		t.Fatalf("exchange: %d %+v", tok.status, tok)
	}
	secrets = append(secrets, tok.AccessToken, tok.RefreshToken)
	if again := a.token(t, exchange, client.ClientID, client.ClientSecret); again.status != http.StatusBadRequest {
		t.Fatalf("second use of the code: %d %+v", again.status, again)
	}

	// A second flow, for refresh, refresh reuse and revocation.
	p = b.get(authorizeURL(a.issuer, params))
	if isConsentPage(p) {
		loc = b.consent(p, "allow")
	} else {
		loc = p.location(t)
	}
	code2 := loc.Query().Get("code")
	secrets = append(secrets, code2)
	tok2 := a.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code2}, "redirect_uri": {"https://app.example.com/callback"}},
		client.ClientID, client.ClientSecret)
	if tok2.status != http.StatusOK {
		t.Fatalf("second exchange: %d %+v", tok2.status, tok2)
	}
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok2.RefreshToken}}
	tok3 := a.token(t, refresh, client.ClientID, client.ClientSecret)
	if tok3.status != http.StatusOK {
		t.Fatalf("refresh: %d %+v", tok3.status, tok3)
	}
	secrets = append(secrets, tok2.AccessToken, tok2.RefreshToken, tok3.AccessToken, tok3.RefreshToken)
	a.clock.Advance(time.Hour) // past the reuse window: a reuse, not a race
	if reuse := a.token(t, refresh, client.ClientID, client.ClientSecret); reuse.status != http.StatusBadRequest {
		t.Fatalf("refresh reuse: %d %+v", reuse.status, reuse)
	}
	if resp, body := postForm(t, a.url("/oauth2/revoke"), url.Values{"token": {tok3.RefreshToken}, "token_type_hint": {"refresh_token"}},
		client.ClientID, client.ClientSecret); resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d %s", resp.StatusCode, body)
	}

	// The admin API.
	created := a.adminRequest(t, http.MethodPost, "/admin/clients", "", map[string]any{
		"client_name": "Audited", "redirect_uris": []string{"https://audited.example/cb"}})
	if created.status != http.StatusCreated {
		t.Fatalf("create client: %d %s", created.status, created.body)
	}
	var m authz.ClientMetadata
	if err := json.Unmarshal(created.body, &m); err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, m.ClientSecret)
	rotated := a.adminRequest(t, http.MethodPost, "/admin/clients/"+url.PathEscape(m.ClientID)+"/secret", "", nil)
	if rotated.status != http.StatusOK {
		t.Fatalf("rotate: %d %s", rotated.status, rotated.body)
	}
	var rm authz.ClientMetadata
	if err := json.Unmarshal(rotated.body, &rm); err != nil || rm.ClientSecret == "" {
		t.Fatalf("rotate: %v %s", err, rotated.body)
	}
	secrets = append(secrets, rm.ClientSecret)
	if r := a.adminRequest(t, http.MethodDelete, "/admin/clients/"+url.PathEscape(m.ClientID), "", nil); r.status != http.StatusNoContent {
		t.Fatalf("delete client: %d %s", r.status, r.body)
	}
	const newPassword = "new-password-Lk29aq0p"
	secrets = append(secrets, newPassword)
	if r := a.adminRequest(t, http.MethodPatch, "/admin/users/"+alice.ID, "application/merge-patch+json",
		`{"password":"`+newPassword+`","name":"Alice A."}`); r.status != http.StatusOK {
		t.Fatalf("patch user: %d %s", r.status, r.body)
	}
	if r := a.adminRequest(t, http.MethodDelete, "/admin/users/"+alice.ID+"/consents?client_id="+url.QueryEscape(client.ClientID), "", nil); r.status != http.StatusNoContent {
		t.Fatalf("withdraw consents: %d %s", r.status, r.body)
	}

	events := a.events(t)
	cid := client.ClientID
	wantEvent(t, events, map[string]string{"event": "signin.failure", "reason": "wrong_password", "subject": alice.ID, "client_id": cid, "outcome": "failure"})
	wantEvent(t, events, map[string]string{"event": "signin.failure", "reason": "unknown_user", "subject": "", "client_id": cid})
	wantEvent(t, events, map[string]string{"event": "signin.failure", "reason": "disabled", "subject": carol.ID, "client_id": cid})
	wantEvent(t, events, map[string]string{"event": "signin.success", "subject": alice.ID, "client_id": cid, "outcome": "success"})
	wantEvent(t, events, map[string]string{"event": "consent.granted", "subject": alice.ID, "client_id": cid, "scope": "openid contacts"})
	wantEvent(t, events, map[string]string{"event": "code.reuse_detected", "subject": alice.ID, "client_id": cid, "outcome": "detected"})
	wantEvent(t, events, map[string]string{"event": "refresh.reuse_detected", "subject": alice.ID, "client_id": cid, "tokens_revoked": "true"})
	wantEvent(t, events, map[string]string{"event": "token.refreshed", "subject": alice.ID, "client_id": cid, "grant_type": "refresh_token"})
	wantEvent(t, events, map[string]string{"event": "token.revoked", "client_id": cid, "token_type_hint": "refresh_token"})
	wantEvent(t, events, map[string]string{"event": "client.created", "client_id": m.ClientID, "source": "admin"})
	wantEvent(t, events, map[string]string{"event": "client.secret_rotated", "client_id": m.ClientID, "source": "admin"})
	wantEvent(t, events, map[string]string{"event": "client.deleted", "client_id": m.ClientID, "source": "admin"})
	wantEvent(t, events, map[string]string{"event": "user.updated", "subject": alice.ID, "fields": "name password"})
	wantEvent(t, events, map[string]string{"event": "consent.withdrawn", "subject": alice.ID, "client_id": cid, "withdrawn": "1"})
	wantEvent(t, events, map[string]string{"event": "admin.request", "method": "DELETE", "route": "/admin/clients/{id}", "status": "204"})
	wantEvent(t, events, map[string]string{"event": "admin.request", "method": "PATCH", "route": "/admin/users/{id}", "status": "200"})
	issued := 0
	for _, ev := range events {
		if ev["event"] == "token.issued" && ev["grant_type"] == "authorization_code" && ev["subject"] == alice.ID && ev["client_id"] == cid {
			issued++
		}
	}
	if issued != 2 {
		t.Errorf("%d token.issued events for the two exchanges, want 2:\n%s", issued, dumpEvents(events))
	}

	logs := a.logs.String()
	for _, s := range secrets {
		if s == "" {
			t.Fatal("a secret of the test is empty")
		}
		if strings.Contains(logs, s) {
			t.Errorf("the log holds a secret, a token, a code or a password (%.6s…):\n%s", s, logs)
		}
	}
}

// TestAuditNoEventForUnavailable: a client creation the database could not
// do in time is answered 503 and told as no client.created, though the
// admin request itself is.
func TestAuditNoEventForUnavailable(t *testing.T) {
	t.Parallel()
	a := newAuditEnv(t, func(c *authz.Config) { c.RequestTimeout = 300 * time.Millisecond })
	ctx := context.Background()
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE clients IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	r := a.adminRequest(t, http.MethodPost, "/admin/clients", "", map[string]any{
		"client_name": "Never", "redirect_uris": []string{"https://never.example/cb"}})
	_ = tx.Rollback(ctx)
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("create client under a lock: %d %s, want 503", r.status, r.body)
	}
	events := a.events(t)
	for _, ev := range events {
		if ev["event"] == "client.created" {
			t.Errorf("client.created told for a request answered 503:\n%s", dumpEvents(events))
		}
	}
	wantEvent(t, events, map[string]string{"event": "admin.request", "method": "POST", "route": "/admin/clients", "status": "503", "outcome": "failure"})
}

func ptrTo[T any](v T) *T { return &v }
