package storage

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// MaxAttempts is how many times a unit of work runs when it keeps losing
// serialization races: under REPEATABLE READ or SERIALIZABLE (CockroachDB's
// default, and an option of PostgreSQL's) the database refuses a
// transaction that raced with another rather than let it decide on stale
// data, and expects it to be run again.
const MaxAttempts = 4

// Retryable reports whether err says the transaction lost such a race: a
// serialization failure or a deadlock. Running the whole transaction again
// gives it a fresh snapshot.
func Retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) &&
		(pgErr.Code == pgerrcode.SerializationFailure || pgErr.Code == pgerrcode.DeadlockDetected)
}

// RetryableFault reports whether the database failure recorded for ctx's
// request (see FaultRecorder) was a lost race, which rerunning the request's
// whole unit of work may win. Call ResetFault before that rerun.
func RetryableFault(ctx context.Context) bool {
	f, _ := ctx.Value(faultKey{}).(*FaultRecorder)
	return f != nil && Retryable(f.Err())
}

// ResetFault forgets the failure recorded for ctx's request, right before
// its unit of work runs again. Until then the failure stands: should the
// rerun not happen, the answer is the 503 it calls for.
func ResetFault(ctx context.Context) {
	f, _ := ctx.Value(faultKey{}).(*FaultRecorder)
	f.Reset()
}

type rerunKey struct{}

// Rerun marks ctx as that of a unit of work run again after it lost a
// serialization race (RunAgain): its transaction then starts at READ
// COMMITTED. Every unit of work here is written to be right at that
// level, PostgreSQL's default; a stricter default makes it lose races
// instead of waiting for a row, and on a hot row (one throttle key, one
// scope, one refresh family) it could lose more times than MaxAttempts
// allows.
func Rerun(ctx context.Context) context.Context { return context.WithValue(ctx, rerunKey{}, true) }

func isRerun(ctx context.Context) bool {
	r, _ := ctx.Value(rerunKey{}).(bool)
	return r
}

// RunAgain says whether a unit of work that has now run attempt times, and
// lost a serialization race or deadlocked the last time (lost), runs once
// more: at most MaxAttempts runs in all, and only if the pause before the
// next (a few milliseconds, doubling, with jitter so that racers do not
// meet again) ends well before ctx does. It waits that pause before
// saying yes. The one retry policy of every loop that reruns.
func RunAgain(ctx context.Context, attempt int, lost bool) bool {
	return lost && attempt < MaxAttempts && pause(ctx, attempt+1)
}

// pause waits before attempt (2, 3, ...); false, without waiting, when ctx
// ends first or would end before the attempt could do anything.
func pause(ctx context.Context, attempt int) bool {
	d := time.Duration(2<<attempt) * time.Millisecond
	d = d/2 + rand.N(d)
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < d+commitMargin {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// autocommit runs the statements of storage calls made outside a
// transaction. A statement that writes may lose a serialization race
// under REPEATABLE READ or SERIALIZABLE like any transaction (two sign-in
// failures counted on one row at once, say); a failed single statement
// did nothing, so it is run again. Reruns happen in a transaction of their
// own at READ COMMITTED: every statement sent outside a transaction is
// written to be right on its own at that level (it is PostgreSQL's
// default), where it waits for a row another writer holds and then works
// on that row's newest version rather than losing again. Rerunning at the
// stricter level instead would let many racers on one hot row (twenty
// sign-ins to one account at once) each lose MaxAttempts times.
type autocommit struct{ pool *pgxpool.Pool }

func (a autocommit) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	var tag pgconn.CommandTag
	err := a.retry(ctx, func(ctx context.Context, q querier) (err error) {
		tag, err = q.Exec(ctx, sql, args...)
		return err
	})
	return tag, err
}

// Query is not rerun: its failures arrive with its rows, and reads do not
// lose serialization races in single statements.
func (a autocommit) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return a.pool.Query(ctx, sql, args...)
}

func (a autocommit) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return retriedRow{ctx: ctx, a: a, run: func(ctx context.Context, q querier) pgx.Row { return q.QueryRow(ctx, sql, args...) }}
}

type retriedRow struct {
	ctx context.Context
	a   autocommit
	run func(ctx context.Context, q querier) pgx.Row
}

func (r retriedRow) Scan(dest ...any) error {
	return r.a.retry(r.ctx, func(ctx context.Context, q querier) error { return r.run(ctx, q).Scan(dest...) })
}

// retry runs one statement, and again up to MaxAttempts times in all
// while it loses serialization races, the reruns at READ COMMITTED. Only
// the last attempt's failure is recorded against the request
// (FaultRecorder): one that was won by a rerun is not an outage.
func (a autocommit) retry(ctx context.Context, run func(ctx context.Context, q querier) error) error {
	quiet := WithoutFaultRecording(ctx)
	for attempt := 1; ; attempt++ {
		var err error
		if attempt == 1 {
			err = run(quiet, a.pool)
		} else {
			err = a.readCommitted(quiet, run)
		}
		if !RunAgain(ctx, attempt, Retryable(err)) {
			recordFault(ctx, err)
			return err
		}
	}
}

// readCommitted runs one statement in a READ COMMITTED transaction.
func (a autocommit) readCommitted(ctx context.Context, run func(ctx context.Context, q querier) error) error {
	tx, err := a.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return err
	}
	if err := run(ctx, tx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	return tx.Commit(ctx)
}
