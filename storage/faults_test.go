package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/authz/authz/storage"
	"github.com/authz/authz/storage/pgtest"
)

// TestUnavailable: what counts as the database failing a request (503)
// and what is an answer about the data or a bug.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	pg := func(code string) error { return fmt.Errorf("query: %w", &pgconn.PgError{Code: code}) }
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"no rows", pgx.ErrNoRows, false},
		{"not found", fmt.Errorf("get: %w", fosite.ErrNotFound), false},
		{"unique violation", pg("23505"), false},
		{"foreign key violation", pg("23503"), false},
		{"NUL in text", pg("22021"), false},
		{"syntax error (a bug)", pg("42601"), false},
		{"undefined column (a bug)", pg("42703"), false},
		{"statement timeout", pg("57014"), true},
		{"admin shutdown", pg("57P01"), true},
		{"cannot connect now", pg("57P03"), true},
		{"lock timeout", pg("55P03"), true},
		{"too many connections", pg("53300"), true},
		{"serialization failure", pg("40001"), true},
		{"deadlock", pg("40P01"), true},
		{"connection failure", pg("08006"), true},
		{"read-only standby after a failover", pg("25006"), true},
		{"deadline", context.DeadlineExceeded, true},
		{"client gone", fmt.Errorf("query: %w", context.Canceled), true},
		{"connection reset", &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}, true},
		{"unexpected EOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{"marked", fmt.Errorf("x: %w", storage.ErrUnavailable), true},
	} {
		if got := storage.Unavailable(tc.err); got != tc.want {
			t.Errorf("%s: Unavailable(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// faultStore is a store on an instrumented pool, with one client.
func faultStore(t *testing.T) (*storage.Store, *storage.Client) {
	t.Helper()
	pool, err := storage.NewPool(t.Context(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return storeWithClient(t, pool)
}

// storeWithClient is a store on pool with one client, "app".
func storeWithClient(t *testing.T, pool *pgxpool.Pool) (*storage.Store, *storage.Client) {
	t.Helper()
	s := storage.New(pool)
	c := &storage.Client{
		ID: "app", SecretHash: storage.HashGeneratedSecret("secret"), Name: "App",
		RedirectURIs: []string{"https://app.example.com/cb"}, GrantTypes: []string{"authorization_code"},
		ResponseTypes: []string{"code"}, Scopes: []string{"openid"}, TokenEndpointAuthMethod: "client_secret_basic",
	}
	if err := s.CreateClient(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	return s, c
}

func codeRequest(id string, c *storage.Client) *fosite.Request {
	sess := openid.NewDefaultSession()
	sess.Subject = "alice"
	sess.SetExpiresAt(fosite.AuthorizeCode, time.Now().Add(10*time.Minute))
	return &fosite.Request{ID: id, RequestedAt: time.Now(), Client: c, Session: sess}
}

// TestCommitRefusesAfterFault: a request that met a database failure
// commits nothing, not even what a savepoint around the failure kept
// (fosite's own transactions are savepoints inside ours, and it rolls them
// back and carries on).
func TestCommitRefusesAfterFault(t *testing.T) {
	t.Parallel()
	s, c := faultStore(t)
	ctx, faults := storage.WithFaultRecorder(t.Context())
	ctx, err := s.BeginTX(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Rollback(ctx) })
	if err := s.CreateAuthorizeCodeSession(ctx, "kept-before", codeRequest("r1", c)); err != nil {
		t.Fatal(err)
	}
	inner, err := s.BeginTX(ctx) // a savepoint
	if err != nil {
		t.Fatal(err)
	}
	// A statement the server cancels (57014), as statement_timeout does.
	var setting string
	if err := s.QueryRowForTest(inner, `SELECT set_config('statement_timeout', '10', true)`).Scan(&setting); err != nil {
		t.Fatal(err)
	}
	var slept string
	err = s.QueryRowForTest(inner, `SELECT pg_sleep(1)::text`).Scan(&slept)
	if !storage.Unavailable(err) {
		t.Fatalf("statement past statement_timeout: %v, want a database failure", err)
	}
	if faults.Err() == nil {
		t.Fatal("the failure was not recorded in the request's context")
	}
	if err := s.Rollback(inner); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Commit after a recorded fault: %v, want ErrUnavailable", err)
	}
	if _, err := s.GetAuthorizeCodeSession(t.Context(), "kept-before", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
		t.Fatalf("BUG: the faulted request's code was committed: %v", err)
	}
}

// TestCommitDeadline: a transaction whose COMMIT reaches the server after
// its request's deadline fails instead of committing, which is what keeps a
// database that stalls and then resumes from spending codes for requests
// that already answered 503 (migrations/006_commit_deadline.sql).
func TestCommitDeadline(t *testing.T) {
	t.Parallel()
	s, c := faultStore(t)

	begin := func(t *testing.T, timeout time.Duration) context.Context {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		t.Cleanup(cancel)
		ctx, err := s.BeginTX(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ctx
	}

	t.Run("in time", func(t *testing.T) {
		ctx := begin(t, time.Minute)
		if err := s.CreateAuthorizeCodeSession(ctx, "in-time", codeRequest("r-in", c)); err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(ctx); err != nil {
			t.Fatalf("commit well before the deadline: %v", err)
		}
	})

	t.Run("late", func(t *testing.T) {
		// The request has 400 ms; its transaction must commit 250 ms
		// before that. The COMMIT is sent once the server's clock is past
		// that point, on a context without the deadline: as if the COMMIT
		// had sat in a frozen server's socket buffer.
		ctx := begin(t, 400*time.Millisecond)
		if err := s.CreateAuthorizeCodeSession(ctx, "late", codeRequest("r-late", c)); err != nil {
			t.Fatal(err)
		}
		late := context.WithoutCancel(ctx)
		waitForServerClock(t, s, late)
		err := s.Commit(late)
		if !storage.Unavailable(err) {
			t.Fatalf("BUG: a commit after the request's deadline: %v, want a database failure", err)
		}
		if _, err := s.GetAuthorizeCodeSession(t.Context(), "late", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
			t.Fatalf("BUG: the late transaction's code was committed: %v", err)
		}
	})
}

// TestSingleWriteCommitDeadline: a write sent outside any transaction (a
// client_credentials grant's token) is its own transaction, bounded by the
// request's deadline at its commit like every other: held up by a lock
// past the point where it must have committed, it fails instead of
// committing for a request that has given up; in time, it commits.
func TestSingleWriteCommitDeadline(t *testing.T) {
	t.Parallel()
	s, c := faultStore(t)

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := s.CreateAuthorizeCodeSession(ctx, "single-in-time", codeRequest("r-single-in", c)); err != nil {
		t.Fatalf("a single write well before the deadline: %v", err)
	}

	// The write's foreign key check waits for a lock on the client's row
	// held by another transaction until the write's commit deadline (its
	// request's 3 s less 250 ms) has passed; it then runs on, before the
	// request's own deadline. The server counts the commit deadline from
	// when the statement starts running, so the lock is held 150 ms past
	// it: a statement that reached the server late (a loaded machine, the
	// race detector) must still find it passed.
	holder, err := s.Pool().Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Rollback(context.Background()) }()
	if _, err := holder.Exec(t.Context(), `SELECT 1 FROM clients WHERE id = $1 FOR UPDATE`, c.ID); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	commitBy := time.Now().Add(2750 * time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- s.CreateAuthorizeCodeSession(ctx, "single-late", codeRequest("r-single-late", c)) }()
	for time.Now().Before(commitBy.Add(150 * time.Millisecond)) {
		select {
		case err := <-done:
			t.Fatalf("the write ended while its lock was held: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := holder.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	err = <-done
	if err == nil || !strings.Contains(err.Error(), "gave up before this transaction could commit") {
		t.Fatalf("BUG: a single write let through after its commit deadline: %v", err)
	}
	if _, err := s.GetAuthorizeCodeSession(t.Context(), "single-late", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
		t.Fatalf("BUG: the late write was committed: %v", err)
	}
}

// waitForServerClock polls, inside the transaction of ctx, until the
// server's clock is past the transaction's commit deadline.
func waitForServerClock(t *testing.T, s *storage.Store, ctx context.Context) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var past bool
		// A savepoint keeps the probe's work out of the transaction.
		probe, err := s.BeginTX(ctx)
		if err != nil {
			t.Fatal(err)
		}
		err = s.QueryRowForTest(probe, `SELECT clock_timestamp() > current_setting('authz.commit_by')::timestamptz`).Scan(&past)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Rollback(probe); err != nil {
			t.Fatal(err)
		}
		if past {
			return
		}
	}
	t.Fatal("the server's clock never passed the commit deadline")
}

// TestStatements: the pool's tracer counts each statement once.
func TestStatements(t *testing.T) {
	t.Parallel()
	s, _ := faultStore(t)
	before := storage.Statements(s.Pool())
	if _, err := s.GetAuthorizeCodeSession(t.Context(), "unknown", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
		t.Fatal(err)
	}
	if got := storage.Statements(s.Pool()) - before; got != 1 {
		t.Errorf("one lookup counted as %d statements", got)
	}
}

// TestCommitAfterDeadline: a request whose deadline passed before its
// COMMIT was sent commits nothing and records the outage, so that it is
// answered 503 and not 500, although no query failed.
func TestCommitAfterDeadline(t *testing.T) {
	t.Parallel()
	s, c := faultStore(t)
	ctx, faults := storage.WithFaultRecorder(t.Context())
	ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	ctx, err := s.BeginTX(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAuthorizeCodeSession(ctx, "too-late", codeRequest("r-late", c)); err != nil {
		t.Fatal(err)
	}
	<-ctx.Done()
	if err := s.Commit(ctx); !storage.Unavailable(err) {
		t.Fatalf("Commit after the deadline: %v, want a database failure", err)
	}
	if faults.Err() == nil {
		t.Error("a commit given up for the deadline was not recorded as a database failure")
	}
	if _, err := s.GetAuthorizeCodeSession(t.Context(), "too-late", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
		t.Fatalf("BUG: a commit after the deadline went through: %v", err)
	}
}

// TestCommitAnswerLost: when the answer to a COMMIT never comes back, the
// store asks the server on another connection whether it took effect, and
// reports what did as done: a 503 for a code the commit spent would send
// the client back with a code that no longer works.
func TestCommitAnswerLost(t *testing.T) {
	t.Parallel()
	cfg, err := pgxpool.ParseConfig(pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg = storage.PoolConfig(cfg)
	var fault atomic.Value // commitFault
	fault.Store(commitFault(0))
	var d net.Dialer
	var refuseDials atomic.Bool
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if refuseDials.Load() {
			return nil, errors.New("the test refuses new connections")
		}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &commitLoser{Conn: c, fault: &fault}, nil
	}
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, c := storeWithClient(t, pool)

	tests := []struct {
		name    string
		fault   commitFault
		persist bool
		unknown bool // and the server cannot be asked
	}{
		{"committed, answer lost", loseAnswer, true, false},
		{"never sent", dropCommit, false, false},
		{"committed, answer lost, server out of reach", loseAnswer, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 400*time.Millisecond)
			defer cancel()
			ctx, err := s.BeginTX(ctx)
			if err != nil {
				t.Fatal(err)
			}
			sig := "lost-" + fmt.Sprint(tc.fault) + fmt.Sprint(tc.unknown)
			if err := s.CreateAuthorizeCodeSession(ctx, sig, codeRequest("r-"+sig, c)); err != nil {
				t.Fatal(err)
			}
			fault.Store(tc.fault)
			refuseDials.Store(tc.unknown)
			err = s.Commit(ctx)
			fault.Store(commitFault(0))
			refuseDials.Store(false)
			_, getErr := s.GetAuthorizeCodeSession(t.Context(), sig, openid.NewDefaultSession())
			if tc.unknown {
				if getErr != nil {
					t.Fatalf("the commit did not persist (%v); the test's fault is wrong", getErr)
				}
				if !errors.Is(err, storage.ErrOutcomeUnknown) || !storage.Unavailable(err) {
					t.Fatalf("BUG: a commit whose outcome could not be learnt reported as %v, want ErrOutcomeUnknown", err)
				}
				return
			}
			if tc.persist {
				if getErr != nil {
					t.Fatalf("the commit did not persist (%v); the test's fault is wrong", getErr)
				}
				if err != nil {
					t.Fatalf("BUG: a commit that took effect, its answer lost, reported as %v", err)
				}
				return
			}
			if !errors.Is(getErr, fosite.ErrNotFound) {
				t.Fatalf("the commit persisted (%v); the test's fault is wrong", getErr)
			}
			if !storage.Unavailable(err) {
				t.Fatalf("BUG: a commit that never reached the server reported as %v, want a database failure", err)
			}
			if strings.Contains(err.Error(), "unknown") {
				t.Errorf("the outcome of a COMMIT the server never read was left unknown: %v", err)
			}
		})
	}
}

// commitFault is what commitLoser does to a connection that sends COMMIT.
type commitFault int

const (
	loseAnswer commitFault = iota + 1 // send it, then hear nothing more
	dropCommit                        // send nothing more, hear nothing more
)

// commitLoser is a connection that, when its fault is set, goes deaf at
// the COMMIT pgx sends (a simple query "commit"), as if the network had
// failed then: reads wait for the deadline pgx sets, discarding what the
// server says.
type commitLoser struct {
	net.Conn
	fault *atomic.Value
	deaf  atomic.Bool
}

var commitMessage = []byte("Q\x00\x00\x00\x0bcommit\x00")

func (c *commitLoser) Write(b []byte) (int, error) {
	if f := c.fault.Load().(commitFault); f != 0 && bytes.Contains(b, commitMessage) {
		c.deaf.Store(true)
		if f == dropCommit {
			return len(b), nil
		}
	}
	if c.deaf.Load() && c.fault.Load().(commitFault) == dropCommit {
		return len(b), nil
	}
	return c.Conn.Write(b)
}

func (c *commitLoser) Read(b []byte) (int, error) {
	for c.deaf.Load() {
		if _, err := c.Conn.Read(b); err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(b)
}

// TestRerunIsReadCommitted: a unit of work run again after a lost
// serialization race starts at READ COMMITTED, whatever the database's
// default, with and without a deadline; a first run keeps the default.
func TestRerunIsReadCommitted(t *testing.T) {
	t.Parallel()
	cfg, err := pgxpool.ParseConfig(pgtest.DirectURL(pgtest.NewDatabase(t)))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["default_transaction_isolation"] = "serializable"
	pool, err := pgxpool.NewWithConfig(t.Context(), storage.PoolConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := storage.New(pool)
	withDeadline := func(ctx context.Context) context.Context {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		t.Cleanup(cancel)
		return ctx
	}
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want string
	}{
		{"first run", t.Context(), "serializable"},
		{"first run with a deadline", withDeadline(t.Context()), "serializable"},
		{"rerun", storage.Rerun(t.Context()), "read committed"},
		{"rerun with a deadline", withDeadline(storage.Rerun(t.Context())), "read committed"},
	} {
		ctx, err := s.BeginTX(tc.ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got string
		if err := s.QueryRowForTest(ctx, `SHOW transaction_isolation`).Scan(&got); err != nil {
			t.Fatal(err)
		}
		_ = s.Rollback(ctx)
		if got != tc.want {
			t.Errorf("%s: transaction_isolation %q, want %q", tc.name, got, tc.want)
		}
	}
}
