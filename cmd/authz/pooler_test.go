package main

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authz/authz/internal/pgcluster"
	"github.com/authz/authz/internal/pgcluster/pgclustertest"
)

// TestServeThroughPgBouncer runs the real commands through a PgBouncer in
// transaction pooling mode: without pooler mode serve cannot even connect
// (PgBouncer refuses the session setting it sends); in pooler mode
// migrations go through the pooler too, and serve issues and introspects
// client_credentials tokens, many at once, so that
// consecutive statements land on different server connections.
func TestServeThroughPgBouncer(t *testing.T) {
	t.Parallel()
	cluster := pgclustertest.Cluster(t, pgcluster.Options{})
	bouncer := pgclustertest.PgBouncer(t, cluster)
	db := pgclustertest.CreateDatabase(t, cluster, "authz")
	e := env{
		"AUTHZ_DATABASE_URL": bouncer.URL(db),
		"AUTHZ_SECRETS":      testSecret,
	}

	// Pooler mode off: the start-up parameter is refused.
	wantError(t, e, "", "unsupported startup parameter: idle_in_transaction_session_timeout", false,
		"serve", "--listen", "127.0.0.1:0")

	e["AUTHZ_DATABASE_POOLER"] = "transaction"
	// A session setting in the URL is refused too, and the error says
	// where it belongs.
	withSetting := maps.Clone(e)
	withSetting["AUTHZ_DATABASE_URL"] += "&statement_timeout=5000"
	wantError(t, withSetting, "", "takes no session settings in the URL: set them on the role instead", false,
		"serve", "--listen", "127.0.0.1:0")
	// Unmigrated, serve refuses; the status check itself goes through
	// the pooler.
	wantError(t, e, "", "database schema is not up to date", false, "serve", "--listen", "127.0.0.1:0")
	if out := mustRun(t, e, "", "migrate"); !strings.Contains(out, "schema is now at version") {
		t.Fatalf("migrate printed:\n%s", out)
	}
	client := parseClient(t, mustRun(t, e, "", "clients", "create", "--name", "Reports",
		"--grant-type", "client_credentials", "--scope", "reports"))
	srv := startServe(t, e)

	const workers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for range workers {
		wg.Go(func() {
			for range each {
				tok, err := srv.token(client.ClientID, client.ClientSecret)
				if err == nil {
					err = srv.wantActive(tok, client.ClientID, client.ClientSecret)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed++; failed <= 3 {
			t.Error(err)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d token + introspection rounds through PgBouncer failed; log:\n%s", failed, workers*each, srv.logs)
	}
	srv.stop(t)
}

// TestConfigurePool: behind a transaction pooler the pool sends no
// start-up parameter and uses no named prepared statement; directly it
// sets the idle-in-transaction timeout; the URL wins over both.
func TestConfigurePool(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url      string
		mode     poolerMode
		wantExec pgx.QueryExecMode
		wantIdle string // "" means not sent
		wantMax  int32
	}{
		{"postgres://u@h/db", poolerNone, pgx.QueryExecModeCacheStatement, "30000", 32},
		{"postgres://u@h/db?idle_in_transaction_session_timeout=5000&pool_max_conns=7", poolerNone, pgx.QueryExecModeCacheStatement, "5000", 7},
		{"postgres://u@h/db", poolerTransaction, pgx.QueryExecModeExec, "", 32},
		{"postgres://u@h/db?default_query_exec_mode=cache_statement", poolerTransaction, pgx.QueryExecModeCacheStatement, "", 32},
	} {
		cfg, err := pgxpool.ParseConfig(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		configurePool(cfg, tc.url, tc.mode)
		if got := cfg.ConnConfig.DefaultQueryExecMode; got != tc.wantExec {
			t.Errorf("%s, %s: exec mode %v, want %v", tc.url, tc.mode, got, tc.wantExec)
		}
		if got := cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; got != tc.wantIdle {
			t.Errorf("%s, %s: idle_in_transaction_session_timeout %q, want %q", tc.url, tc.mode, got, tc.wantIdle)
		}
		if tc.mode == poolerTransaction && len(cfg.ConnConfig.RuntimeParams) != 0 {
			t.Errorf("%s, %s: start-up parameters %v, want none", tc.url, tc.mode, cfg.ConnConfig.RuntimeParams)
		}
		if cfg.MaxConns != tc.wantMax {
			t.Errorf("%s, %s: MaxConns %d, want %d", tc.url, tc.mode, cfg.MaxConns, tc.wantMax)
		}
	}
	for _, v := range []string{"session", "yes", "pgbouncer"} {
		wantError(t, env{"AUTHZ_DATABASE_POOLER": v, "AUTHZ_DATABASE_URL": "postgres://u@127.0.0.1:1/db", "AUTHZ_SECRETS": testSecret},
			"", "AUTHZ_DATABASE_POOLER: \""+v+"\" is not none or transaction", false, "serve")
	}
}

// served is an `authz serve` running in the test's process.
type served struct {
	addr string
	logs *logSink
	done chan error
	stop func(t *testing.T)
}

// startServe runs `authz serve` on a loopback port until the test ends
// (or stop), and returns once it listens.
func startServe(t *testing.T, e env, args ...string) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	s := &served{logs: &logSink{listening: make(chan string, 1)}, done: make(chan error, 1)}
	go func() {
		s.done <- run(ctx, append([]string{"serve", "--listen", "127.0.0.1:0", "--admin-listen", "off"}, args...),
			e.get, strings.NewReader(""), io.Discard, s.logs)
	}()
	select {
	case s.addr = <-s.logs.listening:
	case err := <-s.done:
		cancel()
		t.Fatalf("serve returned before listening: %v\nlog:\n%s", err, s.logs)
	}
	var once sync.Once
	s.stop = func(t *testing.T) {
		once.Do(func() {
			cancel()
			if err := <-s.done; err != nil {
				t.Errorf("serve: %v\nlog:\n%s", err, s.logs)
			}
		})
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

// httpClient bounds every request, so a stuck server fails the test.
var httpClient = &http.Client{Timeout: 30 * time.Second}

// post sends a form authenticated as the client and decodes the JSON answer.
func (s *served) post(path string, form url.Values, id, secret string) (int, map[string]any, error) {
	req, err := http.NewRequest(http.MethodPost, "http://"+s.addr+path, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		return resp.StatusCode, nil, &httpError{path, resp.StatusCode, string(body)}
	}
	return resp.StatusCode, out, nil
}

type httpError struct {
	path   string
	status int
	body   string
}

func (e *httpError) Error() string {
	return "POST " + e.path + ": " + http.StatusText(e.status) + ": " + strings.TrimSpace(e.body)
}

// token gets a client_credentials access token.
func (s *served) token(id, secret string) (string, error) {
	status, out, err := s.post("/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"reports"}}, id, secret)
	if err != nil {
		return "", err
	}
	tok, _ := out["access_token"].(string)
	if status != http.StatusOK || tok == "" {
		return "", &httpError{"/oauth2/token", status, jsonString(out)}
	}
	return tok, nil
}

// wantActive checks by introspection that tok is active.
func (s *served) wantActive(tok, id, secret string) error {
	status, out, err := s.post("/oauth2/introspect", url.Values{"token": {tok}}, id, secret)
	if err != nil {
		return err
	}
	if status != http.StatusOK || out["active"] != true {
		return &httpError{"/oauth2/introspect", status, jsonString(out)}
	}
	return nil
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
