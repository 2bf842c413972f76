package storage_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/authz/authz/storage"
	"github.com/authz/authz/storage/pgtest"
)

// unitEnv is a store on an instrumented pool, so tests can count the
// statements a unit of work sends.
type unitEnv struct {
	t      testing.TB
	ctx    context.Context
	pool   *pgxpool.Pool
	store  *storage.Store
	client *storage.Client
}

func newUnitEnv(t testing.TB) *unitEnv {
	t.Helper()
	pool, err := storage.NewPool(context.Background(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	e := &unitEnv{t: t, ctx: context.Background(), pool: pool, store: storage.New(pool)}
	e.client = &storage.Client{ID: "rp", SecretHash: "x", RedirectURIs: []string{"https://rp.example/cb"},
		GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"},
		Scopes: []string{"openid"}, TokenEndpointAuthMethod: "client_secret_basic"}
	if err := e.store.CreateClient(e.ctx, e.client); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *unitEnv) request(id string) *fosite.Request {
	sess := openid.NewDefaultSession()
	sess.Subject = "user-1"
	sess.SetExpiresAt(fosite.AccessToken, time.Now().Add(time.Hour))
	sess.SetExpiresAt(fosite.RefreshToken, time.Now().Add(time.Hour))
	sess.SetExpiresAt(fosite.AuthorizeCode, time.Now().Add(time.Hour))
	return &fosite.Request{ID: id, RequestedAt: time.Now().UTC(), Client: e.client,
		GrantedScope: fosite.Arguments{"openid"}, Form: url.Values{}, Session: sess}
}

func (e *unitEnv) must(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

// statements runs fn and returns how many statements the pool ran.
func (e *unitEnv) statements(fn func()) int64 {
	before := storage.Statements(e.pool)
	fn()
	return storage.Statements(e.pool) - before
}

func (e *unitEnv) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	e.must(e.pool.QueryRow(e.ctx, `SELECT count(*) FROM `+sql, args...).Scan(&n))
	return n
}

// TestExchangeIsFourStatements: a code exchange as fosite's handlers make
// it (the code read three times, its PKCE request and OpenID Connect
// session read and deleted, the code spent, two tokens created) costs
// BEGIN, one read, one write and COMMIT, and does all of it.
func TestExchangeIsFourStatements(t *testing.T) {
	t.Parallel()
	e := newUnitEnv(t)
	req := e.request("grant-1")
	e.must(e.store.CreateAuthorizeCodeSession(e.ctx, "code-sig", req))
	e.must(e.store.CreatePKCERequestSession(e.ctx, "code-sig", req))
	e.must(e.store.CreateOpenIDConnectSession(e.ctx, "the-code", req))

	n := e.statements(func() {
		ctx, err := e.store.BeginTX(e.ctx)
		e.must(err)
		e.must(e.store.PrefetchCode(ctx, "code-sig", "the-code"))
		for range 2 {
			_, err = e.store.GetAuthorizeCodeSession(ctx, "code-sig", openid.NewDefaultSession())
			e.must(err)
		}
		_, err = e.store.GetPKCERequestSession(ctx, "code-sig", openid.NewDefaultSession())
		e.must(err)
		e.must(e.store.DeletePKCERequestSession(ctx, "code-sig"))
		inner, err := e.store.BeginTX(ctx) // fosite's own transaction
		e.must(err)
		e.must(e.store.InvalidateAuthorizeCodeSession(inner, "code-sig"))
		e.must(e.store.CreateAccessTokenSession(inner, "access-1", req))
		e.must(e.store.CreateRefreshTokenSession(inner, "refresh-1", "access-1", req))
		e.must(e.store.Commit(inner))
		_, err = e.store.GetOpenIDConnectSession(ctx, "the-code", &fosite.Request{Session: openid.NewDefaultSession()})
		e.must(err)
		e.must(e.store.DeleteOpenIDConnectSession(ctx, "the-code"))
		e.must(e.store.Commit(ctx))
	})
	if n != 4 {
		t.Errorf("the exchange ran %d statements, want 4", n)
	}
	if _, err := e.store.GetAuthorizeCodeSession(e.ctx, "code-sig", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
		t.Errorf("the code after the exchange: %v, want it spent", err)
	}
	if got := e.count(`access_tokens WHERE signature = 'access-1'`) + e.count(`refresh_tokens WHERE signature = 'refresh-1' AND active`); got != 2 {
		t.Errorf("%d of the 2 new tokens exist", got)
	}
	if got := e.count(`pkce_requests`) + e.count(`oidc_sessions`); got != 0 {
		t.Errorf("%d PKCE requests and OpenID Connect sessions left, want none", got)
	}
}

// TestRefreshIsFourStatements: rotating a refresh token retires the whole
// family, marks only the used token rotated, deletes the grant's access
// tokens and stores the new pair, in BEGIN, one read, one write, COMMIT.
func TestRefreshIsFourStatements(t *testing.T) {
	t.Parallel()
	e := newUnitEnv(t)
	req := e.request("grant-1")
	e.must(e.store.CreateAccessTokenSession(e.ctx, "access-0", req))
	e.must(e.store.CreateRefreshTokenSession(e.ctx, "refresh-0", "access-0", req))
	e.must(e.store.CreateRefreshTokenSession(e.ctx, "refresh-sibling", "access-0", req))

	n := e.statements(func() {
		// As the token endpoint: a refresh token it may rotate.
		ctx, err := e.store.BeginTX(storage.WithRefreshReuse(e.ctx, time.Now(), 2*time.Second))
		e.must(err)
		_, err = e.store.GetRefreshTokenSession(ctx, "refresh-0", openid.NewDefaultSession())
		e.must(err)
		inner, err := e.store.BeginTX(ctx)
		e.must(err)
		e.must(e.store.RotateRefreshToken(inner, "grant-1", "refresh-0"))
		e.must(e.store.CreateAccessTokenSession(inner, "access-1", req))
		e.must(e.store.CreateRefreshTokenSession(inner, "refresh-1", "access-1", req))
		e.must(e.store.Commit(inner))
		e.must(e.store.Commit(ctx))
	})
	if n != 4 {
		t.Errorf("the refresh ran %d statements, want 4", n)
	}
	for sig, want := range map[string]int{"refresh-0": 0, "refresh-sibling": 0, "refresh-1": 1} {
		if got := e.count(`refresh_tokens WHERE signature = $1 AND active`, sig); got != want {
			t.Errorf("%s active: %d, want %d", sig, got, want)
		}
	}
	if got := e.count(`refresh_tokens WHERE rotated_at IS NOT NULL`); got != 1 {
		t.Errorf("%d tokens marked rotated, want only the one used", got)
	}
	if e.count(`access_tokens WHERE signature = 'access-0'`) != 0 || e.count(`access_tokens WHERE signature = 'access-1'`) != 1 {
		t.Error("the grant's old access token should be gone and the new one stored")
	}
	// A second use of the rotated token, later, is reuse.
	if _, err := e.store.GetRefreshTokenSession(e.ctx, "refresh-0", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrInactiveToken) {
		t.Errorf("the rotated token: %v, want inactive", err)
	}
}

// TestDeferredWritesKeepTheirOrder: a write that must see an earlier one
// (revoking a grant after one of its tokens was created in the same
// transaction) is not merged into a statement with it, where it would not.
func TestDeferredWritesKeepTheirOrder(t *testing.T) {
	t.Parallel()
	e := newUnitEnv(t)
	req := e.request("grant-1")
	ctx, err := e.store.BeginTX(e.ctx)
	e.must(err)
	e.must(e.store.CreateRefreshTokenSession(ctx, "refresh-1", "access-1", req))
	e.must(e.store.CreateAccessTokenSession(ctx, "access-1", req))
	e.must(e.store.RevokeRefreshToken(ctx, "grant-1"))
	e.must(e.store.RevokeAccessToken(ctx, "grant-1"))
	e.must(e.store.Commit(ctx))
	if got := e.count(`refresh_tokens WHERE active`); got != 0 {
		t.Errorf("%d refresh tokens still active after their grant was revoked", got)
	}
	if got := e.count(`access_tokens`); got != 0 {
		t.Errorf("%d access tokens left after their grant was revoked", got)
	}
}

// TestLazySavepoints: a nested level that ran no statement costs none,
// and rolling it back forgets its deferred writes; one that did run a
// statement rolls back in the database.
func TestLazySavepoints(t *testing.T) {
	t.Parallel()
	e := newUnitEnv(t)
	req := e.request("grant-1")
	var n int64
	n = e.statements(func() {
		ctx, err := e.store.BeginTX(e.ctx)
		e.must(err)
		kept, err := e.store.BeginTX(ctx)
		e.must(err)
		e.must(e.store.CreateAccessTokenSession(kept, "kept", req))
		e.must(e.store.Commit(kept))
		dropped, err := e.store.BeginTX(ctx)
		e.must(err)
		e.must(e.store.CreateAccessTokenSession(dropped, "dropped", req))
		e.must(e.store.Rollback(dropped))
		sent, err := e.store.BeginTX(ctx)
		e.must(err)
		e.must(e.store.CreateAccessTokenSession(sent, "sent", req))
		// A read inside the level sends its savepoint and its write.
		if _, err := e.store.GetAccessTokenSession(sent, "sent", openid.NewDefaultSession()); err != nil {
			t.Errorf("a deferred write unseen by a read in its own transaction: %v", err)
		}
		e.must(e.store.Rollback(sent))
		e.must(e.store.Commit(ctx))
	})
	for sig, want := range map[string]int{"kept": 1, "dropped": 0, "sent": 0} {
		if got := e.count(`access_tokens WHERE signature = $1`, sig); got != want {
			t.Errorf("%s: %d rows, want %d", sig, got, want)
		}
	}
	// BEGIN; "kept"; SAVEPOINT; "sent"; the read; ROLLBACK TO SAVEPOINT;
	// COMMIT. Nothing for the levels "kept" and "dropped" themselves.
	if n != 7 {
		t.Errorf("%d statements, want 7", n)
	}
}

// TestIntrospectionPrefetchIsOneStatement: a token looked up as an access
// token and then as a refresh token, as introspection does, is one query.
func TestIntrospectionPrefetchIsOneStatement(t *testing.T) {
	t.Parallel()
	e := newUnitEnv(t)
	req := e.request("grant-1")
	e.must(e.store.CreateRefreshTokenSession(e.ctx, "token-sig", "access-1", req))
	n := e.statements(func() {
		ctx := storage.WithReads(e.ctx)
		e.must(e.store.PrefetchToken(ctx, "token-sig", "token-sig"))
		if _, err := e.store.GetAccessTokenSession(ctx, "token-sig", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
			t.Errorf("as an access token: %v, want not found", err)
		}
		if _, err := e.store.GetRefreshTokenSession(ctx, "token-sig", openid.NewDefaultSession()); err != nil {
			t.Errorf("as a refresh token: %v", err)
		}
	})
	if n != 1 {
		t.Errorf("%d statements, want 1", n)
	}
}

// TestNestedRollbackForgetsWhatItLearnt: a nested level that spent a
// code and was rolled back without reaching the database leaves the code
// as it was, in the database and in what the transaction remembers: the
// outer level can still spend it.
func TestNestedRollbackForgetsWhatItLearnt(t *testing.T) {
	t.Parallel()
	e := newUnitEnv(t)
	e.must(e.store.CreateAuthorizeCodeSession(e.ctx, "code-sig", e.request("grant-1")))
	ctx, err := e.store.BeginTX(e.ctx)
	e.must(err)
	defer e.store.Rollback(ctx)
	_, err = e.store.GetAuthorizeCodeSession(ctx, "code-sig", openid.NewDefaultSession())
	e.must(err)
	inner, err := e.store.BeginTX(ctx)
	e.must(err)
	e.must(e.store.InvalidateAuthorizeCodeSession(inner, "code-sig"))
	e.must(e.store.Rollback(inner))
	if _, err := e.store.GetAuthorizeCodeSession(ctx, "code-sig", openid.NewDefaultSession()); err != nil {
		t.Errorf("after the nested rollback the code reads %v, want it active", err)
	}
	if err := e.store.InvalidateAuthorizeCodeSession(ctx, "code-sig"); err != nil {
		t.Errorf("spending the code after the nested rollback: %v", err)
	}
	e.must(e.store.Commit(ctx))
	if _, err := e.store.GetAuthorizeCodeSession(e.ctx, "code-sig", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
		t.Errorf("after commit the code reads %v, want it spent", err)
	}
}

// TestInsertBatch: inserts batched outside a transaction are one
// transaction of one statement, each row with its own values. A row the database refuses
// (its client is gone, its signature taken) fails alone: the others are
// written and answered as such. A request that has given up, or whose
// deadline is too near to commit by, is refused and its row not written.
func TestInsertBatch(t *testing.T) {
	t.Parallel()
	e := newUnitEnv(t)
	within := func(d time.Duration) context.Context {
		ctx, cancel := context.WithTimeout(e.ctx, d)
		t.Cleanup(cancel)
		return ctx
	}
	minute := func(n int) []context.Context {
		ctxs := make([]context.Context, n)
		for i := range ctxs {
			ctxs[i] = within(time.Minute)
		}
		return ctxs
	}
	var reqs []fosite.Requester
	for i := range 3 {
		r := e.request(fmt.Sprintf("grant-%d", i))
		r.Session.(*openid.DefaultSession).Subject = fmt.Sprintf("user-%d", i)
		r.GrantedScope = fosite.Arguments{fmt.Sprintf("scope-%d", i)}
		reqs = append(reqs, r)
	}
	var errs []error
	if n := e.statements(func() {
		var err error
		errs, err = e.store.InsertBatchForTest(minute(3), []string{"sig-0", "sig-1", "sig-2"}, reqs)
		e.must(err)
	}); n != 3 {
		t.Errorf("a batch of three: %d statements, want 3 (BEGIN with its bounds, the rows, COMMIT)", n)
	}
	for i, err := range errs {
		if err != nil {
			t.Errorf("row %d: %v", i, err)
		}
	}
	check := func(sig string, i int) {
		t.Helper()
		r, err := e.store.GetAccessTokenSession(e.ctx, sig, openid.NewDefaultSession())
		if err != nil {
			t.Errorf("%s: %v", sig, err)
			return
		}
		if r.GetID() != fmt.Sprintf("grant-%d", i) || r.GetSession().GetSubject() != fmt.Sprintf("user-%d", i) ||
			len(r.GetGrantedScopes()) != 1 || r.GetGrantedScopes()[0] != fmt.Sprintf("scope-%d", i) {
			t.Errorf("%s: grant %q, subject %q, scopes %v; want row %d's", sig, r.GetID(), r.GetSession().GetSubject(), r.GetGrantedScopes(), i)
		}
	}
	for i := range 3 {
		check(fmt.Sprintf("sig-%d", i), i)
	}
	absent := func(sig string) {
		t.Helper()
		if n := e.count(`access_tokens WHERE signature = $1`, sig); n != 0 {
			t.Errorf("%s: refused, yet written", sig)
		}
	}

	ghost := e.request("grant-ghost")
	ghost.Client = &storage.Client{ID: "deleted-meanwhile"}
	errs, err := e.store.InsertBatchForTest(minute(4), []string{"sig-3", "sig-ghost", "sig-4", "sig-0"},
		[]fosite.Requester{reqs[0], ghost, reqs[1], reqs[2]})
	e.must(err)
	if errs[0] != nil || errs[2] != nil {
		t.Errorf("good rows beside refused ones: %v, %v", errs[0], errs[2])
	}
	if errs[1] == nil || storage.Unavailable(errs[1]) {
		t.Errorf("a row whose client is gone: %v, want its own refusal", errs[1])
	}
	if errs[3] == nil || storage.Unavailable(errs[3]) {
		t.Errorf("a row whose signature is taken: %v, want its own refusal", errs[3])
	}
	check("sig-3", 0)
	check("sig-4", 1)
	check("sig-0", 0) // the first row under that signature is untouched
	absent("sig-ghost")

	// Gone, or due too soon to commit in time: refused, not written.
	gone, cancel := context.WithCancel(e.ctx)
	cancel()
	errs, err = e.store.InsertBatchForTest([]context.Context{within(time.Minute), gone, within(time.Millisecond)},
		[]string{"sig-5", "sig-gone", "sig-late"}, reqs)
	e.must(err)
	if errs[0] != nil {
		t.Errorf("a live row beside refused ones: %v", errs[0])
	}
	for i, sig := range []string{"sig-gone", "sig-late"} {
		if !storage.Unavailable(errs[i+1]) {
			t.Errorf("%s: %v, want unavailable", sig, errs[i+1])
		}
		absent(sig)
	}
	check("sig-5", 0)
}

// waitInserts polls until ok holds of the grants waiting and the insert
// batches running.
func waitInserts(t *testing.T, e *unitEnv, what string, ok func(pending, running int) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if p, r := e.store.InsertsForTest(); ok(p, r) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestInsertBatchAnsweredNothingDone: a request told that its token was
// not issued (its deadline passed while its batch waited for the table,
// locked by an index being built) has no row written, even when the lock
// goes before the deadlines of the others in its batch: the batch is
// cancelled at the earliest deadline.
func TestInsertBatchAnsweredNothingDone(t *testing.T) {
	t.Parallel()
	e := newUnitEnv(t)
	e.store.SetInsertStuckForTest(time.Hour)
	lock, err := e.pool.Begin(e.ctx)
	e.must(err)
	defer lock.Rollback(e.ctx)
	// As a migration's CREATE INDEX does: inserts wait for the table
	// before the statement starts running.
	_, err = lock.Exec(e.ctx, `CREATE INDEX held_up ON access_tokens (request_id)`)
	e.must(err)

	grant := func(sig string, timeout time.Duration) chan error {
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(e.ctx, timeout)
			defer cancel()
			done <- e.store.CreateAccessTokenSession(ctx, sig, e.request("grant-"+sig))
		}()
		return done
	}
	// A first grant runs alone and waits on the lock until its deadline;
	// two more wait for it, and then go together, and wait on the lock.
	first := grant("sig-first", 500*time.Millisecond)
	waitInserts(t, e, "the first batch running", func(p, r int) bool { return r == 1 && p == 0 })
	near := grant("sig-near", 1500*time.Millisecond)
	far := grant("sig-far", time.Minute)
	waitInserts(t, e, "two grants waiting", func(p, r int) bool { return p == 2 })
	for name, ch := range map[string]chan error{"first": first, "near": near} {
		if err := <-ch; !storage.Unavailable(err) {
			t.Errorf("%s, past its deadline: %v, want unavailable", name, err)
		}
	}
	e.must(lock.Rollback(e.ctx)) // before far's deadline
	farErr := <-far
	waitInserts(t, e, "no batch running", func(p, r int) bool { return r == 0 })
	for sig, answered := range map[string]error{"sig-near": errors.New("refused"), "sig-far": farErr} {
		n := e.count(`access_tokens WHERE signature = $1`, sig)
		if answered != nil && n != 0 {
			t.Errorf("%s: answered %v, yet its row was written", sig, answered)
		}
		if answered == nil && n != 1 {
			t.Errorf("%s: answered success, yet no row", sig)
		}
	}
}

// TestInsertBatchRetriesAlone: when the database refuses a batch for one
// row (its client is gone), each request inserts its own row alone, and
// is answered as soon as that is done: not held up by another's retry
// that waits on a lock (here a client being deleted).
func TestInsertBatchRetriesAlone(t *testing.T) {
	t.Parallel()
	e := newUnitEnv(t)
	e.store.SetInsertStuckForTest(time.Hour)
	group := func(prefix string) *storage.Client {
		for i := 0; ; i++ {
			if id := fmt.Sprintf("%s-%d", prefix, i); storage.SameInsertGroupForTest(id, e.client.ID) {
				c := *e.client
				c.ID = id
				return &c
			}
		}
	}
	leaving, ghost := group("leaving"), group("ghost")
	e.must(e.store.CreateClient(e.ctx, leaving))
	del, err := e.pool.Begin(e.ctx)
	e.must(err)
	defer del.Rollback(e.ctx)
	_, err = del.Exec(e.ctx, `DELETE FROM clients WHERE id = $1`, leaving.ID)
	e.must(err)

	grant := func(sig string, client *storage.Client, timeout time.Duration) chan error {
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(e.ctx, timeout)
			defer cancel()
			r := e.request("grant-" + sig)
			r.Client = client
			done <- e.store.CreateAccessTokenSession(ctx, sig, r)
		}()
		return done
	}
	waitPending := func(n int) {
		t.Helper()
		waitInserts(t, e, fmt.Sprintf("%d grants waiting behind one batch", n), func(p, r int) bool { return p == n && r == 1 })
	}
	// The first grant waits on the deleted client's row until its
	// deadline; three more queue behind it, in order, and then go
	// together: the ghost's row fails the statement at once.
	first := grant("sig-first", leaving, 500*time.Millisecond)
	waitPending(0)
	ghostDone := grant("sig-ghost", ghost, time.Minute)
	waitPending(1)
	leavingDone := grant("sig-leaving", leaving, time.Minute)
	waitPending(2)
	goodDone := grant("sig-good", e.client, time.Minute)
	waitPending(3)
	if err := <-first; !storage.Unavailable(err) {
		t.Errorf("the first grant, past its deadline: %v", err)
	}
	select {
	case err := <-goodDone:
		if err != nil {
			t.Errorf("a grant of a healthy client: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a grant of a healthy client was held up by another's retry")
	}
	if err := <-ghostDone; err == nil || storage.Unavailable(err) {
		t.Errorf("a grant of a client that does not exist: %v, want its own refusal", err)
	}
	e.must(del.Rollback(e.ctx)) // the client stays after all
	if err := <-leavingDone; err != nil {
		t.Errorf("the grant that waited on the client's row: %v", err)
	}
	if n := e.count(`access_tokens WHERE signature IN ('sig-good', 'sig-leaving')`); n != 2 {
		t.Errorf("%d of the two granted rows written", n)
	}
}
