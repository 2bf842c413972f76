package storage

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// A unit is one outermost transaction and what the store knows of it: the
// rows it has read (so fosite's handlers, which read a code or a token up
// to three times per request, go to the database once), the writes it has
// not sent yet, and its open savepoints.
//
// Writes whose outcome the store already knows are deferred and sent
// together, as one statement, when the transaction next needs the
// database: usually right before COMMIT. A code exchange's spending of the
// code, its two new tokens and its deleted OpenID Connect session are then
// one round trip instead of four. What is deferred is chosen so the answer
// cannot differ from running each write when it was asked for:
//
//   - an insert, whose only failure (a duplicate random signature) would
//     be a server error either way;
//   - an update or delete by request id, which reports nothing;
//   - spending a code or rotating a refresh token this transaction holds
//     locked and has seen active, so the conditional update is known to
//     match;
//   - deleting a row this transaction has read.
//
// Every other statement first sends what is deferred, so it sees the
// transaction's own writes. Savepoints are lazy too: one that is opened
// and released with no statement in between costs nothing.
type unit struct {
	tx      pgx.Tx
	pending []pendingItem
	open    []*savepoint // nested levels, innermost last
	seq     int
	memo    *memo
	// wroteClients: the transaction changed a client, so what it reads
	// of clients may never be committed and is not cached.
	wroteClients bool
	// clientGen is the client cache's generation before BEGIN: a client
	// this transaction reads may come from a snapshot taken then, so it
	// is cached only if nothing changed since (clientCache.put).
	clientGen uint64
	// plans are prefetches to run when a row is first asked for
	// (PrefetchCode): at fosite's first read, after it has authenticated
	// the client, rather than before.
	plans map[rowKey][]fetch
	// onEnd runs when the transaction has ended, committed or not.
	onEnd []func()
}

func (u *unit) end() {
	for _, f := range u.onEnd {
		f()
	}
	u.onEnd = nil
}

// scope is what a transaction's context carries: its unit, and the
// savepoint of the level it belongs to (nil for the outermost).
type scope struct {
	u  *unit
	sp *savepoint
}

type savepoint struct {
	name string
	sent bool
}

// pendingItem is a deferred write or the start of a savepoint.
type pendingItem struct {
	sp    *savepoint
	write *write
}

type write struct {
	table  requestTable
	insert bool
	sql    string
	args   []any
	// row, for an insert of one row, is the end of sql that is its
	// VALUES list: inserts that differ only there make one statement
	// of many rows (insertRows).
	row string
	// batchKey groups inserts run outside a transaction (insertNow):
	// the row's client.
	batchKey string
}

func scopeOf(ctx context.Context) *scope {
	sc, _ := ctx.Value(txKey{}).(*scope)
	return sc
}

// deferWrite queues w in ctx's transaction, or runs it at once outside one.
// Run at once, it is its own transaction, which commits only before ctx's
// deadline as every transaction begun by the store does (beginQuery,
// migration 006): the statement sets authz.commit_by itself. An insert of
// one row run at once may share its statement and commit with concurrent
// ones (insertNow).
func (s *Store) deferWrite(ctx context.Context, w *write) error {
	sc := scopeOf(ctx)
	if sc == nil {
		if w.row != "" {
			return s.insertNow(ctx, w)
		}
		return s.writeNow(ctx, w, deadlineOf(ctx))
	}
	sc.u.pending = append(sc.u.pending, pendingItem{write: w})
	return nil
}

// writeNow runs w as a transaction of its own that commits only before
// deadline (less commitMargin), if there is one. Within that margin of
// its deadline it is not sent: it could not commit in time.
func (s *Store) writeNow(ctx context.Context, w *write, deadline time.Time) error {
	if tooLate(deadline) {
		return errTooLate
	}
	sql, args := w.sql, w.args
	if tail := commitByTail(deadline); tail != nil {
		sql, args = combine([]*write{w}, tail)
	}
	_, err := autocommit{s.pool}.Exec(ctx, sql, args...)
	return err
}

// errTooLate refuses a write whose request's deadline is too near for its
// commit to be acknowledged before it.
var errTooLate = fmt.Errorf("%w: too close to the request's deadline to commit", context.DeadlineExceeded)

// tooLate reports whether a commit due by deadline (zero: none) can no
// longer be acknowledged before it.
func tooLate(deadline time.Time) bool {
	return !deadline.IsZero() && time.Until(deadline) <= commitMargin
}

func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// commitByTail is a SELECT that bounds the commit of the statement it
// ends by deadline, less commitMargin; nil without a deadline.
func commitByTail(deadline time.Time) *write {
	if deadline.IsZero() {
		return nil
	}
	commitBy := max(time.Until(deadline)-commitMargin, time.Millisecond)
	return &write{sql: `SELECT set_config('authz.commit_by', (clock_timestamp() + $1 * interval '1 microsecond')::text, true)`,
		args: []any{commitBy.Microseconds()}}
}

// insertCall is one row to insert outside a transaction, with the
// context of the request that asked for it.
type insertCall struct {
	w   *write
	ctx context.Context
}

// insertWrites makes one multi-row INSERT of calls' inserts for each
// statement head (table and columns), in order of first appearance.
func insertWrites(calls []insertCall) []*write {
	var (
		heads []string
		rows  = map[string]*write{}
	)
	for _, c := range calls {
		head := strings.TrimSuffix(c.w.sql, c.w.row)
		m := rows[head]
		if m == nil {
			m = &write{table: c.w.table, insert: true, sql: c.w.sql, args: slices.Clone(c.w.args)}
			rows[head] = m
			heads = append(heads, head)
			continue
		}
		m.sql += ", " + renumbered(c.w.row, len(m.args))
		m.args = append(m.args, c.w.args...)
	}
	ws := make([]*write, len(heads))
	for i, h := range heads {
		ws[i] = rows[h]
	}
	return ws
}

// earliestDeadline is the earliest of calls' deadlines; zero if none has
// one.
func earliestDeadline(calls []insertCall) time.Time {
	var earliest time.Time
	for _, c := range calls {
		if d := deadlineOf(c.ctx); !d.IsZero() && (earliest.IsZero() || d.Before(earliest)) {
			earliest = d
		}
	}
	return earliest
}

// How inserts run outside a transaction are batched (coalescer): issuing
// a token with client_credentials writes its one row this way. One batch
// in flight, as for introspection: the next gathers what arrives while
// the last commits. At 32 concurrent grants PostgreSQL's CPU per grant
// was 75-80 us with one batch in flight, 92-106 with two, 113-131 with
// four (251-280 unbatched), and the rate highest with one, at 8
// concurrent grants too. A commit held up for 25 ms (a slow disk, a
// stall) lets another batch start beside it.
//
// Grants are batched apart by client, in insertShards groups: a batch
// waits for the client rows its foreign keys lock, and a client being
// deleted (its row locked while the cascade deletes its tokens) then
// holds up the grants of the clients that share its group, not of all.
// The figures above are of one busy client; grants spread over many
// clients make up to insertShards batches in flight, each smaller.
const (
	insertInFlight = 1
	insertBatch    = 64
	insertStuck    = 25 * time.Millisecond
	insertShards   = 16
)

// insertNow inserts w's row in a transaction of its own, or in one shared
// with the inserts of concurrent requests (insertRows).
func (s *Store) insertNow(ctx context.Context, w *write) error {
	shard := 0
	if w.batchKey != "" {
		h := fnv.New32a()
		_, _ = h.Write([]byte(w.batchKey))
		shard = int(h.Sum32() % insertShards)
	}
	err, cerr := s.inserts[shard].do(ctx, insertCall{w: w, ctx: ctx})
	if cerr != nil {
		err = cerr
	}
	return s.insertOutcome(ctx, w, err)
}

// errInsertAlone is a batch's answer to each of its rows when the
// database refused the statement for what some row holds: each request
// then inserts its own row alone.
var errInsertAlone = errors.New("storage: insert the row alone")

// insertOutcome is what a batched insert answers its request: the batch's
// result, or that of inserting the row alone when the batch was refused
// for some row. The row is retried by its own request, under its own
// context, so no request waits for others' retries, and each answer is
// given as soon as it is known.
func (s *Store) insertOutcome(ctx context.Context, w *write, err error) error {
	if errors.Is(err, errInsertAlone) {
		err = s.writeNow(ctx, w, deadlineOf(ctx))
	}
	recordFault(ctx, err)
	return err
}

// insertTogether inserts calls' rows in one transaction: BEGIN with its
// bounds, one statement, COMMIT.
func (s *Store) insertTogether(ctx context.Context, calls []insertCall) error {
	tctx, err := s.BeginTX(ctx)
	if err != nil {
		return err
	}
	for _, w := range insertWrites(calls) {
		if err := s.deferWrite(tctx, w); err != nil {
			_ = s.Rollback(tctx)
			return err
		}
	}
	return s.Commit(tctx)
}

// insertRows runs a batch of inserts: one statement and one commit for
// all. A call whose request has given up, or whose deadline is too near
// to commit by, is left out and refused. The batch is a transaction
// bounded, as every transaction the store begins (beginQuery), by the
// earliest deadline of the rest, on the server's side too: its lock
// waits end then, and a commit the server reaches later fails (migration
// 006). So no row commits after its request has been answered that
// nothing was done. (A request whose client hangs up once the statement is under
// way can still have its row committed: one token that nobody was given,
// as when any commit's answer is lost.) A statement refused for what one
// row holds (a unique or foreign key violation: a client deleted
// meanwhile) fails no other row: each is then inserted alone by its own
// request (insertOutcome), for its own answer. A database failure is
// everyone's.
func (s *Store) insertRows(ctx context.Context, calls []insertCall) ([]error, error) {
	if len(calls) == 1 {
		c := calls[0]
		return []error{s.writeNow(c.ctx, c.w, deadlineOf(c.ctx))}, nil
	}
	errs := make([]error, len(calls))
	var (
		live []insertCall
		at   []int
	)
	for i, c := range calls {
		switch {
		case c.ctx.Err() != nil:
			errs[i] = c.ctx.Err()
		case tooLate(deadlineOf(c.ctx)):
			errs[i] = errTooLate
		default:
			live = append(live, c)
			at = append(at, i)
		}
	}
	if len(live) == 0 {
		return errs, nil
	}
	if earliest := earliestDeadline(live); !earliest.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, earliest)
		defer cancel()
	}
	err := s.insertTogether(ctx, live)
	if err == nil {
		return errs, nil
	}
	if Unavailable(err) {
		return nil, err
	}
	for _, i := range at {
		errs[i] = errInsertAlone
	}
	return errs, nil
}

// sync sends everything deferred, in order: runs of writes as single
// statements, savepoint starts as SAVEPOINT.
func (u *unit) sync(ctx context.Context) error { return u.flush(ctx, nil) }

// flush is sync, with tail (a SELECT) made the primary query of the last
// statement, every write of which becomes a WITH clause; the tail's row is
// scanned into dest. Without writes left to send, the tail is not sent and
// dest is left as it was.
func (u *unit) flush(ctx context.Context, tail *write, dest ...any) error {
	if len(u.pending) == 0 {
		return nil
	}
	items := u.pending
	u.pending = nil
	var run []*write
	send := func() error {
		if len(run) == 0 {
			return nil
		}
		sql, args := combine(run, nil)
		run = nil
		_, err := u.tx.Exec(ctx, sql, args...)
		return err
	}
	for _, it := range items {
		if it.sp != nil {
			if err := send(); err != nil {
				return err
			}
			if _, err := u.tx.Exec(ctx, "SAVEPOINT "+it.sp.name); err != nil {
				return err
			}
			it.sp.sent = true
			continue
		}
		if conflicts(run, it.write) {
			if err := send(); err != nil {
				return err
			}
		}
		run = append(run, it.write)
	}
	if tail == nil || len(run) == 0 {
		return send()
	}
	sql, args := combine(run, tail)
	return u.tx.QueryRow(ctx, sql, args...).Scan(dest...)
}

// conflicts reports whether w must not share a statement with run. All
// parts of one statement see the same snapshot and none sees another's
// rows: an update or delete must not follow a write to its table, which
// it might have to see or would touch a second time. An insert may follow
// anything.
func conflicts(run []*write, w *write) bool {
	if w.insert {
		return false
	}
	for _, r := range run {
		if r.table == w.table {
			return true
		}
	}
	return false
}

var placeholder = regexp.MustCompile(`\$([0-9]+)`)

// renumberedSQL remembers renumbered: the statements come from a few
// dozen constants and the offsets from how they are combined, so the
// regexp runs once per pair rather than on every request. It stops
// growing at renumberedMax entries, a bound no set of our statements
// reaches, so a bug that made SQL per request could not grow it forever.
var (
	renumberedSQL  sync.Map // renumberKey -> string
	renumberedSize atomic.Int64
)

const renumberedMax = 4096

type renumberKey struct {
	sql    string
	offset int
}

// renumbered is sql with each placeholder $n made $(n+offset).
func renumbered(sql string, offset int) string {
	if offset == 0 {
		return sql
	}
	key := renumberKey{sql, offset}
	if v, ok := renumberedSQL.Load(key); ok {
		return v.(string)
	}
	out := placeholder.ReplaceAllStringFunc(sql, func(p string) string {
		n, _ := strconv.Atoi(p[1:])
		return "$" + strconv.Itoa(n+offset)
	})
	if renumberedSize.Load() < renumberedMax {
		if _, loaded := renumberedSQL.LoadOrStore(key, out); !loaded {
			renumberedSize.Add(1)
		}
	}
	return out
}

// combine makes one statement of several data-modifying ones: all but the
// last become WITH clauses, which PostgreSQL runs to completion whether or
// not anything reads them. With a tail, all of them do, and the tail is
// the statement's primary query.
func combine(ws []*write, tail *write) (string, []any) {
	if len(ws) == 1 && tail == nil {
		return ws[0].sql, ws[0].args
	}
	var b strings.Builder
	var args []any
	renumber := func(w *write) string {
		offset := len(args)
		args = append(args, w.args...)
		return renumbered(w.sql, offset)
	}
	for i, w := range ws {
		sql := renumber(w)
		switch {
		case i == 0:
			fmt.Fprintf(&b, "WITH w%d AS (%s)", i, sql)
		case i < len(ws)-1 || tail != nil:
			fmt.Fprintf(&b, ", w%d AS (%s)", i, sql)
		default:
			b.WriteString(" ")
			b.WriteString(sql)
		}
	}
	if tail != nil {
		b.WriteString(" ")
		b.WriteString(renumber(tail))
	}
	return b.String(), args
}

// begin opens a nested level: a savepoint, sent only when a statement
// runs inside it.
func (u *unit) begin() *savepoint {
	u.seq++
	sp := &savepoint{name: "sp_" + strconv.Itoa(u.seq)}
	u.pending = append(u.pending, pendingItem{sp: sp})
	u.open = append(u.open, sp)
	return sp
}

// release ends a nested level keeping its work. A savepoint that was sent
// stays until the transaction ends: releasing it would cost a round trip
// and change nothing.
func (u *unit) release(sp *savepoint) error {
	if err := u.pop(sp); err != nil {
		return err
	}
	if !sp.sent {
		for i, it := range u.pending {
			if it.sp == sp {
				u.pending = append(u.pending[:i], u.pending[i+1:]...)
				break
			}
		}
	}
	return nil
}

// rollbackTo ends a nested level undoing its work. A level already ended
// is not an error.
func (u *unit) rollbackTo(ctx context.Context, sp *savepoint) error {
	if !u.isOpen(sp) {
		return nil
	}
	_ = u.pop(sp)
	// What the level wrote is undone; what the memo learnt of its writes
	// (a code spent, a row deleted) must go with it.
	u.memo.clear()
	if !sp.sent {
		// Nothing of the level reached the database: forget its writes.
		for i, it := range u.pending {
			if it.sp == sp {
				u.pending = u.pending[:i]
				break
			}
		}
		return nil
	}
	// Its start was sent, so everything still deferred came after it.
	u.pending = nil
	_, err := u.tx.Exec(ctx, "ROLLBACK TO SAVEPOINT "+sp.name)
	return err
}

func (u *unit) isOpen(sp *savepoint) bool {
	for _, o := range u.open {
		if o == sp {
			return true
		}
	}
	return false
}

// pop closes sp, which must be the innermost open level.
func (u *unit) pop(sp *savepoint) error {
	if n := len(u.open); n == 0 || u.open[n-1] != sp {
		return errors.New("savepoint ended out of order")
	}
	u.open = u.open[:len(u.open)-1]
	return nil
}

// unitQuerier runs statements in a unit's transaction after what it has
// deferred.
type unitQuerier struct{ u *unit }

func (q unitQuerier) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := q.u.sync(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	return q.u.tx.Exec(ctx, sql, args...)
}

func (q unitQuerier) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := q.u.sync(ctx); err != nil {
		return nil, err
	}
	return q.u.tx.Query(ctx, sql, args...)
}

func (q unitQuerier) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := q.u.sync(ctx); err != nil {
		return errRow{err}
	}
	return q.u.tx.QueryRow(ctx, sql, args...)
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// memo holds the rows a request has read, by table and signature. A nil
// row records that none exists. Outside a transaction it lives for one
// request (WithReads); inside one, for the transaction.
type memo struct {
	rows map[rowKey]memoRow
}

type rowKey struct {
	table     requestTable
	signature string
}

type memoRow struct {
	row *requestRow
	// locked: read FOR UPDATE in this transaction, so no one else can
	// change it before the transaction ends.
	locked bool
}

func newMemo() *memo { return &memo{rows: make(map[rowKey]memoRow)} }

func (m *memo) get(table requestTable, signature string) (memoRow, bool) {
	if m == nil {
		return memoRow{}, false
	}
	r, ok := m.rows[rowKey{table, signature}]
	return r, ok
}

func (m *memo) put(table requestTable, signature string, r memoRow) {
	if m != nil {
		m.rows[rowKey{table, signature}] = r
	}
}

func (m *memo) forget(table requestTable, signature string) {
	if m != nil {
		delete(m.rows, rowKey{table, signature})
	}
}

// forgetRequest forgets table's rows of one grant, after a write by
// request id.
func (m *memo) forgetRequest(table requestTable, requestID string) {
	if m == nil {
		return
	}
	for k, r := range m.rows {
		if k.table == table && (r.row == nil || r.row.RequestID == requestID) {
			delete(m.rows, k)
		}
	}
}

func (m *memo) clear() {
	if m != nil {
		clear(m.rows)
	}
}

type memoKey struct{}

// WithReads returns a context in which the store remembers the request
// rows it reads, for one request outside a transaction: introspection
// asks for a token as an access token and then as a refresh token.
func WithReads(ctx context.Context) context.Context {
	return context.WithValue(ctx, memoKey{}, newMemo())
}

func memoOf(ctx context.Context) *memo {
	if sc := scopeOf(ctx); sc != nil {
		return sc.u.memo
	}
	m, _ := ctx.Value(memoKey{}).(*memo)
	return m
}
