package pgcluster_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/authz/authz/internal/pgcluster"
	"github.com/authz/authz/internal/pgcluster/pgclustertest"
)

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// TestSynchronousStandbyFailover checks the failover machinery the server's
// tests rely on: a commit acknowledged by the primary survives its crash on
// the promoted standby, the multi-host URL refuses the standby while it is
// read-only and reaches it once promoted, and the promoted standby does not
// wait for a synchronous standby of its own.
func TestSynchronousStandbyFailover(t *testing.T) {
	t.Parallel()
	primary, standby := pgclustertest.Replicated(t)
	ctx := t.Context()

	p := connect(t, primary.URL("postgres"))
	var sync, commit string
	if err := p.QueryRow(ctx, `SELECT current_setting('synchronous_standby_names'), current_setting('synchronous_commit')`).Scan(&sync, &commit); err != nil {
		t.Fatal(err)
	}
	if sync == "" || commit == "off" || commit == "local" {
		t.Fatalf("primary: synchronous_standby_names=%q synchronous_commit=%q, want a synchronous standby", sync, commit)
	}
	if _, err := p.Exec(ctx, `CREATE TABLE kept (v text); INSERT INTO kept VALUES ('acknowledged')`); err != nil {
		t.Fatal(err)
	}
	p.Close(ctx)

	if err := primary.Crash(); err != nil {
		t.Fatal(err)
	}
	url := pgcluster.FailoverURL("postgres", primary, standby)
	if conn, err := pgx.Connect(ctx, url); err == nil {
		conn.Close(ctx)
		t.Fatal("the failover URL connected with the primary down and the standby read-only")
	}
	if err := standby.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	s := connect(t, url)
	var v string
	if err := s.QueryRow(ctx, `SELECT v FROM kept`).Scan(&v); err != nil || v != "acknowledged" {
		t.Fatalf("after failover: kept = %q, %v; want the acknowledged row", v, err)
	}
	writeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := s.Exec(writeCtx, `INSERT INTO kept VALUES ('after')`); err != nil {
		t.Fatalf("write on the promoted standby: %v", err)
	}
}

// TestPgBouncerTransactionPooling checks that PgBouncer pools by
// transaction: two clients connected at once share its one server
// connection, which session pooling would not allow (the second would wait).
func TestPgBouncerTransactionPooling(t *testing.T) {
	t.Parallel()
	c := pgclustertest.Cluster(t, pgcluster.Options{})
	if err := pgclustertest.EnsurePgBouncer(); err != nil {
		t.Fatal(err)
	}
	b, err := pgcluster.StartPgBouncer(t.Context(), c, pgcluster.PgBouncerOptions{PoolSize: 1, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Stop(); err != nil {
			t.Error(err)
		}
	})
	cfg, err := pgx.ParseConfig(b.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var pids [2]int
	for i := range pids {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pids[i]); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	if pids[0] != pids[1] {
		t.Errorf("two clients got server connections %d and %d, want one shared (pool size 1)", pids[0], pids[1])
	}

	// A start-up parameter PgBouncer does not know is refused: what the
	// server's pooler mode must never send.
	bad := cfg.Copy()
	bad.RuntimeParams = map[string]string{"idle_in_transaction_session_timeout": "30000"}
	_, err = pgx.ConnectConfig(ctx, bad)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || !strings.Contains(pgErr.Message, "unsupported startup parameter") {
		t.Errorf("connect with idle_in_transaction_session_timeout: %v, want PgBouncer's unsupported startup parameter", err)
	}

	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.ConnectConfig(ctx, cfg); err == nil {
		t.Error("connected through PgBouncer after Stop")
	}
}
