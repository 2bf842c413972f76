// Package storage keeps everything authz knows in PostgreSQL: clients, users,
// the single-use codes and tokens fosite hands us, login sessions, consents and
// signing keys. It implements fosite's storage interfaces on pgx/v5 and knows
// nothing of HTTP.
package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ory/fosite"
)

// Errors returned by the store. Not found is fosite's own sentinel, so one
// errors.Is check serves fosite's handlers and ours alike.
var (
	ErrNotFound      = fosite.ErrNotFound
	ErrAlreadyExists = errors.New("already exists")
)

// Store is the PostgreSQL store. It is safe for concurrent use.
type Store struct {
	pool    *pgxpool.Pool
	now     func() time.Time
	clients *clientCache
	// resolvers bounds the connections opened at once to ask what became
	// of COMMITs whose answers were lost (commitOutcome): in the incident
	// that loses them, hundreds of requests must not each open one.
	resolvers chan struct{}
	// introspections batches concurrent introspection lookups.
	introspections *coalescer[introspectKey, introspectRow]
	// inserts batches concurrent inserts run outside a transaction.
	inserts [insertShards]*coalescer[insertCall, error]
}

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock used for expiry decisions, so tests can move time.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// New returns a Store on pool.
func New(pool *pgxpool.Pool, opts ...Option) *Store {
	s := &Store{pool: pool, now: time.Now, clients: newClientCache(), resolvers: make(chan struct{}, maxResolvers)}
	s.introspections = newCoalescer(introspectInFlight, introspectBatch, introspectStuck, s.lookupTokens)
	for i := range s.inserts {
		s.inserts[i] = newCoalescer(insertInFlight, insertBatch, insertStuck, s.insertRows)
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Pool returns the underlying pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// querier is what both the pool and a transaction offer, so each query helper
// runs inside or outside a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

type txKey struct{}

// db returns the transaction carried by ctx, or the pool. A statement run
// in a transaction first sends the writes it has deferred (see unit).
func (s *Store) db(ctx context.Context) querier {
	if sc := scopeOf(ctx); sc != nil {
		return unitQuerier{sc.u}
	}
	return autocommit{s.pool}
}

// BeginTX starts a transaction and returns a context carrying it; every
// storage call made with that context runs inside it. Called within a
// transaction, it starts a nested one (a savepoint, sent only when a
// statement runs inside it). Implements fosite's storage.Transactional.
func (s *Store) BeginTX(ctx context.Context) (context.Context, error) {
	if outer := scopeOf(ctx); outer != nil {
		return context.WithValue(ctx, txKey{}, &scope{u: outer.u, sp: outer.u.begin()}), nil
	}
	gen := s.clients.generation()
	tx, err := s.begin(ctx)
	if err != nil {
		return ctx, translate("begin transaction", err)
	}
	return context.WithValue(ctx, txKey{}, &scope{u: &unit{tx: tx, memo: newMemo(), clientGen: gen}}), nil
}

// begin starts an outermost transaction. The connection is taken first and
// the deadline measured after: time spent waiting for a connection must
// not push the server-side deadline past the request's.
func (s *Store) begin(ctx context.Context) (pgx.Tx, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{BeginQuery: beginQuery(ctx)})
	if err != nil {
		conn.Release()
		return nil, err
	}
	return &pooledTx{Tx: tx, conn: conn}, nil
}

// pooledTx is a transaction on a connection the store acquired itself: it
// goes back to the pool when the transaction ends.
type pooledTx struct {
	pgx.Tx
	conn *pgxpool.Conn
	once sync.Once
}

func (t *pooledTx) Commit(ctx context.Context) error {
	err := t.Tx.Commit(ctx)
	t.once.Do(t.conn.Release)
	return err
}

func (t *pooledTx) Rollback(ctx context.Context) error {
	err := t.Tx.Rollback(ctx)
	t.once.Do(t.conn.Release)
	return err
}

// commitMargin is how long before its request's deadline a transaction
// must have committed: the time the commit's acknowledgement may take to
// come back. A commit the server reaches later fails (migrations/006).
const commitMargin = 250 * time.Millisecond

// beginQuery starts a transaction bounded by ctx's deadline on the server's
// side too: its statements and lock waits end with the deadline, and a
// commit the server reaches after it fails, so a database that stalls and
// resumes never commits work for a request that has already answered 503.
// All of it is one round trip.
func beginQuery(ctx context.Context) string {
	begin := "BEGIN"
	if isRerun(ctx) {
		begin = "BEGIN ISOLATION LEVEL READ COMMITTED"
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		if begin == "BEGIN" {
			return "" // pgx's plain BEGIN
		}
		return begin
	}
	left := time.Until(deadline).Milliseconds()
	if left < 1 {
		left = 1
	}
	commitBy := left - commitMargin.Milliseconds()
	if commitBy < 1 {
		commitBy = 1
	}
	// statement_timeout runs a second past the deadline: it only stops
	// work the server would otherwise finish for nobody. Were it to fire
	// first on a COMMIT waiting for a synchronous standby, PostgreSQL
	// would report that commit successful with a mere warning, before the
	// standby had it; the deadline closes the connection instead.
	return fmt.Sprintf(begin+"; SET LOCAL statement_timeout = %d; SET LOCAL lock_timeout = %d; "+
		"SELECT set_config('authz.commit_by', (clock_timestamp() + interval '%d milliseconds')::text, true)",
		left+1000, left, commitBy)
}

// Commit commits the transaction carried by ctx, or releases the nested
// level ctx belongs to.
func (s *Store) Commit(ctx context.Context) error {
	sc := scopeOf(ctx)
	if sc == nil {
		return errors.New("commit: no transaction in context")
	}
	// A request that met a database failure answers 503: nothing of what
	// it did may persist, not even what a savepoint kept.
	if err := faultOf(ctx); err != nil {
		_ = s.Rollback(ctx)
		return fmt.Errorf("commit: %w", err)
	}
	if sc.sp != nil {
		return sc.u.release(sc.sp)
	}
	if err := ctx.Err(); err != nil {
		// Too late to send the COMMIT: the request has given up.
		recordFault(ctx, err)
		_ = s.Rollback(ctx)
		return translate("commit", err)
	}
	// The writes still deferred go with a SELECT that learns the
	// transaction's id, for when the COMMIT's answer does not arrive, and
	// measures the server's commit deadline (beginQuery) again. Measured
	// from BEGIN alone it lies late by however long the BEGIN waited on
	// the way, say in a pooler's queue for a server connection; the
	// earlier of the two stands. The COMMIT is sent only once this answer
	// is back, so a server that stalls before reading it has fixed the
	// deadline already.
	var (
		xid string
		pid uint32
	)
	tail := &write{sql: "SELECT pg_current_xact_id()::text, pg_backend_pid(), NULL"}
	if deadline, ok := ctx.Deadline(); ok {
		tail = &write{
			sql: "SELECT pg_current_xact_id()::text, pg_backend_pid(), set_config('authz.commit_by', least(" +
				"nullif(current_setting('authz.commit_by', true), '')::timestamptz, " +
				"clock_timestamp() + $1 * interval '1 millisecond')::text, true)",
			args: []any{max(time.Until(deadline)-commitMargin, time.Millisecond).Milliseconds()},
		}
	}
	if err := sc.u.flush(ctx, tail, &xid, &pid, nil); err != nil {
		_ = s.Rollback(ctx)
		return translate("commit", err)
	}
	// The COMMIT is sent before the deadline; its answer is awaited a
	// little past it. Were the connection cut at the deadline, a commit
	// the server made in time would be reported as failed: a 503 for a
	// spent code. The server refuses a COMMIT it reaches too late itself
	// (beginQuery), so waiting for its answer cannot let one through.
	commitCtx := ctx
	if deadline, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		commitCtx, cancel = context.WithDeadline(context.WithoutCancel(ctx), deadline.Add(commitGrace))
		defer cancel()
	}
	defer sc.u.end()
	// The COMMIT's failure is recorded against the request (as a fault)
	// only once its outcome is known.
	err := sc.u.tx.Commit(WithoutFaultRecording(commitCtx))
	if err == nil {
		return nil
	}
	// No answer: the COMMIT may or may not have taken effect. Another
	// connection asks the server which, so that work it did keep is
	// reported done rather than as a 503 for a code it spent.
	if xid != "" && commitOutcomeUnknown(err) {
		switch s.commitOutcome(ctx, xid, pid) {
		case "committed":
			return nil
		case "aborted":
		default:
			err = fmt.Errorf("transaction %s: %w: %w: %w", xid, ErrUnavailable, ErrOutcomeUnknown, err)
		}
	}
	recordFault(ctx, err)
	return translate("commit", err)
}

// commitGrace is how long past the request's deadline the answer to a
// COMMIT sent in time is awaited.
const commitGrace = 750 * time.Millisecond

// commitResolve is how long, past commitGrace, the server is asked
// whether a COMMIT that went unanswered took effect. A request's answer
// thus leaves at most commitGrace+commitResolve after its deadline, well
// within the HTTP server's write timeout (see authz.MaxRequestTimeout).
const commitResolve = 1500 * time.Millisecond

// maxResolvers is how many COMMITs of lost answer a store asks about at
// once, each on a connection of its own.
const maxResolvers = 4

// commitOutcomeUnknown reports whether a failed COMMIT may yet have taken
// effect: its answer never came. A refusal from the server (a PgError) or
// a failure before anything was sent says it did not.
func commitOutcomeUnknown(err error) bool {
	var pgErr *pgconn.PgError
	return !errors.As(err, &pgErr) && !errors.Is(err, pgx.ErrTxCommitRollback) && !pgconn.SafeToRetry(err)
}

// commitOutcome asks the server, on another connection, what became of
// transaction xid of backend pid: "committed" once it has committed and is
// visible to others (for a synchronous standby's sake, committing locally
// is not enough), "aborted", or "" when that is still unknown after
// commitResolve.
//
// A backend still idle in that transaction never read the COMMIT (lost on
// the way, or in the socket of a server that stalled) and would hold the
// transaction's locks, a code's row among them, until it noticed the
// connection gone, which pgx may take 15 s to close. It is ended, so that
// the outcome is known (aborted) and the code free for the client's retry.
// One busy with the COMMIT is left to finish: ending it while it waits for
// a synchronous standby would make the commit visible before the standby
// had it.
func (s *Store) commitOutcome(ctx context.Context, xid string, pid uint32) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitResolve)
	defer cancel()
	select {
	case s.resolvers <- struct{}{}:
		defer func() { <-s.resolvers }()
	case <-ctx.Done():
		return ""
	}
	// A connection of its own: the pool's may all be taken by requests
	// waiting on the same slow server, and this question must not queue
	// behind them.
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	for {
		if conn == nil || conn.IsClosed() {
			conn, _ = pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig)
		}
		if conn != nil {
			var (
				status  *string
				visible bool
			)
			err := conn.QueryRow(ctx, `
				SELECT pg_xact_status($1::xid8), pg_visible_in_snapshot($1::xid8, pg_current_snapshot()),
					(SELECT bool_or(pg_terminate_backend(pid)) FROM pg_stat_activity
					 WHERE pid = $2 AND state = 'idle in transaction'
					   AND backend_xid::text = ($1::xid8::text::numeric % 4294967296)::text)`, xid, pid).
				Scan(&status, &visible, nil)
			if err == nil && status != nil {
				switch {
				case *status == "aborted":
					return "aborted"
				case *status == "committed" && visible:
					return "committed"
				}
			}
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ""
		case <-t.C:
		}
	}
}

// Rollback rolls back the transaction carried by ctx, or the nested level
// ctx belongs to. Rolling back one that has already ended is not an error.
func (s *Store) Rollback(ctx context.Context) error {
	sc := scopeOf(ctx)
	if sc == nil {
		return errors.New("rollback: no transaction in context")
	}
	// A context that is already cancelled must not keep the rollback from
	// reaching the server.
	ctx = context.WithoutCancel(ctx)
	if sc.sp != nil {
		if err := sc.u.rollbackTo(ctx, sc.sp); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
			return fmt.Errorf("rollback: %w", err)
		}
		return nil
	}
	sc.u.pending = nil
	sc.u.open = nil
	defer sc.u.end()
	if err := sc.u.tx.Rollback(ctx); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		return fmt.Errorf("rollback: %w", err)
	}
	return nil
}

// InTx runs fn inside a transaction, committing when it returns nil. An
// outermost transaction that loses a serialization race or deadlocks runs
// again, whole, up to MaxAttempts times (fn must do nothing but database
// work); after that the failure stands.
func (s *Store) InTx(ctx context.Context, fn func(ctx context.Context) error) error {
	if scopeOf(ctx) != nil {
		return s.inTx(ctx, fn)
	}
	for attempt := 1; ; attempt++ {
		err := s.inTx(ctx, fn)
		if err == nil || !RunAgain(ctx, attempt, Retryable(err) || RetryableFault(ctx)) {
			return err
		}
		ResetFault(ctx)
		ctx = Rerun(ctx)
	}
}

func (s *Store) inTx(ctx context.Context, fn func(ctx context.Context) error) (err error) {
	ctx, err = s.BeginTX(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = s.Rollback(ctx)
		}
	}()
	if err = fn(ctx); err != nil {
		return err
	}
	return s.Commit(ctx)
}

// translate maps PostgreSQL errors onto the sentinels callers check for and
// wraps everything else with the operation.
func translate(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", op, fosite.ErrNotFound)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case pgerrcode.UniqueViolation:
			return fmt.Errorf("%s: %w", op, ErrAlreadyExists)
		case pgerrcode.CharacterNotInRepertoire, pgerrcode.UntranslatableCharacter:
			// A key with bytes no text can hold (a NUL, invalid UTF-8)
			// cannot name a row.
			return fmt.Errorf("%s: %w", op, fosite.ErrNotFound)
		case pgerrcode.SerializationFailure, pgerrcode.DeadlockDetected:
			return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, fosite.ErrSerializationFailure.WithWrap(err))
		}
	}
	if Unavailable(err) {
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// DatabaseTime returns the database server's clock.
func (s *Store) DatabaseTime(ctx context.Context) (time.Time, error) {
	var t time.Time
	err := s.db(ctx).QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&t)
	return t.UTC(), translate("read the database's clock", err)
}
