package authz_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/storage"
	"github.com/authz/authz/storage/pgtest"
)

// Concurrent use of single-use credentials over HTTP. Requests are raced by
// goroutines released together by one channel; where the interleaving
// matters, the test holds a row lock in PostgreSQL and lets go only once
// every request waits on it, so the outcome never depends on timing. No
// sleeps anywhere.

const racers = 10

// outcome is one raced request's answer.
type outcome struct {
	status int
	error  string // the OAuth error code, if any
	body   []byte
	err    error
}

func (o outcome) String() string {
	if o.err != nil {
		return "transport error: " + o.err.Error()
	}
	return fmt.Sprintf("%d %s", o.status, o.body)
}

// fire sends form to endpoint and delivers the outcome on the channel. It
// may run on any goroutine: it never calls t.Fatal.
func fire(client *http.Client, endpoint string, form url.Values, id, secret string, start <-chan struct{}) <-chan outcome {
	done := make(chan outcome, 1)
	go func() {
		var o outcome
		defer func() { done <- o }()
		req, err := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
		if err != nil {
			o.err = err
			return
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if id != "" {
			req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
		}
		if start != nil {
			<-start
		}
		resp, err := client.Do(req)
		if err != nil {
			o.err = err
			return
		}
		defer resp.Body.Close()
		o.status = resp.StatusCode
		if o.body, o.err = io.ReadAll(resp.Body); o.err != nil {
			return
		}
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(o.body, &e) == nil {
			o.error = e.Error
		}
	}()
	return done
}

// race sends n copies of a form to endpoint at once: every goroutine has its
// request built and waits on one channel, closed when all are ready.
func race(n int, endpoint string, form url.Values, id, secret string) []outcome {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	defer client.CloseIdleConnections()
	start := make(chan struct{})
	dones := make([]<-chan outcome, n)
	for i := range dones {
		dones[i] = fire(client, endpoint, form, id, secret, start)
	}
	close(start)
	out := make([]outcome, n)
	for i, d := range dones {
		out[i] = <-d
	}
	return out
}

// winner checks that exactly one outcome is a 200 and returns its tokens,
// with a count of the other outcomes by "status error".
func winner(t *testing.T, outs []outcome) (tokenResponse, map[string]int) {
	t.Helper()
	var win []tokenResponse
	losers := map[string]int{}
	for _, o := range outs {
		if o.err != nil {
			t.Fatalf("request failed: %v", o.err)
		}
		if o.status == http.StatusOK {
			var tr tokenResponse
			if err := json.Unmarshal(o.body, &tr); err != nil || tr.AccessToken == "" {
				t.Fatalf("200 without tokens: %s", o)
			}
			win = append(win, tr)
			continue
		}
		losers[fmt.Sprintf("%d %s", o.status, o.error)]++
	}
	if len(win) != 1 {
		t.Fatalf("%d of %d concurrent requests succeeded, want exactly 1:\n%s", len(win), len(outs), outcomes(outs))
	}
	return win[0], losers
}

func outcomes(outs []outcome) string {
	lines := make([]string, len(outs))
	for i, o := range outs {
		lines[i] = o.String()
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// newRaceEnv is newEnv on a pool with room for every raced request (the
// default pool has max(4, CPUs) connections), so that requests meet in
// PostgreSQL, where the test can order them, and not in the pool's queue.
func newRaceEnv(t *testing.T) *env {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 2*racers + 4
	pool, err := pgxpool.NewWithConfig(context.Background(), storage.PoolConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return newEnvOnPool(t, pool)
}

// rowLock holds FOR UPDATE on the row of table whose signature is that of
// token. It and its monitor use connections of their own, not the server's
// pool.
type rowLock struct {
	tx      pgx.Tx
	monitor *pgx.Conn
}

func lockRow(t *testing.T, e *env, table, token string) *rowLock {
	t.Helper()
	ctx := context.Background()
	connect := func() *pgx.Conn {
		conn, err := pgx.ConnectConfig(ctx, e.pool.Config().ConnConfig.Copy())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
		return conn
	}
	tx, err := connect().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, sig, _ := strings.Cut(token, ".")
	tag, err := tx.Exec(ctx, `SELECT 1 FROM `+table+` WHERE signature = $1 FOR UPDATE`, sig)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("lock %s row: %v (%d rows)", table, err, tag.RowsAffected())
	}
	return &rowLock{tx: tx, monitor: connect()}
}

func (l *rowLock) release(t *testing.T) {
	t.Helper()
	if err := l.tx.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// waitForWaiters polls PostgreSQL until n backends of the database wait on
// a lock. It polls without sleeping, bounded by a deadline.
func (l *rowLock) waitForWaiters(t *testing.T, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		var waiting int
		err := l.monitor.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		if err != nil {
			t.Fatalf("waiting for %d requests to queue on a row lock: %v", n, err)
		}
		if waiting >= n {
			return
		}
	}
}

// raceBehindLock races n copies of form while the test holds a lock on the
// row of token in table, and lets go once all n wait (on that lock, or
// queued behind the first of them on another row).
func raceBehindLock(t *testing.T, e *env, table, token string, n int, form url.Values, id, secret string) []outcome {
	t.Helper()
	lock := lockRow(t, e, table, token)
	done := make(chan []outcome, 1)
	go func() { done <- race(n, e.url("/oauth2/token"), form, id, secret) }()
	lock.waitForWaiters(t, n)
	lock.release(t)
	return <-done
}

// TestConcurrentCodeExchange: of ten simultaneous exchanges of one code
// exactly one gets tokens and the other nine get invalid_grant. Each loser
// is a second use of the code, so it revokes what the winner was issued
// (RFC 6749 4.1.2, DESIGN "Authorization codes"): once all have answered,
// the winner's tokens are inactive. Without PKCE a loser either reads the
// code after the winner committed (fosite's reuse branch) or blocks on the
// winner's row lock in InvalidateAuthorizeCodeSession and finds the code
// spent (authz's token.go); both revoke by request id after the winner's
// commit, so even the free race is deterministic.
func TestConcurrentCodeExchange(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		public bool
		pkce   bool
		// lock: the table whose row of the code the test holds until all
		// requests wait; "" for a free race.
		lock string
	}{
		{"confidential/free race", false, false, ""},
		{"confidential/all read before the winner commits", false, false, "authorization_codes"},
		{"confidential with PKCE/all read before the winner commits", false, true, "pkce_requests"},
		{"public with PKCE/all read before the winner commits", true, true, "pkce_requests"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newRaceEnv(t)
			c := e.confidential(t, "client_secret_basic")
			if tc.public {
				c = e.createClient(t, authzPublicClient())
			}
			rs := e.resourceServer(t)
			e.createUser(t, "alice")
			verifier, challenge := pkcePair()
			p := codeParams(c, "openid contacts")
			form := url.Values{}
			if tc.pkce {
				p["code_challenge"], p["code_challenge_method"] = challenge, "S256"
				form.Set("code_verifier", verifier)
			}
			code := newCode(t, e, newBrowser(t), p, "alice")
			for k, v := range exchangeForm(code, c.RedirectURIs[0]) {
				form[k] = v
			}
			form, id, secret := withCreds(c, form)

			var outs []outcome
			if tc.lock == "" {
				outs = race(racers, e.url("/oauth2/token"), form, id, secret)
			} else {
				outs = raceBehindLock(t, e, tc.lock, code, racers, form, id, secret)
			}
			win, losers := winner(t, outs)
			if want := map[string]int{"400 invalid_grant": racers - 1}; fmt.Sprint(losers) != fmt.Sprint(want) {
				t.Errorf("losers %v, want %v:\n%s", losers, want, outcomes(outs))
			}
			wantActive(t, e, rs, win.AccessToken, false, "the winner's access token after concurrent reuse")
			if c.TokenEndpointAuthMethod != "none" { // a public client cannot introspect
				wantActive(t, e, c, win.RefreshToken, false, "the winner's refresh token after concurrent reuse")
			}
		})
	}
}

// TestConcurrentRefresh: of ten simultaneous refreshes with one refresh
// token exactly one succeeds. A loser that was already being served while
// the winner's rotation was uncommitted is a concurrent request, not a
// replay: it must fail without revoking the family, so the winner's new
// refresh token keeps working (DESIGN: "Concurrent use is safe").
func TestConcurrentRefresh(t *testing.T) {
	t.Parallel()

	grant := func(t *testing.T, e *env) (authz.ClientMetadata, authz.ClientMetadata, tokenResponse) {
		c := e.confidential(t, "client_secret_basic")
		rs := e.resourceServer(t)
		e.createUser(t, "alice")
		code := newCode(t, e, newBrowser(t), codeParams(c, "openid contacts"), "alice")
		return c, rs, tokens(t, e.tokenAs(t, c, exchangeForm(code, appCallback)))
	}

	t.Run("all read before the winner commits", func(t *testing.T) {
		t.Parallel()
		// The test holds the token's row, so all ten read it as active and
		// then queue in RotateRefreshToken; one rotates, the others find it
		// rotated: invalid_grant, without revoking the family.
		e := newRaceEnv(t)
		c, rs, r1 := grant(t, e)
		form, id, secret := withCreds(c, refreshForm(r1.RefreshToken))
		outs := raceBehindLock(t, e, "refresh_tokens", r1.RefreshToken, racers, form, id, secret)
		win, losers := winner(t, outs)
		if want := map[string]int{"400 invalid_grant": racers - 1}; fmt.Sprint(losers) != fmt.Sprint(want) {
			t.Errorf("losers %v, want %v:\n%s", losers, want, outcomes(outs))
		}
		wantActive(t, e, rs, win.AccessToken, true, "the winner's access token")
		tokens(t, e.tokenAs(t, c, refreshForm(win.RefreshToken)))
	})

	t.Run("loser slowed down before it reads the token", func(t *testing.T) {
		t.Parallel()
		// A refresh that arrived, and began its transaction, before the
		// winner rotated the token, but that reads the token only after the
		// winner committed: in production it waited for a pool connection
		// (the default pool has max(4, CPUs)) or spent its time verifying
		// an Argon2id client secret. Here it waits for the clients table:
		//
		//   1. the test locks R1's row; the winner reads R1 and blocks on
		//      the lock in RotateRefreshToken (holding ACCESS SHARE on
		//      clients from authenticating the client);
		//   2. the test queues LOCK TABLE clients IN ACCESS EXCLUSIVE
		//      MODE behind the winner;
		//   3. the loser arrives, begins its transaction and blocks
		//      authenticating its client, behind the test's LOCK TABLE;
		//   4. the row lock goes: the winner rotates and commits; the
		//      LOCK TABLE is granted and rolled back; the loser reads R1.
		e := newRaceEnv(t)
		c, rs, r1 := grant(t, e)
		form, id, secret := withCreds(c, refreshForm(r1.RefreshToken))
		client := &http.Client{}
		defer client.CloseIdleConnections()
		ctx := context.Background()

		row := lockRow(t, e, "refresh_tokens", r1.RefreshToken)
		first := fire(client, e.url("/oauth2/token"), form, id, secret, nil)
		row.waitForWaiters(t, 1)

		conn, err := pgx.ConnectConfig(ctx, e.pool.Config().ConnConfig.Copy())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
		tableTx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		granted := make(chan error, 1)
		go func() {
			_, err := tableTx.Exec(ctx, `LOCK TABLE clients IN ACCESS EXCLUSIVE MODE`)
			granted <- err
		}()
		row.waitForWaiters(t, 2)
		second := fire(client, e.url("/oauth2/token"), form, id, secret, nil)
		row.waitForWaiters(t, 3)

		row.release(t)
		if err := <-granted; err != nil {
			t.Fatal(err)
		}
		if err := tableTx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		outs := []outcome{<-first, <-second}

		win, losers := winner(t, outs)
		if want := map[string]int{"400 invalid_grant": 1}; fmt.Sprint(losers) != fmt.Sprint(want) {
			t.Errorf("losers %v, want %v:\n%s", losers, want, outcomes(outs))
		}
		info := e.introspect(t, win.AccessToken, rs.ClientID, rs.ClientSecret)
		r := e.tokenAs(t, c, refreshForm(win.RefreshToken))
		if info["active"] != true || r.status != http.StatusOK {
			t.Fatalf("BUG: a refresh that began while another was in flight was treated as reuse and revoked the family: "+
				"winner's access token %v, winner's refresh token: %s", info, r)
		}
	})
}
