package authz_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authz/authz/authz"
)

// Work must not be committed for a request that answered 503, even when
// the request first waited for a pool connection. The pool's only connection is busy for 900 ms of a 1 s request
// deadline; the request's COMMIT then takes 300 ms on the server (a slow
// deferred trigger stands in for a busy or fsync-bound server after a
// thaw), and the postmaster is held so that pgx's cancel request cannot end
// it (as during a freeze). The client gets 503; the server commits.

// An exchange that answered 503 must not spend the code: the commit
// deadline is measured once the connection is taken (storage.begin), so a
// wait for the pool does not push it past the request's.
func TestExchangeAfterPoolWaitCommitsNothing(t *testing.T) {
	_, prep, c, code := commitAfterWait(t, "authorization_codes", func(e *env, c authz.ClientMetadata, code string) reply {
		return e.tokenAs(t, c, exchangeForm(code, appCallback))
	})
	if r := prep.tokenAs(t, c, exchangeForm(code, appCallback)); r.status != http.StatusOK {
		t.Fatalf("BUG: the exchange answered 503 but spent the code: exchanging it again gives %d %s", r.status, r.body)
	}
}

// A revocation that answered 503 must not revoke: the commit-deadline
// trigger (migrations/006) covers revocations too.
func TestRevocationAfterPoolWaitCommitsNothing(t *testing.T) {
	var refresh string
	_, prep, c, _ := commitAfterWait(t, "refresh_tokens", func(e *env, c authz.ClientMetadata, code string) reply {
		return post(t, e.url("/oauth2/revoke"), url.Values{"token": {refresh}}, c.ClientID, c.ClientSecret)
	}, func(prep *env, c authz.ClientMetadata, code string) {
		refresh = tokens(t, prep.tokenAs(t, c, exchangeForm(code, appCallback))).RefreshToken
	})
	wantActive(t, prep, c, refresh, true, "BUG: the refresh token whose revocation answered 503")
}

// commitAfterWait sends one request (do) through a server whose pool has
// one connection, busy for 900 ms, with a 300 ms COMMIT for any change to
// table, and checks it answered 503.
func commitAfterWait(t *testing.T, table string, do func(*env, authz.ClientMetadata, string) reply,
	setup ...func(*env, authz.ClientMetadata, string)) (*env, *env, authz.ClientMetadata, string) {
	cluster, prepPool := startFaultCluster(t)
	ctx := context.Background()
	prep := newEnvOnPool(t, prepPool)
	cfg := prepPool.Config().Copy()
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	e := newEnvOnPool(t, pool, func(c *authz.Config) { c.RequestTimeout = time.Second })
	t.Cleanup(func() { _ = cluster.ReleaseConnections() })

	c := prep.confidential(t, "client_secret_basic")
	prep.createUser(t, "alice")
	code := newCode(t, prep, newBrowser(t), codeParams(c, "openid"), "alice")
	for _, s := range setup {
		s(prep, c, code)
	}
	if _, err := prepPool.Exec(ctx, `CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS
		$$ BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END $$;
		CREATE CONSTRAINT TRIGGER zz_slow AFTER UPDATE ON `+table+`
		DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()`); err != nil {
		t.Fatal(err)
	}
	monitor, err := pgx.Connect(ctx, cluster.URL("authz"))
	if err != nil {
		t.Fatal(err)
	}
	defer monitor.Close(ctx)
	busy, err := pool.Acquire(ctx) // connected before the postmaster is held
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.HoldConnections(); err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(900 * time.Millisecond); busy.Release() }()
	first := do(e, c, code)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); { // until the COMMIT is over
		var n int
		err := monitor.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE query = 'commit' AND state = 'active'`).Scan(&n)
		if err != nil || n == 0 {
			break
		}
	}
	if err := cluster.ReleaseConnections(); err != nil {
		t.Fatal(err)
	}
	if first.status != http.StatusServiceUnavailable {
		t.Fatalf("first request: %v, want 503", first)
	}
	return e, prep, c, code
}
