package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
)

const testSecret = "0123456789abcdef0123456789abcdef-test-secret"

// logSink collects the server's log and reports the address it listens on.
type logSink struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	listening chan string // receives the address once
	once      sync.Once
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Write(p)
	// slog writes each record with one Write.
	var rec struct {
		Msg  string `json:"msg"`
		Addr string `json:"addr"`
	}
	if json.Unmarshal(p, &rec) == nil && rec.Msg == "listening" {
		s.once.Do(func() { s.listening <- rec.Addr })
	}
	return len(p), nil
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func TestServe(t *testing.T) {
	t.Parallel()
	e := env{
		"AUTHZ_DATABASE_URL":     emptyDatabase(t),
		"AUTHZ_SECRETS":          testSecret,
		"AUTHZ_JANITOR_INTERVAL": "5ms", // run it often, to race with shutdown
		"AUTHZ_LOG_LEVEL":        "debug",
	}

	// An empty database is refused until it is migrated.
	wantError(t, e, "", "database schema is not up to date: run `authz migrate`", false,
		"serve", "--listen", "127.0.0.1:0")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	logs := &logSink{listening: make(chan string, 1)}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--migrate", "--listen", "127.0.0.1:0", "--issuer", "http://authz.test"},
			e.get, strings.NewReader(""), io.Discard, logs)
	}()
	var addr string
	select {
	case addr = <-logs.listening:
	case err := <-done:
		t.Fatalf("serve returned before listening: %v\nlog:\n%s", err, logs)
	}

	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz: %s %s", resp.Status, body)
	}

	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve after cancel: %v\nlog:\n%s", err, logs)
	}
	log := logs.String()
	for _, want := range []string{`"msg":"applied migration"`, `"msg":"listening"`, `"issuer":"http://authz.test"`,
		`"msg":"shutting down"`, `"msg":"stopped"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log does not contain %s:\n%s", want, log)
		}
	}

	// With a token, the admin API listens on its own address and wants it.
	adminToken := "admin-token-admin-token-admin-token-0123"
	withAdmin := maps.Clone(e)
	withAdmin["AUTHZ_ADMIN_TOKEN"] = adminToken
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	logs = &logSink{listening: make(chan string, 1)}
	go func() {
		done <- run(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"},
			withAdmin.get, strings.NewReader(""), io.Discard, logs)
	}()
	select {
	case addr = <-logs.listening:
	case err := <-done:
		t.Fatalf("serve with the admin API returned before listening: %v\nlog:\n%s", err, logs)
	}
	m := regexp.MustCompile(`"msg":"admin API listening","addr":"([^"]+)"`).FindStringSubmatch(logs.String())
	if m == nil || m[1] == addr {
		t.Fatalf("no admin API address in the log:\n%s", logs)
	}
	for _, tc := range []struct {
		token string
		want  int
	}{{"", http.StatusUnauthorized}, {"wrong", http.StatusUnauthorized}, {adminToken, http.StatusOK}} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+m[1]+"/admin/clients", nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET /admin/clients with token %q: %d, want %d", tc.token, resp.StatusCode, tc.want)
		}
	}
	// The admin API is not on the public listener, nor are the metrics;
	// the admin listener serves them without a token.
	for _, u := range []string{"http://" + addr + "/admin/clients", "http://" + addr + "/metrics"} {
		if resp, err := http.Get(u); err != nil {
			t.Fatal(err)
		} else if resp.Body.Close(); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s on the public listener: %d, want 404", u, resp.StatusCode)
		}
	}
	if resp, err := http.Get("http://" + m[1] + "/metrics"); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /metrics on the admin listener without a token: %d, want 200", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve with the admin API after cancel: %v\nlog:\n%s", err, logs)
	}

	// Migrated now: serve no longer needs --migrate. A cancelled context
	// stops it at once.
	stopped, stop := context.WithCancel(t.Context())
	stop()
	if err := run(stopped, []string{"serve", "--listen", "127.0.0.1:0"}, e.get, strings.NewReader(""), io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "interrupted") {
		// The first ping sees the cancelled context.
		t.Errorf("serve with a cancelled context: %v, want interrupted", err)
	}
}

func TestServeConfigErrors(t *testing.T) {
	t.Parallel()
	base := func() env {
		return env{"AUTHZ_DATABASE_URL": "postgres://u@127.0.0.1:1/db?connect_timeout=2", "AUTHZ_SECRETS": testSecret}
	}
	tests := []struct {
		name  string
		edit  func(env)
		args  []string
		want  string
		usage bool
	}{
		{"no secrets", func(e env) { delete(e, "AUTHZ_SECRETS") }, nil, "AUTHZ_SECRETS is not set", false},
		{"short secret", func(e env) { e["AUTHZ_SECRETS"] = "short" }, nil, "AUTHZ_SECRETS: secret 1 is 5 bytes", false},
		{"bad issuer flag", func(env) {}, []string{"--issuer", "localhost:8080"}, `AUTHZ_ISSUER "localhost:8080" must be an absolute http(s) URL`, false},
		{"bad log level", func(e env) { e["AUTHZ_LOG_LEVEL"] = "verbose" }, nil, `AUTHZ_LOG_LEVEL: "verbose" is not one of debug, info, warn, error`, false},
		{"bad log format", func(e env) { e["AUTHZ_LOG_FORMAT"] = "xml" }, nil, `AUTHZ_LOG_FORMAT: "xml" is not json or text`, false},
		{"bad janitor interval", func(e env) { e["AUTHZ_JANITOR_INTERVAL"] = "-1m" }, nil, "AUTHZ_JANITOR_INTERVAL", false},
		{"bad lifespan", func(e env) { e["AUTHZ_ACCESS_TOKEN_LIFESPAN"] = "forever" }, nil, "AUTHZ_ACCESS_TOKEN_LIFESPAN", false},
		{"unreachable database", func(env) {}, nil, "cannot reach the database at postgres://u@127.0.0.1:1/db", false},
		{"no database", func(e env) { delete(e, "AUTHZ_DATABASE_URL") }, nil, "no database configured", false},
		{"stray argument", func(env) {}, []string{"now"}, `serve: unexpected argument "now"`, true},
		{"admin API without a token", func(e env) { e["AUTHZ_ADMIN_LISTEN"] = "127.0.0.1:0" }, nil, "the admin API needs AUTHZ_ADMIN_TOKEN", false},
		{"admin flag without a token", func(env) {}, []string{"--admin-listen", "127.0.0.1:0"}, "the admin API needs AUTHZ_ADMIN_TOKEN", false},
		{"short admin token", func(e env) { e["AUTHZ_ADMIN_TOKEN"] = "short" }, nil, "AUTHZ_ADMIN_TOKEN is 5 bytes", false},
		{"bad registration policy", func(e env) { e["AUTHZ_REGISTRATION"] = "maybe" }, nil, `AUTHZ_REGISTRATION "maybe" must be off, token or open`, false},
		{"registration token policy without tokens", func(e env) { e["AUTHZ_REGISTRATION"] = "token" }, nil, "AUTHZ_REGISTRATION=token needs AUTHZ_REGISTRATION_TOKENS", false},
		{"short registration token", func(e env) { e["AUTHZ_REGISTRATION"] = "token"; e["AUTHZ_REGISTRATION_TOKENS"] = "short" }, nil, "AUTHZ_REGISTRATION_TOKENS: token 1 is 5 bytes", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := base()
			tc.edit(e)
			wantError(t, e, "", tc.want, tc.usage, append([]string{"serve"}, tc.args...)...)
		})
	}
}

// TestServeMetricsListener: AUTHZ_METRICS_LISTEN gives the metrics a
// listener of their own, which serves nothing else, and takes them off
// the admin API's.
func TestServeMetricsListener(t *testing.T) {
	t.Parallel()
	e := env{
		"AUTHZ_DATABASE_URL":   emptyDatabase(t),
		"AUTHZ_SECRETS":        testSecret,
		"AUTHZ_ADMIN_TOKEN":    "admin-token-admin-token-admin-token-0123",
		"AUTHZ_METRICS_LISTEN": "127.0.0.1:0",
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	logs := &logSink{listening: make(chan string, 1)}
	done := make(chan error, 1)
	go func() {
		// Not the same string as the admin API's address, which would
		// mean "on the admin listener".
		done <- run(ctx, []string{"serve", "--migrate", "--listen", "127.0.0.1:0", "--admin-listen", "localhost:0"},
			e.get, strings.NewReader(""), io.Discard, logs)
	}()
	select {
	case <-logs.listening:
	case err := <-done:
		t.Fatalf("serve returned before listening: %v\nlog:\n%s", err, logs)
	}
	addrOf := func(what string) string {
		m := regexp.MustCompile(`"msg":"` + what + ` listening","addr":"([^"]+)"`).FindStringSubmatch(logs.String())
		if m == nil {
			t.Fatalf("no %s address in the log:\n%s", what, logs)
		}
		return m[1]
	}
	metrics, admin := addrOf("metrics"), addrOf("admin API")
	for _, c := range []struct {
		url  string
		want int
	}{
		{"http://" + metrics + "/metrics", http.StatusOK},
		{"http://" + metrics + "/admin/clients", http.StatusNotFound},
		{"http://" + admin + "/metrics", http.StatusUnauthorized},
	} {
		resp, err := http.Get(c.url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("GET %s: %d, want %d", c.url, resp.StatusCode, c.want)
		}
		if c.want == http.StatusOK && !strings.Contains(string(body), "authz_db_pool_max_connections") {
			t.Errorf("GET %s: no pool metrics in\n%s", c.url, body)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve after cancel: %v\nlog:\n%s", err, logs)
	}
}
