package storage_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/authz/authz/storage"
	"github.com/authz/authz/storage/pgtest"
)

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *unitEnv) startCache(s *storage.Store) {
	e.t.Helper()
	// The database itself, past the pooler AUTHZ_TEST_POOLER may have put
	// in between: LISTEN needs a session of its own.
	cfg, err := pgx.ParseConfig(pgtest.DirectURL(e.pool.Config().ConnString()))
	e.must(err)
	e.t.Cleanup(s.StartClientCache(cfg, nil))
	waitFor(e.t, "the client cache to listen", s.ClientCacheOn)
}

func (e *unitEnv) clientName(s *storage.Store) string {
	e.t.Helper()
	c, err := s.GetClient(e.ctx, e.client.ID)
	e.must(err)
	return c.(*storage.Client).Name
}

// TestClientCacheServesFromMemory: with the cache on, a client read
// twice costs one statement; a change through the same store is seen at
// once.
func TestClientCacheServesFromMemory(t *testing.T) {
	t.Parallel()
	e := newUnitEnv(t)
	e.startCache(e.store)
	n := e.statements(func() {
		for range 3 {
			e.clientName(e.store)
		}
	})
	if n != 1 {
		t.Errorf("three lookups ran %d statements, want 1", n)
	}
	c, err := e.store.Client(e.ctx, e.client.ID)
	e.must(err)
	c.Name = "renamed"
	e.must(e.store.UpdateClient(e.ctx, c))
	if got := e.clientName(e.store); got != "renamed" {
		t.Errorf("after an update through the same store: name %q, want renamed", got)
	}
	// Inside a transaction too, as the admin API changes clients.
	e.must(e.store.InTx(e.ctx, func(ctx context.Context) error {
		c.Name = "in a transaction"
		return e.store.UpdateClient(ctx, c)
	}))
	if got := e.clientName(e.store); got != "in a transaction" {
		t.Errorf("after a committed transaction: name %q", got)
	}
	e.must(e.store.DeleteClient(e.ctx, e.client.ID))
	if _, err := e.store.GetClient(e.ctx, e.client.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a deleted client: %v, want not found", err)
	}
}

// TestClientCacheFollowsOtherReplicas: a change made by another server (a
// second store on the same database) reaches this one's cache through
// PostgreSQL's notification.
func TestClientCacheFollowsOtherReplicas(t *testing.T) {
	t.Parallel()
	e := newUnitEnv(t)
	e.startCache(e.store)
	other := storage.New(e.pool) // no cache: another replica, or the CLI
	if got := e.clientName(e.store); got != "" {
		t.Fatalf("name %q", got)
	}
	c, err := other.Client(e.ctx, e.client.ID)
	e.must(err)
	c.Name = "changed elsewhere"
	e.must(other.UpdateClient(e.ctx, c))
	// Once synced, the change is seen: notifications arrive in commit order.
	e.must(e.store.SyncClientCache(e.ctx))
	if got := e.clientName(e.store); got != "changed elsewhere" {
		t.Errorf("after SyncClientCache: name %q, want the change made elsewhere", got)
	}

	e.must(other.DeleteClient(e.ctx, e.client.ID))
	waitFor(t, "the deletion made elsewhere", func() bool {
		_, err := e.store.GetClient(e.ctx, e.client.ID)
		return errors.Is(err, storage.ErrNotFound)
	})
}

// TestClientCacheForgetsWhatItMissed: while the listening connection is
// down, notifications are lost; a change made then must not leave a stale
// client in the cache once it listens again.
func TestClientCacheForgetsWhatItMissed(t *testing.T) {
	t.Parallel()
	e := newUnitEnv(t)
	e.startCache(e.store)
	e.clientName(e.store) // cached
	listens := e.store.ClientCacheListens()
	// Cut the listening connection, as a network failure would.
	var pid int
	e.must(e.pool.QueryRow(e.ctx, `SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = $1`, storage.ListenerName).Scan(&pid))
	var killed bool
	e.must(e.pool.QueryRow(e.ctx, `SELECT pg_terminate_backend($1)`, pid).Scan(&killed))
	waitFor(t, "the listening connection to end", func() bool {
		var n int
		e.must(e.pool.QueryRow(e.ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&n))
		return killed && n == 0
	})
	other := storage.New(e.pool)
	c, err := other.Client(e.ctx, e.client.ID)
	e.must(err)
	c.Name = "changed while nobody listened"
	e.must(other.UpdateClient(e.ctx, c))
	waitFor(t, "the cache to listen again", func() bool {
		return e.store.ClientCacheListens() > listens && e.store.ClientCacheOn()
	})
	waitFor(t, "the change made while nobody listened", func() bool {
		return e.clientName(e.store) == "changed while nobody listened"
	})
}

// TestIntrospectionWithClientCache: with the cache on, a token is read
// without its client's columns and gets the client from memory: still one
// statement, and the whole client.
func TestIntrospectionWithClientCache(t *testing.T) {
	t.Parallel()
	e := newUnitEnv(t)
	e.startCache(e.store)
	e.clientName(e.store) // cached
	e.must(e.store.CreateAccessTokenSession(e.ctx, "access-1", e.request("grant-1")))
	var got fosite.Requester
	n := e.statements(func() {
		ctx := storage.WithReads(e.ctx)
		e.must(e.store.PrefetchToken(ctx, "access-1", "access-1"))
		var err error
		got, err = e.store.GetAccessTokenSession(ctx, "access-1", openid.NewDefaultSession())
		e.must(err)
	})
	if n != 1 {
		t.Errorf("%d statements, want 1", n)
	}
	if c, ok := got.GetClient().(*storage.Client); !ok || c.ID != e.client.ID || len(c.RedirectURIs) != 1 || c.TokenEndpointAuthMethod != "client_secret_basic" {
		t.Errorf("the token's client: %+v, want the whole of %s", got.GetClient(), e.client.ID)
	}
}

// TestClientCacheSnapshot: under REPEATABLE READ a transaction reads
// clients from a snapshot taken at its start. One changed elsewhere after
// that start must not be cached from the old snapshot, or the cache would
// keep the old client (a rotated-out secret, say) until the next change.
func TestClientCacheSnapshot(t *testing.T) {
	t.Parallel()
	e := newUnitEnv(t)
	e.startCache(e.store)
	ctx, err := e.store.BeginTX(e.ctx) // no deadline: a plain BEGIN
	e.must(err)
	var one int
	e.must(e.store.ExecForTest(ctx, `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`))
	e.must(e.store.QueryRowForTest(ctx, `SELECT 1`).Scan(&one)) // the snapshot
	other := storage.New(e.pool)
	c, err := other.Client(e.ctx, e.client.ID)
	e.must(err)
	c.Name = "changed elsewhere"
	e.must(other.UpdateClient(e.ctx, c))
	e.must(e.store.SyncClientCache(e.ctx))
	inTx, err := e.store.GetClient(ctx, e.client.ID)
	e.must(err)
	if got := inTx.(*storage.Client).Name; got != "" {
		t.Fatalf("inside the transaction: name %q, want the snapshot's (empty)", got)
	}
	e.must(e.store.Commit(ctx))
	if got := e.clientName(e.store); got != "changed elsewhere" {
		t.Errorf("after the transaction: name %q, want the change made elsewhere", got)
	}
}
