package storage

import (
	"context"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/ory/fosite"
)

// QueryRowForTest runs sql in the transaction ctx carries, or on the pool.
func (s *Store) QueryRowForTest(ctx context.Context, sql string, args ...any) pgx.Row {
	return s.db(ctx).QueryRow(ctx, sql, args...)
}

// ClientCacheListens counts the times the client cache started listening.
func (s *Store) ClientCacheListens() int64 { return s.clients.listens.Load() }

// ExecForTest runs sql in the transaction ctx carries, or on the pool.
func (s *Store) ExecForTest(ctx context.Context, sql string, args ...any) error {
	_, err := s.db(ctx).Exec(ctx, sql, args...)
	return err
}

// IntrospectBatchForTest runs one batch of introspection lookups as the
// coalescer would and says what each found: "access", "refresh" or "".
func (s *Store) IntrospectBatchForTest(ctx context.Context, signatures []string, accessOnly []bool) ([]string, error) {
	keys := make([]introspectKey, len(signatures))
	for i, sig := range signatures {
		keys[i] = introspectKey{signature: sig, accessOnly: accessOnly[i]}
	}
	rows, err := s.lookupTokens(ctx, keys)
	if err != nil {
		return nil, err
	}
	found := make([]string, len(rows))
	for i, r := range rows {
		switch {
		case !r.found:
		case r.access:
			found[i] = "access"
		default:
			found[i] = "refresh"
		}
	}
	return found, nil
}

// InsertBatchForTest inserts the access token rows of reqs, under sigs,
// as one batch of inserts run outside a transaction, each under its own
// context, and answers each as insertNow would.
func (s *Store) InsertBatchForTest(ctxs []context.Context, sigs []string, reqs []fosite.Requester) ([]error, error) {
	calls := make([]insertCall, len(sigs))
	var latest time.Time
	for i := range sigs {
		w, err := requestInsert(ctxs[i], accessTable, sigs[i], reqs[i], "", nil)
		if err != nil {
			return nil, err
		}
		calls[i] = insertCall{w: w, ctx: ctxs[i]}
		if d, ok := ctxs[i].Deadline(); ok && d.After(latest) {
			latest = d
		}
	}
	// As the coalescer runs a batch: under its latest deadline.
	ctx, cancel := context.WithDeadline(context.Background(), latest)
	defer cancel()
	errs, err := s.insertRows(ctx, calls)
	if err != nil {
		return nil, err
	}
	for i, c := range calls {
		errs[i] = s.insertOutcome(c.ctx, c.w, errs[i])
	}
	return errs, nil
}

// SetInsertStuckForTest sets how long an insert batch runs before
// another may start beside it.
func (s *Store) SetInsertStuckForTest(d time.Duration) {
	for _, c := range s.inserts {
		c.mu.Lock()
		c.stuckAfter = d
		c.mu.Unlock()
	}
}

// InsertsForTest says how many insert calls wait and how many insert
// batches run.
func (s *Store) InsertsForTest() (pending, running int) {
	for _, c := range s.inserts {
		c.mu.Lock()
		pending += len(c.pending)
		running += c.running
		c.mu.Unlock()
	}
	return pending, running
}

// SameInsertGroupForTest reports whether grants of clients a and b are
// batched in the same group.
func SameInsertGroupForTest(a, b string) bool {
	group := func(id string) uint32 {
		h := fnv.New32a()
		_, _ = h.Write([]byte(id))
		return h.Sum32() % insertShards
	}
	return group(a) == group(b)
}
