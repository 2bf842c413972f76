package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/puddle/v2"
)

// ErrUnavailable marks a failure of the database rather than of the request:
// it is down, unreachable, too slow for the request's deadline, shutting
// down or read-only after a failover. Callers answer 503 and the client may
// retry; nothing the request asked for was done.
var ErrUnavailable = errors.New("the database is unavailable")

// ErrOutcomeUnknown says a COMMIT was sent and its answer lost, and the
// server could not be asked in time whether it took effect: the request's
// work may or may not persist. It comes wrapped with ErrUnavailable.
var ErrOutcomeUnknown = errors.New("whether the transaction took effect is unknown")

// Unavailable reports whether err is a database failure (see ErrUnavailable)
// as opposed to an answer about the data (not found, already exists) or a
// bug in a query.
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", // connection exception
			"40", // transaction rollback: serialization failure, deadlock
			"53", // insufficient resources: too many connections, disk full
			"55", // object not in prerequisite state: lock_not_available
			"57", // operator intervention: query_canceled (statement_timeout), admin_shutdown, cannot_connect_now
			"58", // system error
			"XX": // internal error
			return true
		}
		// read_only_sql_transaction: a standby, reached after a failover
		// before the client switched to the new primary.
		return pgErr.Code == "25006"
	}
	var (
		netErr     net.Error
		connectErr *pgconn.ConnectError
	)
	// The connection failing under us: refused, reset, timed out, cut
	// (EOF), or the pool closed.
	return errors.As(err, &netErr) || errors.As(err, &connectErr) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, puddle.ErrClosedPool)
}

// FaultRecorder remembers the first database failure seen while serving one
// request. The HTTP layer puts one in each request's context; the pool's
// tracer (PoolConfig) fills it whatever path the failing query took, even
// when fosite swallows the error, so the answer can say the truth: 503, and
// no commit.
type FaultRecorder struct {
	mu  sync.Mutex
	err error
}

type faultKey struct{}

// WithFaultRecorder returns a context whose database failures are recorded
// in the returned recorder.
func WithFaultRecorder(ctx context.Context) (context.Context, *FaultRecorder) {
	f := &FaultRecorder{}
	return context.WithValue(ctx, faultKey{}, f), f
}

// WithoutFaultRecording returns ctx with recording turned off, for reads
// whose failure the caller covers (a cache that answers from memory).
func WithoutFaultRecording(ctx context.Context) context.Context {
	return context.WithValue(ctx, faultKey{}, (*FaultRecorder)(nil))
}

// OutcomeUnknown reports whether the failure recorded in ctx's request
// was a COMMIT of unknown outcome (ErrOutcomeUnknown): its answer must
// not claim that nothing was changed.
func OutcomeUnknown(ctx context.Context) bool {
	f, _ := ctx.Value(faultKey{}).(*FaultRecorder)
	return errors.Is(f.Err(), ErrOutcomeUnknown)
}

// Err returns the first recorded failure, wrapping ErrUnavailable, or nil.
func (f *FaultRecorder) Err() error {
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Reset forgets what was recorded, for a caller that retries the whole
// unit of work.
func (f *FaultRecorder) Reset() {
	if f == nil {
		return
	}
	f.mu.Lock()
	f.err = nil
	f.mu.Unlock()
}

func (f *FaultRecorder) record(err error) {
	if f == nil {
		return
	}
	f.mu.Lock()
	if f.err == nil {
		f.err = fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	f.mu.Unlock()
}

// faultOf returns the failure recorded in ctx, or nil.
func faultOf(ctx context.Context) error {
	f, _ := ctx.Value(faultKey{}).(*FaultRecorder)
	return f.Err()
}

func recordFault(ctx context.Context, err error) {
	if !Unavailable(err) {
		return
	}
	if f, _ := ctx.Value(faultKey{}).(*FaultRecorder); f != nil {
		f.record(err)
	}
}

// tracer sees the end of every query and every pool acquisition, and so
// every way the database can fail a request. It also counts the statements
// the pool ran (Statements), for benchmarks and metrics.
type tracer struct {
	statements *atomic.Int64
}

var (
	_ pgx.QueryTracer       = tracer{}
	_ pgxpool.AcquireTracer = tracer{}
)

func (tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (t tracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	if t.statements != nil {
		t.statements.Add(1)
	}
	if data.Err != nil {
		recordFault(ctx, data.Err)
	}
}

func (tracer) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	return ctx
}

func (tracer) TraceAcquireEnd(ctx context.Context, _ *pgxpool.Pool, data pgxpool.TraceAcquireEndData) {
	if data.Err != nil {
		recordFault(ctx, data.Err)
	}
}

// PoolConfig prepares a pool configuration for a Store: it installs the
// tracer that records database failures against the request they hurt.
// Every pool an HTTP handler uses must be made with it (authz.New checks).
func PoolConfig(cfg *pgxpool.Config) *pgxpool.Config {
	cfg.ConnConfig.Tracer = tracer{statements: new(atomic.Int64)}
	return cfg
}

// Instrumented reports whether pool was configured with PoolConfig.
func Instrumented(pool *pgxpool.Pool) bool {
	_, ok := pool.Config().ConnConfig.Tracer.(tracer)
	return ok
}

// Statements returns how many statements pool has run (a BEGIN with its
// settings is one round trip and counts as one), or -1 when pool was not
// made with PoolConfig.
func Statements(pool *pgxpool.Pool) int64 {
	t, ok := pool.Config().ConnConfig.Tracer.(tracer)
	if !ok || t.statements == nil {
		return -1
	}
	return t.statements.Load()
}

// NewPool opens a pool on url configured with PoolConfig. It does not dial.
func NewPool(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	return pgxpool.NewWithConfig(ctx, PoolConfig(cfg))
}
