// Package storagetest is the conformance suite of the storage package: what
// fosite and the authz handlers rely on the PostgreSQL store to do. It is
// importable so every way of building a Store (a fresh test database today,
// another pool configuration tomorrow) is held to the same contract.
//
// Call Run from a test with a function that returns a Store on a fresh,
// migrated database whose clock is the now it is given:
//
//	storagetest.Run(t, func(t *testing.T, now func() time.Time) *storage.Store {
//		pool := ... // a pool on a database of its own, closed at t.Cleanup
//		return storage.New(pool, storage.WithClock(now))
//	})
//
// Every subtest calls it once, with a fake clock of its own that the suite
// moves to test expiry (no sleeping), and runs in parallel with the others.
// The database must be empty of clients, users and tokens; the suite counts
// rows through Store.Pool.
package storagetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	josev3 "github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"

	"github.com/authz/authz/storage"
)

// NewStore returns a Store on a fresh, migrated database that uses now as its
// clock (storage.WithClock). It is called once per subtest.
type NewStore func(t *testing.T, now func() time.Time) *storage.Store

// Run runs the conformance suite against the stores newStore returns.
func Run(t *testing.T, newStore NewStore) {
	// mk starts a subtest: it marks it parallel and gives it a store of its
	// own on a fake clock.
	mk := func(t *testing.T) *env {
		t.Helper()
		t.Parallel()
		c := &clock{now: epoch}
		return &env{t: t, ctx: t.Context(), store: newStore(t, c.Now), clock: c}
	}
	t.Run("Requests", func(t *testing.T) { testRequests(t, mk) })
	t.Run("AuthorizeCode", func(t *testing.T) { testAuthorizeCode(t, mk) })
	t.Run("RefreshToken", func(t *testing.T) { testRefreshToken(t, mk) })
	t.Run("Concurrency", func(t *testing.T) { testConcurrency(t, mk) })
	t.Run("Transactions", func(t *testing.T) { testTransactions(t, mk) })
	t.Run("Expiry", func(t *testing.T) { testExpiry(t, mk) })
	t.Run("Clients", func(t *testing.T) { testClients(t, mk) })
	t.Run("Users", func(t *testing.T) { testUsers(t, mk) })
	t.Run("LoginSessions", func(t *testing.T) { testLoginSessions(t, mk) })
	t.Run("Consents", func(t *testing.T) { testConsents(t, mk) })
	t.Run("UserRevocation", func(t *testing.T) { testUserRevocation(t, mk) })
	t.Run("Times", func(t *testing.T) { testTimes(t, mk) })
	t.Run("Secrets", testSecrets)
}

// epoch is where every subtest's clock starts: a fixed instant, so failures
// reproduce. It is a whole second; the store's microseconds are tested with
// the requests' times instead.
var epoch = time.Date(2031, time.March, 4, 5, 6, 7, 0, time.UTC)

// elsewhere is a location other than UTC for times handed to the store.
var elsewhere = time.FixedZone("UTC+05:30", 5*3600+30*60)

// clock is a fake clock, safe for concurrent use.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// env is one subtest's store, clock and context.
type env struct {
	t     *testing.T
	ctx   context.Context
	store *storage.Store
	clock *clock
}

// must fails the test now if err is not nil.
func (e *env) must(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

// wantErr reports an error unless errors.Is(err, target).
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: err = %v, want %v", what, err, target)
	}
}

// count returns the result of SELECT count(*) FROM <from>.
func (e *env) count(from string, args ...any) int {
	e.t.Helper()
	var n int
	e.must(e.store.Pool().QueryRow(e.ctx, `SELECT count(*) FROM `+from, args...).Scan(&n))
	return n
}

// newClient registers a confidential client with id.
func (e *env) newClient(id string) *storage.Client {
	e.t.Helper()
	c := &storage.Client{
		ID:                      id,
		SecretHash:              storage.HashGeneratedSecret("secret of " + id),
		Name:                    "Client " + id,
		RedirectURIs:            []string{"https://" + id + ".example.com/callback", "http://127.0.0.1:8080/cb"},
		GrantTypes:              []string{"authorization_code", "refresh_token"},
		ResponseTypes:           []string{"code"},
		Scopes:                  []string{"openid", "profile", "offline_access"},
		Audience:                []string{"https://api.example.com"},
		TokenEndpointAuthMethod: "client_secret_basic",
	}
	e.must(e.store.CreateClient(e.ctx, c))
	return c
}

// newUser creates a user with password "password of <username>".
func (e *env) newUser(username string) *storage.User {
	e.t.Helper()
	u := &storage.User{Username: username, Email: username + "@example.com", Name: "User " + username}
	e.must(e.store.CreateUser(e.ctx, u, "password of "+username))
	return u
}

// request returns a fully populated request, as fosite would hand it to the
// store, issued by client for subject. Its times have nanoseconds and a
// location other than UTC, to show what the store keeps of them.
func (e *env) request(id string, client *storage.Client, subject string) *fosite.Request {
	now := e.clock.Now()
	return &fosite.Request{
		ID:                id,
		RequestedAt:       now.Add(-time.Second + 123456789*time.Nanosecond).In(elsewhere),
		Client:            client,
		RequestedScope:    fosite.Arguments{"openid", "profile", "offline_access"},
		GrantedScope:      fosite.Arguments{"openid", "offline_access"},
		RequestedAudience: fosite.Arguments{"https://api.example.com", "https://other.example.com"},
		GrantedAudience:   fosite.Arguments{"https://api.example.com"},
		Form: url.Values{
			"redirect_uri":          {client.RedirectURIs[0]},
			"state":                 {"xyz+/=%20state"},
			"code_challenge":        {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"},
			"code_challenge_method": {"S256"},
			"scope":                 {"openid profile offline_access"},
		},
		Session: &openid.DefaultSession{
			Subject:  subject,
			Username: "name of " + subject,
			Claims: &jwt.IDTokenClaims{
				Subject:  subject,
				Nonce:    "n-0S6_WzA2Mj",
				AuthTime: now.Add(-time.Minute).In(elsewhere),
				Extra:    map[string]any{"email": subject + "@example.com"},
			},
			Headers: &jwt.Headers{Extra: map[string]any{"kid": "key-1"}},
			ExpiresAt: map[fosite.TokenType]time.Time{
				fosite.AuthorizeCode: now.Add(10 * time.Minute),
				fosite.AccessToken:   now.Add(time.Hour).In(elsewhere),
				fosite.RefreshToken:  now.Add(30 * 24 * time.Hour),
			},
		},
	}
}

// checkRequest compares a request read back from the store with the one
// stored, field by field.
func checkRequest(t *testing.T, got fosite.Requester, want *fosite.Request) {
	t.Helper()
	if got == nil {
		t.Fatal("request is nil")
	}
	if got.GetID() != want.ID {
		t.Errorf("ID = %q, want %q", got.GetID(), want.ID)
	}
	// PostgreSQL keeps microseconds; the store returns UTC.
	if at, wantAt := got.GetRequestedAt(), want.RequestedAt.Truncate(time.Microsecond); !at.Equal(wantAt) || at.Location() != time.UTC {
		t.Errorf("RequestedAt = %v (%v), want %v in UTC", at, at.Location(), wantAt.UTC())
	}
	if c := got.GetClient(); c == nil {
		t.Error("Client is nil")
	} else {
		wc := want.Client.(*storage.Client)
		if c.GetID() != wc.ID || !slices.Equal(c.GetRedirectURIs(), wc.RedirectURIs) ||
			!slices.Equal(c.GetScopes(), wc.Scopes) || !slices.Equal(c.GetGrantTypes(), wc.GrantTypes) ||
			string(c.GetHashedSecret()) != wc.SecretHash || c.IsPublic() != wc.Public {
			t.Errorf("Client = %+v, want %+v", c, wc)
		}
	}
	for _, f := range []struct {
		name      string
		got, want fosite.Arguments
	}{
		{"RequestedScope", got.GetRequestedScopes(), want.RequestedScope},
		{"GrantedScope", got.GetGrantedScopes(), want.GrantedScope},
		{"RequestedAudience", got.GetRequestedAudience(), want.RequestedAudience},
		{"GrantedAudience", got.GetGrantedAudience(), want.GrantedAudience},
	} {
		if !slices.Equal(f.got, f.want) {
			t.Errorf("%s = %q, want %q", f.name, f.got, f.want)
		}
	}
	if !reflect.DeepEqual(got.GetRequestForm(), want.Form) {
		t.Errorf("Form = %v, want %v", got.GetRequestForm(), want.Form)
	}
	checkSession(t, got.GetSession(), want.Session.(*openid.DefaultSession))
}

func checkSession(t *testing.T, got fosite.Session, want *openid.DefaultSession) {
	t.Helper()
	s, ok := got.(*openid.DefaultSession)
	if !ok || s == nil {
		t.Fatalf("Session = %#v, want a *openid.DefaultSession", got)
	}
	if s == want {
		t.Fatal("Session is the very value stored: the store must hydrate a fresh one")
	}
	if s.Subject != want.Subject || s.Username != want.Username {
		t.Errorf("Session subject, username = %q, %q; want %q, %q", s.Subject, s.Username, want.Subject, want.Username)
	}
	for _, tt := range []fosite.TokenType{fosite.AuthorizeCode, fosite.AccessToken, fosite.RefreshToken} {
		if g, w := s.GetExpiresAt(tt), want.ExpiresAt[tt]; !g.Equal(w) {
			t.Errorf("Session ExpiresAt[%s] = %v, want %v", tt, g, w)
		}
	}
	if s.Claims == nil {
		t.Fatal("Session.Claims is nil")
	}
	if s.Claims.Subject != want.Claims.Subject || s.Claims.Nonce != want.Claims.Nonce ||
		!s.Claims.AuthTime.Equal(want.Claims.AuthTime) || !reflect.DeepEqual(s.Claims.Extra, want.Claims.Extra) {
		t.Errorf("Session.Claims = %+v, want %+v", s.Claims, want.Claims)
	}
	if s.Headers == nil || !reflect.DeepEqual(s.Headers.Extra, want.Headers.Extra) {
		t.Errorf("Session.Headers = %+v, want %+v", s.Headers, want.Headers)
	}
}

// kind is one of the tables of fosite requests keyed by signature.
type kind struct {
	name   string
	table  string
	expiry fosite.TokenType // the session expiry that bounds the row
	create func(s *storage.Store, ctx context.Context, sig string, r fosite.Requester) error
	get    func(s *storage.Store, ctx context.Context, sig string, sess fosite.Session) (fosite.Requester, error)
	delete func(s *storage.Store, ctx context.Context, sig string) error // nil: codes are invalidated, not deleted
}

var kinds = []kind{
	{
		name: "code", table: "authorization_codes", expiry: fosite.AuthorizeCode,
		create: (*storage.Store).CreateAuthorizeCodeSession,
		get:    (*storage.Store).GetAuthorizeCodeSession,
	},
	{
		name: "access", table: "access_tokens", expiry: fosite.AccessToken,
		create: (*storage.Store).CreateAccessTokenSession,
		get:    (*storage.Store).GetAccessTokenSession,
		delete: (*storage.Store).DeleteAccessTokenSession,
	},
	{
		name: "refresh", table: "refresh_tokens", expiry: fosite.RefreshToken,
		create: func(s *storage.Store, ctx context.Context, sig string, r fosite.Requester) error {
			return s.CreateRefreshTokenSession(ctx, sig, "access-of-"+sig, r)
		},
		get:    (*storage.Store).GetRefreshTokenSession,
		delete: (*storage.Store).DeleteRefreshTokenSession,
	},
	{
		name: "pkce", table: "pkce_requests", expiry: fosite.AuthorizeCode,
		create: (*storage.Store).CreatePKCERequestSession,
		get:    (*storage.Store).GetPKCERequestSession,
		delete: (*storage.Store).DeletePKCERequestSession,
	},
	{
		name: "oidc", table: "oidc_sessions", expiry: fosite.AuthorizeCode,
		create: (*storage.Store).CreateOpenIDConnectSession,
		get: func(s *storage.Store, ctx context.Context, code string, sess fosite.Session) (fosite.Requester, error) {
			return s.GetOpenIDConnectSession(ctx, code, &fosite.Request{Session: sess})
		},
		delete: (*storage.Store).DeleteOpenIDConnectSession,
	},
}

func testRequests(t *testing.T, mk func(*testing.T) *env) {
	for _, k := range kinds {
		t.Run("RoundTrip/"+k.name, func(t *testing.T) {
			e := mk(t)
			want := e.request("request-1", e.newClient("rp"), "user-1")
			e.must(k.create(e.store, e.ctx, "sig-1", want))

			fresh := &openid.DefaultSession{}
			got, err := k.get(e.store, e.ctx, "sig-1", fresh)
			e.must(err)
			checkRequest(t, got, want)
			if fresh.Subject != "user-1" || fresh.Claims == nil || fresh.Claims.Nonce != "n-0S6_WzA2Mj" {
				t.Errorf("the session passed in was not hydrated: %+v", fresh)
			}

			// The row's expiry, which the janitor goes by, is the session's
			// expiry for this kind of token.
			var exp *time.Time
			e.must(e.store.Pool().QueryRow(e.ctx, `SELECT expires_at FROM `+k.table+` WHERE request_id = $1`, want.ID).Scan(&exp))
			if wantExp := want.Session.GetExpiresAt(k.expiry).Truncate(time.Microsecond); exp == nil || !exp.Equal(wantExp) {
				t.Errorf("expires_at = %v, want %v (the %s expiry)", exp, wantExp, k.expiry)
			}
		})

		t.Run("NotFound/"+k.name, func(t *testing.T) {
			e := mk(t)
			e.must(k.create(e.store, e.ctx, "sig-1", e.request("request-1", e.newClient("rp"), "user-1")))
			got, err := k.get(e.store, e.ctx, "unknown", &openid.DefaultSession{})
			wantErr(t, "get unknown", err, fosite.ErrNotFound)
			if got != nil {
				t.Errorf("get unknown returned request %+v", got)
			}
			if k.delete != nil {
				wantErr(t, "delete unknown", k.delete(e.store, e.ctx, "unknown"), fosite.ErrNotFound)
			}
		})

		// fosite's revocation handler reads tokens without a session.
		t.Run("NilSession/"+k.name, func(t *testing.T) {
			e := mk(t)
			client := e.newClient("rp")
			e.must(k.create(e.store, e.ctx, "sig-1", e.request("request-1", client, "user-1")))
			got, err := k.get(e.store, e.ctx, "sig-1", nil)
			e.must(err)
			if got == nil || got.GetID() != "request-1" || got.GetClient() == nil || got.GetClient().GetID() != client.ID {
				t.Errorf("get without a session = %+v, want request-1 of client %s", got, client.ID)
			}
		})

		if k.delete == nil {
			continue
		}
		t.Run("Delete/"+k.name, func(t *testing.T) {
			e := mk(t)
			client := e.newClient("rp")
			e.must(k.create(e.store, e.ctx, "sig-1", e.request("request-1", client, "user-1")))
			e.must(k.create(e.store, e.ctx, "sig-2", e.request("request-1", client, "user-1")))
			e.must(k.delete(e.store, e.ctx, "sig-1"))
			_, err := k.get(e.store, e.ctx, "sig-1", &openid.DefaultSession{})
			wantErr(t, "get deleted", err, fosite.ErrNotFound)
			wantErr(t, "delete again", k.delete(e.store, e.ctx, "sig-1"), fosite.ErrNotFound)
			if _, err := k.get(e.store, e.ctx, "sig-2", &openid.DefaultSession{}); err != nil {
				t.Errorf("the other row of the same request: %v", err)
			}
		})
	}

	t.Run("DuplicateSignature", func(t *testing.T) {
		e := mk(t)
		client := e.newClient("rp")
		e.must(e.store.CreateAccessTokenSession(e.ctx, "sig-1", e.request("request-1", client, "user-1")))
		err := e.store.CreateAccessTokenSession(e.ctx, "sig-1", e.request("request-2", client, "user-2"))
		wantErr(t, "create with a signature in use", err, storage.ErrAlreadyExists)
	})

	// The OpenID Connect session is keyed by the authorization code itself;
	// the table must not hold it.
	t.Run("OIDCCodeNotStored", func(t *testing.T) {
		e := mk(t)
		const code = "ory_ac_Xx2g9nq4bL.t5u8sTkWv0"
		e.must(e.store.CreateOpenIDConnectSession(e.ctx, code, e.request("request-1", e.newClient("rp"), "user-1")))
		if n := e.count(`oidc_sessions WHERE strpos(signature, $1) > 0`, code); n != 0 {
			t.Errorf("%d oidc_sessions rows hold the code itself", n)
		}
		if n := e.count(`oidc_sessions`); n != 1 {
			t.Errorf("oidc_sessions has %d rows, want 1", n)
		}
	})

	t.Run("UnknownClientNotFound", func(t *testing.T) {
		e := mk(t)
		c, err := e.store.GetClient(e.ctx, "nobody")
		wantErr(t, "GetClient", err, fosite.ErrNotFound)
		if c != nil {
			t.Errorf("GetClient returned %#v", c)
		}
	})
}

func testAuthorizeCode(t *testing.T, mk func(*testing.T) *env) {
	t.Run("Lifecycle", func(t *testing.T) {
		e := mk(t)
		want := e.request("request-1", e.newClient("rp"), "user-1")
		e.must(e.store.CreateAuthorizeCodeSession(e.ctx, "code-1", want))
		got, err := e.store.GetAuthorizeCodeSession(e.ctx, "code-1", &openid.DefaultSession{})
		e.must(err)
		checkRequest(t, got, want)

		e.must(e.store.InvalidateAuthorizeCodeSession(e.ctx, "code-1"))
		got, err = e.store.GetAuthorizeCodeSession(e.ctx, "code-1", &openid.DefaultSession{})
		wantErr(t, "get used code", err, fosite.ErrInvalidatedAuthorizeCode)
		// fosite revokes what the first use issued by this request's ID.
		checkRequest(t, got, want)

		wantErr(t, "invalidate twice", e.store.InvalidateAuthorizeCodeSession(e.ctx, "code-1"), fosite.ErrInvalidatedAuthorizeCode)
	})

	t.Run("InvalidateOnlyThatCode", func(t *testing.T) {
		e := mk(t)
		client := e.newClient("rp")
		e.must(e.store.CreateAuthorizeCodeSession(e.ctx, "code-1", e.request("request-1", client, "user-1")))
		e.must(e.store.CreateAuthorizeCodeSession(e.ctx, "code-2", e.request("request-2", client, "user-1")))
		e.must(e.store.InvalidateAuthorizeCodeSession(e.ctx, "code-1"))
		if _, err := e.store.GetAuthorizeCodeSession(e.ctx, "code-2", &openid.DefaultSession{}); err != nil {
			t.Errorf("other code: %v", err)
		}
	})
}

func testRefreshToken(t *testing.T, mk func(*testing.T) *env) {
	t.Run("Rotate", func(t *testing.T) {
		e := mk(t)
		client := e.newClient("rp")
		x, y := e.request("request-x", client, "user-1"), e.request("request-y", client, "user-1")
		e.must(e.store.CreateAccessTokenSession(e.ctx, "a1", x))
		e.must(e.store.CreateRefreshTokenSession(e.ctx, "r1", "a1", x))
		e.must(e.store.CreateAccessTokenSession(e.ctx, "a-y", y))
		e.must(e.store.CreateRefreshTokenSession(e.ctx, "r-y", "a-y", y))

		e.must(e.store.RotateRefreshToken(e.ctx, x.ID, "r1"))

		got, err := e.store.GetRefreshTokenSession(e.ctx, "r1", &openid.DefaultSession{})
		wantErr(t, "get rotated refresh token", err, fosite.ErrInactiveToken)
		checkRequest(t, got, x) // reuse detection revokes the family by its ID
		_, err = e.store.GetAccessTokenSession(e.ctx, "a1", &openid.DefaultSession{})
		wantErr(t, "get access token of the rotated grant", err, fosite.ErrNotFound)

		wantErr(t, "rotate again", e.store.RotateRefreshToken(e.ctx, x.ID, "r1"), fosite.ErrSerializationFailure)

		// Another grant is untouched.
		if _, err := e.store.GetRefreshTokenSession(e.ctx, "r-y", &openid.DefaultSession{}); err != nil {
			t.Errorf("refresh token of another request: %v", err)
		}
		if _, err := e.store.GetAccessTokenSession(e.ctx, "a-y", &openid.DefaultSession{}); err != nil {
			t.Errorf("access token of another request: %v", err)
		}
	})

	t.Run("RotateUnknown", func(t *testing.T) {
		e := mk(t)
		err := e.store.RotateRefreshToken(e.ctx, "request-x", "unknown")
		if err == nil {
			t.Error("rotating an unknown refresh token succeeded")
		}
	})

	// Revocation by request ID reaches every token of that grant and no other.
	t.Run("RevokeByRequestID", func(t *testing.T) {
		e := mk(t)
		client := e.newClient("rp")
		x, y := e.request("request-x", client, "user-1"), e.request("request-y", client, "user-1")
		for _, sig := range []string{"1", "2"} {
			e.must(e.store.CreateAccessTokenSession(e.ctx, "a-x"+sig, x))
			e.must(e.store.CreateRefreshTokenSession(e.ctx, "r-x"+sig, "a-x"+sig, x))
		}
		e.must(e.store.CreateAccessTokenSession(e.ctx, "a-y", y))
		e.must(e.store.CreateRefreshTokenSession(e.ctx, "r-y", "a-y", y))

		e.must(e.store.RevokeRefreshToken(e.ctx, x.ID))
		for _, sig := range []string{"r-x1", "r-x2"} {
			got, err := e.store.GetRefreshTokenSession(e.ctx, sig, &openid.DefaultSession{})
			wantErr(t, "get revoked "+sig, err, fosite.ErrInactiveToken)
			if got == nil || got.GetID() != x.ID {
				t.Errorf("get revoked %s: request = %v, want ID %q", sig, got, x.ID)
			}
		}
		e.must(e.store.RevokeAccessToken(e.ctx, x.ID))
		for _, sig := range []string{"a-x1", "a-x2"} {
			_, err := e.store.GetAccessTokenSession(e.ctx, sig, &openid.DefaultSession{})
			wantErr(t, "get revoked "+sig, err, fosite.ErrNotFound)
		}

		if _, err := e.store.GetRefreshTokenSession(e.ctx, "r-y", &openid.DefaultSession{}); err != nil {
			t.Errorf("refresh token of another request: %v", err)
		}
		if _, err := e.store.GetAccessTokenSession(e.ctx, "a-y", &openid.DefaultSession{}); err != nil {
			t.Errorf("access token of another request: %v", err)
		}
		// Revoking a grant that has nothing left is not an error.
		e.must(e.store.RevokeRefreshToken(e.ctx, "request-z"))
		e.must(e.store.RevokeAccessToken(e.ctx, "request-z"))
	})
}

// raceTimeout bounds a race, so that a store that deadlocks fails the test
// instead of hanging it.
const raceTimeout = time.Minute

// race runs fn in n goroutines started together, each in its own
// transaction (InTx: committed when fn returns nil, rolled back otherwise,
// rerun when it lost a serialization race). It returns each goroutine's
// error.
func (e *env) race(n int, fn func(ctx context.Context, i int) error) []error {
	ctx, cancel := context.WithTimeout(e.ctx, raceTimeout)
	defer cancel()
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			// As the HTTP layer does: a transaction that loses a
			// serialization race (REPEATABLE READ, SERIALIZABLE) runs again.
			err := e.store.InTx(ctx, func(ctx context.Context) error { return fn(ctx, i) })
			errs[i] = err
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// oneWinner checks exactly one error is nil and the others are loserErr,
// and returns the index of the winner.
func oneWinner(t *testing.T, errs []error, loserErr error) int {
	t.Helper()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("goroutines %d and %d both succeeded", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, loserErr):
			t.Errorf("goroutine %d: err = %v, want %v", i, err, loserErr)
		}
	}
	if winner < 0 {
		t.Fatal("no goroutine succeeded")
	}
	return winner
}

func testConcurrency(t *testing.T, mk func(*testing.T) *env) {
	const n = 20

	t.Run("CodeExchange", func(t *testing.T) {
		e := mk(t)
		req := e.request("request-1", e.newClient("rp"), "user-1")
		e.must(e.store.CreateAuthorizeCodeSession(e.ctx, "code-1", req))

		errs := e.race(n, func(ctx context.Context, i int) error {
			if err := e.store.InvalidateAuthorizeCodeSession(ctx, "code-1"); err != nil {
				return err
			}
			return e.store.CreateAccessTokenSession(ctx, fmt.Sprintf("access-%d", i), req)
		})
		winner := oneWinner(t, errs, fosite.ErrInvalidatedAuthorizeCode)
		if got := e.count(`access_tokens WHERE request_id = $1`, req.ID); got != 1 {
			t.Errorf("%d access tokens exist, want 1", got)
		}
		if _, err := e.store.GetAccessTokenSession(e.ctx, fmt.Sprintf("access-%d", winner), &openid.DefaultSession{}); err != nil {
			t.Errorf("the winner's access token: %v", err)
		}
	})

	// As the token endpoint does it: the code read first (locked, so its
	// spending is deferred to the commit), then spent.
	t.Run("CodeExchangeAfterRead", func(t *testing.T) {
		e := mk(t)
		req := e.request("request-1", e.newClient("rp"), "user-1")
		e.must(e.store.CreateAuthorizeCodeSession(e.ctx, "code-1", req))

		errs := e.race(n, func(ctx context.Context, i int) error {
			if _, err := e.store.GetAuthorizeCodeSession(ctx, "code-1", &openid.DefaultSession{}); err != nil {
				return err
			}
			if err := e.store.InvalidateAuthorizeCodeSession(ctx, "code-1"); err != nil {
				return err
			}
			return e.store.CreateAccessTokenSession(ctx, fmt.Sprintf("access-%d", i), req)
		})
		oneWinner(t, errs, fosite.ErrInvalidatedAuthorizeCode)
		if got := e.count(`access_tokens WHERE request_id = $1`, req.ID); got != 1 {
			t.Errorf("%d access tokens exist, want 1", got)
		}
	})

	// As the token endpoint does it: the refresh token read first (locked
	// there, WithRefreshReuse), then rotated. Losers find it rotated.
	t.Run("RefreshRotationAfterRead", func(t *testing.T) {
		e := mk(t)
		req := e.request("request-1", e.newClient("rp"), "user-1")
		e.must(e.store.CreateAccessTokenSession(e.ctx, "access", req))
		e.must(e.store.CreateRefreshTokenSession(e.ctx, "refresh", "access", req))

		errs := e.race(n, func(ctx context.Context, i int) error {
			ctx = storage.WithRefreshReuse(ctx, time.Now(), 0)
			if _, err := e.store.GetRefreshTokenSession(ctx, "refresh", &openid.DefaultSession{}); err != nil {
				return err
			}
			if err := e.store.RotateRefreshToken(ctx, req.ID, "refresh"); err != nil {
				return err
			}
			if err := e.store.CreateAccessTokenSession(ctx, fmt.Sprintf("access-%d", i), req); err != nil {
				return err
			}
			return e.store.CreateRefreshTokenSession(ctx, fmt.Sprintf("refresh-%d", i), fmt.Sprintf("access-%d", i), req)
		})
		oneWinner(t, errs, fosite.ErrInactiveToken)
		if got := e.count(`refresh_tokens WHERE request_id = $1 AND active`, req.ID); got != 1 {
			t.Errorf("%d active refresh tokens, want the winner's only", got)
		}
		if got := e.count(`access_tokens WHERE request_id = $1`, req.ID); got != 1 {
			t.Errorf("%d access tokens exist, want 1", got)
		}
	})

	t.Run("RefreshRotation", func(t *testing.T) {
		e := mk(t)
		req := e.request("request-1", e.newClient("rp"), "user-1")
		e.must(e.store.CreateAccessTokenSession(e.ctx, "access", req))
		e.must(e.store.CreateRefreshTokenSession(e.ctx, "refresh", "access", req))

		errs := e.race(n, func(ctx context.Context, i int) error {
			if err := e.store.RotateRefreshToken(ctx, req.ID, "refresh"); err != nil {
				return err
			}
			if err := e.store.CreateAccessTokenSession(ctx, fmt.Sprintf("access-%d", i), req); err != nil {
				return err
			}
			return e.store.CreateRefreshTokenSession(ctx, fmt.Sprintf("refresh-%d", i), fmt.Sprintf("access-%d", i), req)
		})
		winner := oneWinner(t, errs, fosite.ErrSerializationFailure)

		for i := range n {
			_, err := e.store.GetRefreshTokenSession(e.ctx, fmt.Sprintf("refresh-%d", i), &openid.DefaultSession{})
			if i == winner {
				if err != nil {
					t.Errorf("the winner's refresh token: %v", err)
				}
				continue
			}
			wantErr(t, fmt.Sprintf("refresh token of loser %d", i), err, fosite.ErrNotFound)
		}
		_, err := e.store.GetRefreshTokenSession(e.ctx, "refresh", &openid.DefaultSession{})
		wantErr(t, "the rotated refresh token", err, fosite.ErrInactiveToken)
		if got := e.count(`access_tokens WHERE request_id = $1`, req.ID); got != 1 {
			t.Errorf("%d access tokens exist, want 1", got)
		}
	})

	// Two transactions that each hold what the other waits for: PostgreSQL
	// aborts one, and the store reports that as a serialization failure, which
	// fosite answers with "retry" rather than a server error.
	t.Run("Deadlock", func(t *testing.T) {
		e := mk(t)
		req := e.request("request-1", e.newClient("rp"), "user-1")
		codes := []string{"code-a", "code-b"}
		for _, c := range codes {
			e.must(e.store.CreateAuthorizeCodeSession(e.ctx, c, req))
		}
		ctx, cancel := context.WithTimeout(e.ctx, raceTimeout)
		defer cancel()
		txs := make([]context.Context, 2)
		for i := range txs {
			var err error
			txs[i], err = e.store.BeginTX(ctx)
			e.must(err)
			defer e.store.Rollback(txs[i])
			e.must(e.store.InvalidateAuthorizeCodeSession(txs[i], codes[i]))
		}
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for i := range txs {
			wg.Go(func() {
				// Each takes the code the other holds.
				errs[i] = e.store.InvalidateAuthorizeCodeSession(txs[i], codes[1-i])
				if errs[i] != nil {
					_ = e.store.Rollback(txs[i]) // lets the other one through
				}
			})
		}
		wg.Wait()
		oneWinner(t, errs, fosite.ErrSerializationFailure)
	})
}

func testTransactions(t *testing.T, mk func(*testing.T) *env) {
	// exists reports whether code and access token sig exist outside any
	// transaction.
	exists := func(e *env, sig string) (code, access bool) {
		e.t.Helper()
		_, err := e.store.GetAuthorizeCodeSession(e.ctx, sig, &openid.DefaultSession{})
		code = err == nil
		_, err = e.store.GetAccessTokenSession(e.ctx, sig, &openid.DefaultSession{})
		return code, err == nil
	}
	create := func(e *env, ctx context.Context, sig string, r fosite.Requester) {
		e.t.Helper()
		e.must(e.store.CreateAuthorizeCodeSession(ctx, sig, r))
		e.must(e.store.CreateAccessTokenSession(ctx, sig, r))
	}

	t.Run("Rollback", func(t *testing.T) {
		e := mk(t)
		req := e.request("request-1", e.newClient("rp"), "user-1")
		ctx, err := e.store.BeginTX(e.ctx)
		e.must(err)
		create(e, ctx, "sig", req)
		if _, err := e.store.GetAccessTokenSession(ctx, "sig", &openid.DefaultSession{}); err != nil {
			t.Errorf("inside the transaction: %v", err)
		}
		if code, access := exists(e, "sig"); code || access {
			t.Errorf("before commit, outside the transaction: code %v, access token %v; want neither", code, access)
		}
		e.must(e.store.Rollback(ctx))
		if code, access := exists(e, "sig"); code || access {
			t.Errorf("after rollback: code %v, access token %v; want neither", code, access)
		}
	})

	t.Run("Commit", func(t *testing.T) {
		e := mk(t)
		req := e.request("request-1", e.newClient("rp"), "user-1")
		ctx, err := e.store.BeginTX(e.ctx)
		e.must(err)
		create(e, ctx, "sig", req)
		e.must(e.store.Commit(ctx))
		if code, access := exists(e, "sig"); !code || !access {
			t.Errorf("after commit: code %v, access token %v; want both", code, access)
		}
		// fosite rolls back after errors that may follow a commit.
		e.must(e.store.Rollback(ctx))
		if code, access := exists(e, "sig"); !code || !access {
			t.Errorf("after rollback of a committed transaction: code %v, access token %v; want both", code, access)
		}
	})

	t.Run("NoTransaction", func(t *testing.T) {
		e := mk(t)
		if err := e.store.Commit(e.ctx); err == nil {
			t.Error("Commit without a transaction succeeded")
		}
	})

	t.Run("Nested", func(t *testing.T) {
		e := mk(t)
		req := e.request("request-1", e.newClient("rp"), "user-1")
		outer, err := e.store.BeginTX(e.ctx)
		e.must(err)
		create(e, outer, "outer", req)

		inner, err := e.store.BeginTX(outer)
		e.must(err)
		create(e, inner, "rolled-back", req)
		e.must(e.store.Rollback(inner))

		inner, err = e.store.BeginTX(outer)
		e.must(err)
		create(e, inner, "committed", req)
		e.must(e.store.Commit(inner))

		create(e, outer, "after", req) // the outer transaction goes on
		e.must(e.store.Commit(outer))

		for sig, want := range map[string]bool{"outer": true, "rolled-back": false, "committed": true, "after": true} {
			if code, access := exists(e, sig); code != want || access != want {
				t.Errorf("%s: code %v, access token %v; want %v", sig, code, access, want)
			}
		}
	})

	t.Run("NestedOuterRollback", func(t *testing.T) {
		e := mk(t)
		req := e.request("request-1", e.newClient("rp"), "user-1")
		outer, err := e.store.BeginTX(e.ctx)
		e.must(err)
		inner, err := e.store.BeginTX(outer)
		e.must(err)
		create(e, inner, "inner", req)
		e.must(e.store.Commit(inner))
		e.must(e.store.Rollback(outer))
		if code, access := exists(e, "inner"); code || access {
			t.Errorf("inner work after outer rollback: code %v, access token %v; want neither", code, access)
		}
	})
}

func testExpiry(t *testing.T, mk func(*testing.T) *env) {
	t.Run("DeleteExpiredZeroBatch", func(t *testing.T) {
		e := mk(t)
		ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
		defer cancel()
		if _, err := e.store.DeleteExpired(ctx, 0); err == nil || ctx.Err() != nil {
			t.Errorf("DeleteExpired(ctx, 0) = %v (context: %v), want an immediate error", err, ctx.Err())
		}
	})

	t.Run("DeleteExpired", func(t *testing.T) {
		e := mk(t)
		client := e.newClient("rp")
		user := e.newUser("alice")

		// expiring returns a request whose tokens of every kind expire at
		// now + ttl.
		expiring := func(id string, ttl time.Duration) *fosite.Request {
			r := e.request(id, client, user.ID)
			for tt := range r.Session.(*openid.DefaultSession).ExpiresAt {
				r.Session.SetExpiresAt(tt, e.clock.Now().Add(ttl))
			}
			return r
		}
		old, live := expiring("old", time.Minute), expiring("live", time.Hour)
		for _, k := range kinds {
			e.must(k.create(e.store, e.ctx, "old", old))
			e.must(k.create(e.store, e.ctx, "live", live))
		}
		const extra = 7 // more than a batch of expired access tokens
		for i := range extra {
			e.must(e.store.CreateAccessTokenSession(e.ctx, fmt.Sprintf("old-%d", i), old))
		}
		noExpiry := e.request("forever", client, user.ID)
		delete(noExpiry.Session.(*openid.DefaultSession).ExpiresAt, fosite.RefreshToken)
		e.must(e.store.CreateRefreshTokenSession(e.ctx, "forever", "", noExpiry))

		_, _, err := e.store.CreateLoginSession(e.ctx, user.ID, time.Minute)
		e.must(err)
		liveCookie, _, err := e.store.CreateLoginSession(e.ctx, user.ID, time.Hour)
		e.must(err)
		bob := e.newUser("bob")
		e.must(e.store.SaveConsent(e.ctx, user.ID, client.ID, []string{"openid"}, time.Minute))
		e.must(e.store.SaveConsent(e.ctx, bob.ID, client.ID, []string{"openid"}, 0))
		e.must(e.store.SetClientAssertionJWT(e.ctx, "jti-old", e.clock.Now().Add(time.Minute)))
		e.must(e.store.SetClientAssertionJWT(e.ctx, "jti-live", e.clock.Now().Add(time.Hour)))

		// Nothing has expired yet.
		deleted, err := e.store.DeleteExpired(e.ctx, 3)
		e.must(err)
		for table, n := range deleted {
			if n != 0 {
				t.Errorf("before anything expired, deleted %d rows from %s", n, table)
			}
		}

		e.clock.Advance(10 * time.Minute)
		deleted, err = e.store.DeleteExpired(e.ctx, 3)
		e.must(err)
		wantDeleted := map[string]int64{
			"authorization_codes": 1, "access_tokens": 1 + extra, "refresh_tokens": 1,
			"pkce_requests": 1, "oidc_sessions": 1,
			"login_sessions": 1, "consents": 1, "client_assertion_jtis": 1,
		}
		for table, want := range wantDeleted {
			if deleted[table] != want {
				t.Errorf("deleted %d rows from %s, want %d", deleted[table], table, want)
			}
			if n := e.count(table); n != 1+boolInt(table == "refresh_tokens") {
				t.Errorf("%s has %d rows left", table, n)
			}
		}
		for _, k := range kinds {
			_, err := k.get(e.store, e.ctx, "old", &openid.DefaultSession{})
			wantErr(t, "expired "+k.name, err, fosite.ErrNotFound)
			if _, err := k.get(e.store, e.ctx, "live", &openid.DefaultSession{}); err != nil {
				t.Errorf("unexpired %s: %v", k.name, err)
			}
		}
		if _, err := e.store.GetRefreshTokenSession(e.ctx, "forever", &openid.DefaultSession{}); err != nil {
			t.Errorf("refresh token without expiry: %v", err)
		}
		if _, err := e.store.LoginSession(e.ctx, liveCookie); err != nil {
			t.Errorf("unexpired login session: %v", err)
		}
		if ok, err := e.store.HasConsent(e.ctx, bob.ID, client.ID, []string{"openid"}); !ok || err != nil {
			t.Errorf("consent without expiry: %v, %v", ok, err)
		}
	})

	t.Run("LoginSession", func(t *testing.T) {
		e := mk(t)
		user := e.newUser("alice")
		cookie, sess, err := e.store.CreateLoginSession(e.ctx, user.ID, time.Hour)
		e.must(err)
		if want := e.clock.Now().Add(time.Hour); !sess.ExpiresAt.Equal(want) {
			t.Errorf("ExpiresAt = %v, want %v", sess.ExpiresAt, want)
		}
		e.clock.Advance(time.Hour - time.Second)
		if _, err := e.store.LoginSession(e.ctx, cookie); err != nil {
			t.Errorf("a second before expiry: %v", err)
		}
		e.clock.Advance(time.Second)
		_, err = e.store.LoginSession(e.ctx, cookie)
		wantErr(t, "at expiry", err, storage.ErrNotFound)
	})

	t.Run("Consent", func(t *testing.T) {
		e := mk(t)
		user, client := e.newUser("alice"), e.newClient("rp")
		e.must(e.store.SaveConsent(e.ctx, user.ID, client.ID, []string{"openid", "email"}, time.Hour))
		e.clock.Advance(59 * time.Minute)
		if ok, err := e.store.HasConsent(e.ctx, user.ID, client.ID, []string{"openid"}); !ok || err != nil {
			t.Errorf("before expiry: HasConsent = %v, %v; want true", ok, err)
		}
		e.clock.Advance(time.Minute)
		if ok, err := e.store.HasConsent(e.ctx, user.ID, client.ID, []string{"openid"}); ok || err != nil {
			t.Errorf("at expiry: HasConsent = %v, %v; want false", ok, err)
		}
		// Consenting anew does not bring back what had expired.
		e.must(e.store.SaveConsent(e.ctx, user.ID, client.ID, []string{"profile"}, time.Hour))
		if ok, err := e.store.HasConsent(e.ctx, user.ID, client.ID, []string{"profile"}); !ok || err != nil {
			t.Errorf("new consent: HasConsent = %v, %v; want true", ok, err)
		}
		if ok, err := e.store.HasConsent(e.ctx, user.ID, client.ID, []string{"openid"}); ok || err != nil {
			t.Errorf("expired scope after a new consent: HasConsent = %v, %v; want false", ok, err)
		}
		// Without a ttl, consent lasts.
		e.must(e.store.SaveConsent(e.ctx, user.ID, client.ID, []string{"profile"}, 0))
		e.clock.Advance(10 * 365 * 24 * time.Hour)
		if ok, err := e.store.HasConsent(e.ctx, user.ID, client.ID, []string{"profile"}); !ok || err != nil {
			t.Errorf("consent without ttl, years later: HasConsent = %v, %v; want true", ok, err)
		}
	})

	t.Run("ClientAssertionJTI", func(t *testing.T) {
		e := mk(t)
		exp := e.clock.Now().Add(5 * time.Minute)
		e.must(e.store.ClientAssertionJWTValid(e.ctx, "jti-1"))
		e.must(e.store.SetClientAssertionJWT(e.ctx, "jti-1", exp))
		wantErr(t, "set twice", e.store.SetClientAssertionJWT(e.ctx, "jti-1", exp), fosite.ErrJTIKnown)
		wantErr(t, "valid while known", e.store.ClientAssertionJWTValid(e.ctx, "jti-1"), fosite.ErrJTIKnown)
		e.must(e.store.ClientAssertionJWTValid(e.ctx, "jti-2"))

		e.clock.Advance(5 * time.Minute)
		e.must(e.store.ClientAssertionJWTValid(e.ctx, "jti-1"))
		e.must(e.store.SetClientAssertionJWT(e.ctx, "jti-1", e.clock.Now().Add(5*time.Minute)))
		wantErr(t, "valid after being set again", e.store.ClientAssertionJWTValid(e.ctx, "jti-1"), fosite.ErrJTIKnown)
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func testClients(t *testing.T, mk func(*testing.T) *env) {
	t.Run("CreateAndGet", func(t *testing.T) {
		e := mk(t)
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		e.must(err)
		jwks, err := json.Marshal(josev3.JSONWebKeySet{Keys: []josev3.JSONWebKey{
			{Key: &key.PublicKey, KeyID: "key-1", Algorithm: "ES256", Use: "sig"},
		}})
		e.must(err)
		want := storage.Client{
			ID:                      "spa",
			Name:                    "Single-page app",
			RedirectURIs:            []string{"https://spa.example.com/cb", "http://localhost:3000/cb"},
			GrantTypes:              []string{"authorization_code", "refresh_token"},
			ResponseTypes:           []string{"code"},
			Scopes:                  []string{"openid", "email"},
			Audience:                []string{"https://api.example.com"},
			TokenEndpointAuthMethod: "none",
			Public:                  true,
			SkipConsent:             true,
			JWKS:                    jwks,
			JWKSURI:                 "https://spa.example.com/jwks.json",
			PostLogoutRedirectURIs:  []string{"https://spa.example.com/bye"},
			LogoURI:                 "https://spa.example.com/logo.png",
			ClientURI:               "https://spa.example.com",
			Contacts:                []string{"ops@example.com"},

			RegistrationTokenHash:       storage.HashToken("registration token"),
			TokenEndpointAuthSigningAlg: "ES256",
			AccessTokenLifespan:         60,
			RefreshTokenLifespan:        3600,
			IDTokenLifespan:             300,
			AccessTokenStrategy:         "jwt",
			IDTokenSignedResponseAlg:    "EdDSA",

			ApplicationType:                   "native",
			TOSURI:                            "https://spa.example.com/tos",
			PolicyURI:                         "https://spa.example.com/privacy",
			SoftwareID:                        "spa",
			SoftwareVersion:                   "1.0",
			SoftwareStatement:                 "e30.e30.sig",
			DefaultMaxAge:                     600,
			RequireAuthTime:                   true,
			DefaultACRValues:                  []string{"urn:example:loa:2"},
			SubjectType:                       "pairwise",
			SectorIdentifierURI:               "https://spa.example.com/sector.json",
			Sector:                            "spa.example.com",
			UserinfoSignedResponseAlg:         "ES256",
			FrontchannelLogoutURI:             "https://spa.example.com/fc",
			FrontchannelLogoutSessionRequired: true,
			BackchannelLogoutURI:              "https://spa.example.com/bc",
			BackchannelLogoutSessionRequired:  true,
			InitiateLoginURI:                  "https://spa.example.com/login",
		}
		c := want
		e.must(e.store.CreateClient(e.ctx, &c))
		if c.CreatedAt.IsZero() || c.UpdatedAt.IsZero() {
			t.Errorf("CreateClient did not fill in CreatedAt, UpdatedAt: %v, %v", c.CreatedAt, c.UpdatedAt)
		}
		got, err := e.store.Client(e.ctx, "spa")
		e.must(err)
		checkClient(t, got, &want)
		if ks := got.GetJSONWebKeys(); ks == nil || len(ks.Key("key-1")) != 1 {
			t.Errorf("GetJSONWebKeys = %+v, want the key set stored", ks)
		}

		fc, err := e.store.GetClient(e.ctx, "spa")
		e.must(err)
		if fc.GetID() != "spa" || !fc.IsPublic() || !slices.Equal(fc.GetRedirectURIs(), want.RedirectURIs) ||
			!slices.Equal(fc.GetResponseTypes(), want.ResponseTypes) {
			t.Errorf("GetClient = %+v", fc)
		}
		if oc, ok := fc.(fosite.OpenIDConnectClient); !ok || oc.GetTokenEndpointAuthMethod() != "none" ||
			oc.GetJSONWebKeysURI() != want.JWKSURI {
			t.Errorf("GetClient is not the OpenID Connect client stored: %+v", fc)
		}
	})

	t.Run("RotateSecret", func(t *testing.T) {
		e := mk(t)
		first, second, third := storage.HashGeneratedSecret("one"), storage.HashGeneratedSecret("two"), storage.HashGeneratedSecret("three")
		e.must(e.store.CreateClient(e.ctx, &storage.Client{ID: "rp", SecretHash: first, TokenEndpointAuthMethod: "client_secret_basic"}))
		until := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
		c, err := e.store.RotateClientSecret(e.ctx, "rp", second, &until)
		e.must(err)
		if c.SecretHash != second || c.RotatedSecretHash != first || c.RotatedSecretExpiresAt == nil || !c.RotatedSecretExpiresAt.Equal(until) {
			t.Errorf("after a rotation with grace: secret %q, previous %q until %v", c.SecretHash, c.RotatedSecretHash, c.RotatedSecretExpiresAt)
		}
		if got := c.GetRotatedHashes(); len(got) != 1 || string(got[0]) != first {
			t.Errorf("GetRotatedHashes = %q, want the previous hash", got)
		}
		c, err = e.store.RotateClientSecret(e.ctx, "rp", third, nil)
		e.must(err)
		if c.SecretHash != third || c.RotatedSecretHash != "" || c.RotatedSecretExpiresAt != nil || len(c.GetRotatedHashes()) != 0 {
			t.Errorf("after a rotation without grace: secret %q, previous %q until %v", c.SecretHash, c.RotatedSecretHash, c.RotatedSecretExpiresAt)
		}
		past := time.Now().Add(-time.Second)
		c.RotatedSecretHash, c.RotatedSecretExpiresAt = first, &past
		if len(c.GetRotatedHashes()) != 0 {
			t.Error("GetRotatedHashes returned a hash whose grace period is over")
		}
		_, err = e.store.RotateClientSecret(e.ctx, "nobody", third, nil)
		wantErr(t, "rotate unknown", err, storage.ErrNotFound)
	})

	t.Run("Duplicate", func(t *testing.T) {
		e := mk(t)
		e.newClient("rp")
		err := e.store.CreateClient(e.ctx, &storage.Client{ID: "rp", TokenEndpointAuthMethod: "none", Public: true})
		wantErr(t, "create duplicate", err, storage.ErrAlreadyExists)
	})

	t.Run("PublicWithSecret", func(t *testing.T) {
		e := mk(t)
		err := e.store.CreateClient(e.ctx, &storage.Client{
			ID: "spa", Public: true, SecretHash: storage.HashGeneratedSecret("s"), TokenEndpointAuthMethod: "none",
		})
		if err == nil {
			t.Error("created a public client with a secret")
		}
	})

	t.Run("List", func(t *testing.T) {
		e := mk(t)
		for _, id := range []string{"d", "b", "e", "a", "c"} {
			e.newClient(id)
		}
		var pages [][]string
		for after := ""; ; {
			cs, err := e.store.ListClients(e.ctx, after, 2)
			e.must(err)
			if len(cs) == 0 {
				break
			}
			var ids []string
			for _, c := range cs {
				ids = append(ids, c.ID)
			}
			pages = append(pages, ids)
			after = ids[len(ids)-1]
			if len(pages) > 5 {
				break
			}
		}
		if want := [][]string{{"a", "b"}, {"c", "d"}, {"e"}}; !reflect.DeepEqual(pages, want) {
			t.Errorf("pages = %q, want %q", pages, want)
		}
		cs, err := e.store.ListClients(e.ctx, "", 10)
		e.must(err)
		if len(cs) != 5 || cs[0].Name != "Client a" || !slices.Equal(cs[0].RedirectURIs, []string{"https://a.example.com/callback", "http://127.0.0.1:8080/cb"}) {
			t.Errorf("ListClients = %+v", cs)
		}
	})

	t.Run("Update", func(t *testing.T) {
		e := mk(t)
		c := e.newClient("rp")
		e.newClient("other")
		created := c.CreatedAt
		want := storage.Client{
			ID:                      "rp",
			SecretHash:              storage.HashGeneratedSecret("new secret"),
			Name:                    "Renamed",
			RedirectURIs:            []string{"https://new.example.com/cb"},
			GrantTypes:              []string{"client_credentials"},
			ResponseTypes:           []string{},
			Scopes:                  []string{"api"},
			Audience:                []string{"https://other-api.example.com"},
			TokenEndpointAuthMethod: "client_secret_post",
			SkipConsent:             true,
			JWKS:                    []byte(`{"keys": []}`),
			JWKSURI:                 "https://new.example.com/jwks",
			PostLogoutRedirectURIs:  []string{"https://new.example.com/bye"},
			LogoURI:                 "https://new.example.com/logo.png",
			ClientURI:               "https://new.example.com",
			Contacts:                []string{"new@example.com"},
			AccessTokenStrategy:     "opaque",
			ApplicationType:         "web",
			SubjectType:             "public",
			DefaultACRValues:        []string{},
		}
		updated := want
		e.must(e.store.UpdateClient(e.ctx, &updated))
		checkClient(t, &updated, &want)
		got, err := e.store.Client(e.ctx, "rp")
		e.must(err)
		checkClient(t, got, &want)
		if !got.CreatedAt.Equal(created) || got.UpdatedAt.Before(created) {
			t.Errorf("CreatedAt, UpdatedAt = %v, %v; created at %v", got.CreatedAt, got.UpdatedAt, created)
		}
		if other, err := e.store.Client(e.ctx, "other"); err != nil || other.Name != "Client other" {
			t.Errorf("another client: %+v, %v", other, err)
		}

		// Back to nothing: empty lists, no key set, opaque tokens.
		want = storage.Client{ID: "rp", TokenEndpointAuthMethod: "none", Public: true, AccessTokenStrategy: "opaque",
			RedirectURIs: []string{}, GrantTypes: []string{}, ResponseTypes: []string{}, Scopes: []string{},
			Audience: []string{}, PostLogoutRedirectURIs: []string{}, Contacts: []string{},
			ApplicationType: "web", SubjectType: "public", DefaultACRValues: []string{}}
		e.must(e.store.UpdateClient(e.ctx, &storage.Client{ID: "rp", TokenEndpointAuthMethod: "none", Public: true}))
		got, err = e.store.Client(e.ctx, "rp")
		e.must(err)
		checkClient(t, got, &want)

		wantErr(t, "update unknown", e.store.UpdateClient(e.ctx, &storage.Client{ID: "nobody", TokenEndpointAuthMethod: "none"}), storage.ErrNotFound)
	})

	t.Run("Delete", func(t *testing.T) {
		e := mk(t)
		e.newClient("rp")
		other := e.newClient("other")
		e.must(e.store.DeleteClient(e.ctx, "rp"))
		_, err := e.store.Client(e.ctx, "rp")
		wantErr(t, "get deleted", err, storage.ErrNotFound)
		_, err = e.store.GetClient(e.ctx, "rp")
		wantErr(t, "GetClient deleted", err, fosite.ErrNotFound)
		wantErr(t, "delete again", e.store.DeleteClient(e.ctx, "rp"), storage.ErrNotFound)
		if _, err := e.store.Client(e.ctx, other.ID); err != nil {
			t.Errorf("other client: %v", err)
		}
	})

	t.Run("DeleteCascades", func(t *testing.T) {
		e := mk(t)
		rp, other := e.newClient("rp"), e.newClient("other")
		user := e.newUser("alice")
		for _, k := range kinds {
			e.must(k.create(e.store, e.ctx, "rp", e.request("request-rp", rp, user.ID)))
			e.must(k.create(e.store, e.ctx, "other", e.request("request-other", other, user.ID)))
		}
		e.must(e.store.SaveConsent(e.ctx, user.ID, rp.ID, []string{"openid"}, 0))
		e.must(e.store.DeleteClient(e.ctx, rp.ID))
		for _, k := range kinds {
			_, err := k.get(e.store, e.ctx, "rp", &openid.DefaultSession{})
			wantErr(t, k.name+" of the deleted client", err, fosite.ErrNotFound)
			if _, err := k.get(e.store, e.ctx, "other", &openid.DefaultSession{}); err != nil {
				t.Errorf("%s of another client: %v", k.name, err)
			}
		}
		if n := e.count(`consents WHERE client_id = $1`, rp.ID); n != 0 {
			t.Errorf("%d consents to the deleted client remain", n)
		}
	})
}

func checkClient(t *testing.T, got, want *storage.Client) {
	t.Helper()
	// jsonb keeps the key set's meaning, not its bytes.
	var gotKeys, wantKeys any
	if len(got.JWKS) > 0 || len(want.JWKS) > 0 {
		if json.Unmarshal(got.JWKS, &gotKeys) != nil || json.Unmarshal(want.JWKS, &wantKeys) != nil {
			t.Errorf("JWKS = %s, want %s", got.JWKS, want.JWKS)
		}
	}
	if !reflect.DeepEqual(gotKeys, wantKeys) {
		t.Errorf("JWKS = %s, want %s", got.JWKS, want.JWKS)
	}
	g, w := *got, *want
	g.JWKS, w.JWKS = nil, nil
	g.CreatedAt, w.CreatedAt, g.UpdatedAt, w.UpdatedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("client = %+v\nwant %+v", g, w)
	}
}

func testUsers(t *testing.T, mk func(*testing.T) *env) {
	t.Run("CreateAndFind", func(t *testing.T) {
		e := mk(t)
		u := &storage.User{Username: "Alice", Email: "alice@example.com", EmailVerified: true, Name: "Alice A."}
		e.must(e.store.CreateUser(e.ctx, u, "correct horse"))
		if len(u.ID) < 16 {
			t.Errorf("ID = %q, want a random id", u.ID)
		}
		if !strings.HasPrefix(u.PasswordHash, "$argon2id$") || strings.Contains(u.PasswordHash, "correct horse") {
			t.Errorf("PasswordHash = %q, want an Argon2id hash", u.PasswordHash)
		}
		for _, name := range []string{"Alice", "alice", "ALICE"} {
			got, err := e.store.UserByUsername(e.ctx, name)
			if err != nil || got.ID != u.ID || got.Username != "Alice" || got.Email != u.Email || !got.EmailVerified || got.Name != u.Name {
				t.Errorf("UserByUsername(%q) = %+v, %v; want %+v", name, got, err, u)
			}
		}
		got, err := e.store.User(e.ctx, u.ID)
		if err != nil || got.Username != "Alice" {
			t.Errorf("User(%q) = %+v, %v", u.ID, got, err)
		}
		_, err = e.store.UserByUsername(e.ctx, "bob")
		wantErr(t, "unknown username", err, storage.ErrNotFound)
		_, err = e.store.User(e.ctx, "nobody")
		wantErr(t, "unknown id", err, storage.ErrNotFound)

		bob := e.newUser("bob")
		if bob.ID == u.ID {
			t.Errorf("two users got the id %q", u.ID)
		}
	})

	t.Run("DuplicateUsername", func(t *testing.T) {
		e := mk(t)
		e.newUser("alice")
		err := e.store.CreateUser(e.ctx, &storage.User{Username: "ALICE"}, "pw")
		wantErr(t, "create ALICE after alice", err, storage.ErrAlreadyExists)
	})

	t.Run("Authenticate", func(t *testing.T) {
		e := mk(t)
		alice := e.newUser("alice")
		carol := e.newUser("carol")
		_, err := e.store.UpdateUser(e.ctx, carol.ID, storage.UserUpdate{Disabled: ptr(true)})
		e.must(err)

		got, err := e.store.Authenticate(e.ctx, "Alice", "password of alice")
		if err != nil || got.ID != alice.ID {
			t.Errorf("right password: %+v, %v", got, err)
		}
		for _, c := range []struct{ name, username, password string }{
			{"wrong password", "alice", "password of bob"},
			{"empty password", "alice", ""},
			{"unknown user", "bob", "password of bob"},
			{"disabled user", "carol", "password of carol"},
		} {
			got, err := e.store.Authenticate(e.ctx, c.username, c.password)
			wantErr(t, c.name, err, storage.ErrInvalidCredentials)
			if got != nil {
				t.Errorf("%s: returned user %+v", c.name, got)
			}
		}
	})

	t.Run("Update", func(t *testing.T) {
		e := mk(t)
		alice := e.newUser("alice")
		got, err := e.store.UpdateUser(e.ctx, alice.ID, storage.UserUpdate{Password: ptr("new password"), Name: ptr("Alice B.")})
		e.must(err)
		if got.Name != "Alice B." || got.Email != alice.Email {
			t.Errorf("UpdateUser = %+v; want the new name and the old email", got)
		}
		_, err = e.store.Authenticate(e.ctx, "alice", "password of alice")
		wantErr(t, "old password", err, storage.ErrInvalidCredentials)
		if _, err := e.store.Authenticate(e.ctx, "alice", "new password"); err != nil {
			t.Errorf("new password: %v", err)
		}
		_, err = e.store.UpdateUser(e.ctx, "nobody", storage.UserUpdate{Name: ptr("x")})
		wantErr(t, "update unknown", err, storage.ErrNotFound)
	})

	t.Run("DisableEndsLoginSessions", func(t *testing.T) {
		e := mk(t)
		alice, bob := e.newUser("alice"), e.newUser("bob")
		var cookies []string
		for range 2 {
			c, _, err := e.store.CreateLoginSession(e.ctx, alice.ID, time.Hour)
			e.must(err)
			cookies = append(cookies, c)
		}
		bobCookie, _, err := e.store.CreateLoginSession(e.ctx, bob.ID, time.Hour)
		e.must(err)

		_, err = e.store.UpdateUser(e.ctx, alice.ID, storage.UserUpdate{Disabled: ptr(true)})
		e.must(err)
		// Enabled again, she must still log in anew: the sessions are gone,
		// not merely hidden.
		_, err = e.store.UpdateUser(e.ctx, alice.ID, storage.UserUpdate{Disabled: ptr(false)})
		e.must(err)
		for _, c := range cookies {
			_, err := e.store.LoginSession(e.ctx, c)
			wantErr(t, "session of a user once disabled", err, storage.ErrNotFound)
		}
		if _, err := e.store.LoginSession(e.ctx, bobCookie); err != nil {
			t.Errorf("another user's session: %v", err)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		e := mk(t)
		alice := e.newUser("alice")
		cookie, _, err := e.store.CreateLoginSession(e.ctx, alice.ID, time.Hour)
		e.must(err)
		e.must(e.store.DeleteUser(e.ctx, alice.ID))
		_, err = e.store.User(e.ctx, alice.ID)
		wantErr(t, "get deleted", err, storage.ErrNotFound)
		_, err = e.store.LoginSession(e.ctx, cookie)
		wantErr(t, "session of deleted user", err, storage.ErrNotFound)
		wantErr(t, "delete again", e.store.DeleteUser(e.ctx, alice.ID), storage.ErrNotFound)
	})
}

func ptr[T any](v T) *T { return &v }

// testUserRevocation: a disabled or deleted user's codes and tokens stop
// working at once; other users' tokens are untouched.
func testUserRevocation(t *testing.T, mk func(*testing.T) *env) {
	for _, c := range []struct {
		name string
		do   func(e *env, id string) error
	}{
		{"Disable", func(e *env, id string) error {
			_, err := e.store.UpdateUser(e.ctx, id, storage.UserUpdate{Disabled: ptr(true)})
			return err
		}},
		{"Delete", func(e *env, id string) error { return e.store.DeleteUser(e.ctx, id) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := mk(t)
			client := e.newClient("app")
			alice, bob := e.newUser("alice"), e.newUser("bob")
			for _, u := range []*storage.User{alice, bob} {
				r := e.request("req-"+u.Username, client, u.ID)
				e.must(e.store.CreateAuthorizeCodeSession(e.ctx, "code-"+u.Username, r))
				e.must(e.store.CreateAccessTokenSession(e.ctx, "at-"+u.Username, r))
				e.must(e.store.CreateRefreshTokenSession(e.ctx, "rt-"+u.Username, "at-"+u.Username, r))
			}
			e.must(c.do(e, alice.ID))

			_, err := e.store.GetAccessTokenSession(e.ctx, "at-alice", &openid.DefaultSession{})
			wantErr(t, "access token of revoked user", err, fosite.ErrNotFound)
			_, err = e.store.GetRefreshTokenSession(e.ctx, "rt-alice", &openid.DefaultSession{})
			wantErr(t, "refresh token of revoked user", err, fosite.ErrInactiveToken)
			_, err = e.store.GetAuthorizeCodeSession(e.ctx, "code-alice", &openid.DefaultSession{})
			wantErr(t, "code of revoked user", err, fosite.ErrInvalidatedAuthorizeCode)

			if _, err := e.store.GetAccessTokenSession(e.ctx, "at-bob", &openid.DefaultSession{}); err != nil {
				t.Errorf("another user's access token: %v", err)
			}
			if _, err := e.store.GetRefreshTokenSession(e.ctx, "rt-bob", &openid.DefaultSession{}); err != nil {
				t.Errorf("another user's refresh token: %v", err)
			}
		})
	}
}

// testTimes: every time the store hands back is in UTC and equal to what
// it returned when the row was written.
func testTimes(t *testing.T, mk func(*testing.T) *env) {
	e := mk(t)
	u := e.newUser("alice")
	c := e.newClient("app")
	cookie, created, err := e.store.CreateLoginSession(e.ctx, u.ID, time.Hour)
	e.must(err)
	got, err := e.store.LoginSession(e.ctx, cookie)
	e.must(err)
	gotUser, err := e.store.User(e.ctx, u.ID)
	e.must(err)
	gotClient, err := e.store.Client(e.ctx, c.ID)
	e.must(err)
	for name, tm := range map[string]time.Time{
		"LoginSession.AuthTime": got.AuthTime, "LoginSession.ExpiresAt": got.ExpiresAt,
		"User.CreatedAt": gotUser.CreatedAt, "created User.CreatedAt": u.CreatedAt,
		"Client.CreatedAt": gotClient.CreatedAt, "created Client.UpdatedAt": c.UpdatedAt,
	} {
		if tm.Location() != time.UTC {
			t.Errorf("%s is in %v, want UTC", name, tm.Location())
		}
	}
	if !created.ExpiresAt.Equal(got.ExpiresAt) || !created.AuthTime.Equal(got.AuthTime) {
		t.Errorf("CreateLoginSession returned %+v, LoginSession reads %+v", created, got)
	}
}

func testLoginSessions(t *testing.T, mk func(*testing.T) *env) {
	t.Run("SessionUser", func(t *testing.T) {
		e := mk(t)
		alice := e.newUser("alice")
		cookie, created, err := e.store.CreateLoginSession(e.ctx, alice.ID, time.Hour)
		e.must(err)
		u, sess, err := e.store.SessionUser(e.ctx, cookie)
		e.must(err)
		if u.ID != alice.ID || u.Username != "alice" || u.Email != alice.Email || u.Name != alice.Name || u.PasswordHash == "" {
			t.Errorf("SessionUser user = %+v, want %+v", u, alice)
		}
		if !sess.AuthTime.Equal(created.AuthTime) || !sess.ExpiresAt.Equal(created.ExpiresAt) || sess.AuthTime.Location() != time.UTC {
			t.Errorf("SessionUser session = %+v, want %+v in UTC", sess, created)
		}
		_, _, err = e.store.SessionUser(e.ctx, cookie+"x")
		wantErr(t, "unknown cookie", err, storage.ErrNotFound)
		_, err = e.store.UpdateUser(e.ctx, alice.ID, storage.UserUpdate{Disabled: ptr(true)})
		e.must(err)
		_, _, err = e.store.SessionUser(e.ctx, cookie)
		wantErr(t, "session of a disabled user", err, storage.ErrNotFound)
	})

	t.Run("Lifecycle", func(t *testing.T) {
		e := mk(t)
		alice, bob := e.newUser("alice"), e.newUser("bob")
		cookie, created, err := e.store.CreateLoginSession(e.ctx, alice.ID, 8*time.Hour)
		e.must(err)
		got, err := e.store.LoginSession(e.ctx, cookie)
		e.must(err)
		now := e.clock.Now()
		if got.UserID != alice.ID || !got.AuthTime.Equal(now) || !got.ExpiresAt.Equal(now.Add(8*time.Hour)) {
			t.Errorf("LoginSession = %+v, want user %q, auth time %v, expiry 8h later", got, alice.ID, now)
		}
		if created.UserID != alice.ID || !created.AuthTime.Equal(got.AuthTime) || !created.ExpiresAt.Equal(got.ExpiresAt) {
			t.Errorf("CreateLoginSession returned %+v, but stored %+v", created, got)
		}

		// The table keeps a hash of the cookie, never the cookie.
		if n := e.count(`login_sessions WHERE strpos(id_hash, $1) > 0`, cookie); n != 0 {
			t.Errorf("%d login_sessions rows hold the cookie value", n)
		}

		other, _, err := e.store.CreateLoginSession(e.ctx, alice.ID, time.Hour)
		e.must(err)
		if other == cookie || len(cookie) < 32 {
			t.Errorf("cookies %q and %q: want distinct random values", cookie, other)
		}
		_, err = e.store.LoginSession(e.ctx, "not a cookie")
		wantErr(t, "unknown cookie", err, storage.ErrNotFound)

		e.must(e.store.DeleteLoginSession(e.ctx, cookie))
		_, err = e.store.LoginSession(e.ctx, cookie)
		wantErr(t, "after logout", err, storage.ErrNotFound)
		e.must(e.store.DeleteLoginSession(e.ctx, cookie)) // logging out twice is fine
		if _, err := e.store.LoginSession(e.ctx, other); err != nil {
			t.Errorf("the user's other session: %v", err)
		}

		bobCookie, _, err := e.store.CreateLoginSession(e.ctx, bob.ID, time.Hour)
		e.must(err)
		_, _, err = e.store.CreateLoginSession(e.ctx, alice.ID, time.Hour)
		e.must(err)
		n, err := e.store.DeleteUserLoginSessions(e.ctx, alice.ID)
		e.must(err)
		if n != 2 {
			t.Errorf("DeleteUserLoginSessions ended %d sessions, want 2", n)
		}
		_, err = e.store.LoginSession(e.ctx, other)
		wantErr(t, "after ending all sessions", err, storage.ErrNotFound)
		if _, err := e.store.LoginSession(e.ctx, bobCookie); err != nil {
			t.Errorf("another user's session: %v", err)
		}
	})
}

func testConsents(t *testing.T, mk func(*testing.T) *env) {
	t.Run("Scopes", func(t *testing.T) {
		e := mk(t)
		alice, bob := e.newUser("alice"), e.newUser("bob")
		rp, other := e.newClient("rp"), e.newClient("other")
		has := func(user *storage.User, client *storage.Client, scopes ...string) bool {
			t.Helper()
			ok, err := e.store.HasConsent(e.ctx, user.ID, client.ID, scopes)
			e.must(err)
			return ok
		}
		if has(alice, rp, "a") {
			t.Error("consent before any was given")
		}
		e.must(e.store.SaveConsent(e.ctx, alice.ID, rp.ID, []string{"a", "b"}, 0))
		for _, c := range []struct {
			user   *storage.User
			client *storage.Client
			scopes []string
			want   bool
		}{
			{alice, rp, []string{"a"}, true},
			{alice, rp, []string{"a", "b"}, true},
			{alice, rp, []string{"b", "a"}, true},
			{alice, rp, []string{"a", "c"}, false},
			{alice, other, []string{"a"}, false},
			{bob, rp, []string{"a"}, false},
		} {
			if got := has(c.user, c.client, c.scopes...); got != c.want {
				t.Errorf("HasConsent(%s, %s, %q) = %v, want %v", c.user.Username, c.client.ID, c.scopes, got, c.want)
			}
		}
		e.must(e.store.SaveConsent(e.ctx, alice.ID, rp.ID, []string{"c"}, 0))
		if !has(alice, rp, "a", "b", "c") {
			t.Error("a later consent replaced the earlier one instead of adding to it")
		}
	})

	t.Run("Withdraw", func(t *testing.T) {
		e := mk(t)
		alice, bob := e.newUser("alice"), e.newUser("bob")
		rp, other := e.newClient("rp"), e.newClient("other")
		issue := func(user *storage.User, client *storage.Client) {
			t.Helper()
			e.must(e.store.SaveConsent(e.ctx, user.ID, client.ID, []string{"openid"}, 0))
			r := e.request(user.Username+"@"+client.ID, client, user.ID)
			e.must(e.store.CreateAccessTokenSession(e.ctx, "a:"+r.ID, r))
			e.must(e.store.CreateRefreshTokenSession(e.ctx, "r:"+r.ID, "a:"+r.ID, r))
		}
		// tokensLeft reports whether an access and a refresh token of
		// user@client are still usable.
		tokensLeft := func(user *storage.User, client *storage.Client) (access, refresh bool) {
			t.Helper()
			id := user.Username + "@" + client.ID
			_, err := e.store.GetAccessTokenSession(e.ctx, "a:"+id, &openid.DefaultSession{})
			access = err == nil
			_, err = e.store.GetRefreshTokenSession(e.ctx, "r:"+id, &openid.DefaultSession{})
			return access, err == nil
		}
		issue(alice, rp)
		issue(alice, other)
		issue(bob, rp)

		n, err := e.store.WithdrawConsents(e.ctx, alice.ID, rp.ID)
		e.must(err)
		if n != 1 {
			t.Errorf("WithdrawConsents removed %d consents, want 1", n)
		}
		if ok, err := e.store.HasConsent(e.ctx, alice.ID, rp.ID, []string{"openid"}); ok || err != nil {
			t.Errorf("after withdrawal: HasConsent = %v, %v; want false", ok, err)
		}
		if a, r := tokensLeft(alice, rp); a || r {
			t.Errorf("alice's tokens for rp after withdrawal: access %v, refresh %v; want neither", a, r)
		}
		for _, c := range []struct {
			user   *storage.User
			client *storage.Client
		}{{alice, other}, {bob, rp}} {
			if a, r := tokensLeft(c.user, c.client); !a || !r {
				t.Errorf("%s's tokens for %s: access %v, refresh %v; want both", c.user.Username, c.client.ID, a, r)
			}
			if ok, err := e.store.HasConsent(e.ctx, c.user.ID, c.client.ID, []string{"openid"}); !ok || err != nil {
				t.Errorf("%s's consent to %s: %v, %v; want true", c.user.Username, c.client.ID, ok, err)
			}
		}

		// No client: every consent of the user.
		issue(alice, rp)
		n, err = e.store.WithdrawConsents(e.ctx, alice.ID, "")
		e.must(err)
		if n != 2 {
			t.Errorf("WithdrawConsents of all clients removed %d consents, want 2", n)
		}
		for _, client := range []*storage.Client{rp, other} {
			if a, r := tokensLeft(alice, client); a || r {
				t.Errorf("alice's tokens for %s after withdrawing all: access %v, refresh %v; want neither", client.ID, a, r)
			}
		}
		if a, r := tokensLeft(bob, rp); !a || !r {
			t.Errorf("bob's tokens for rp: access %v, refresh %v; want both", a, r)
		}
	})
}

func testSecrets(t *testing.T) {
	var _ fosite.Hasher = storage.SecretHasher{}

	for _, secret := range []string{"plain", "with+plus%25percent:colon", "ünïcødé and spaces "} {
		t.Run("Generated/"+secret, func(t *testing.T) {
			t.Parallel()
			h := storage.HashGeneratedSecret(secret)
			if h == secret || strings.Contains(h, secret) {
				t.Errorf("hash %q shows the secret", h)
			}
			checkCompare(t, h, secret)
		})
		t.Run("Password/"+secret, func(t *testing.T) {
			t.Parallel()
			h, err := storage.HashPassword(secret)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(h, "$argon2id$") || strings.Contains(h, secret) {
				t.Errorf("hash %q: want an Argon2id hash not showing the secret", h)
			}
			checkCompare(t, h, secret)
			if again, _ := storage.HashPassword(secret); again == h {
				t.Error("two hashes of one password are equal: no salt")
			}
		})
	}

	t.Run("Hasher", func(t *testing.T) {
		t.Parallel()
		var hasher storage.SecretHasher
		ctx := t.Context()
		h, err := hasher.Hash(ctx, []byte("s3cr:et+%"))
		if err != nil {
			t.Fatal(err)
		}
		if err := hasher.Compare(ctx, h, []byte("s3cr:et+%")); err != nil {
			t.Errorf("Compare with the right secret: %v", err)
		}
		if err := hasher.Compare(ctx, h, []byte("s3cr:et+")); err == nil {
			t.Error("Compare with a wrong secret succeeded")
		}
		gen := []byte(storage.HashGeneratedSecret("generated"))
		if err := hasher.Compare(ctx, gen, []byte("generated")); err != nil {
			t.Errorf("Compare with a generated secret's hash: %v", err)
		}
	})

	t.Run("Malformed", func(t *testing.T) {
		t.Parallel()
		for _, h := range []string{"", "secret", "$sha256$!!!", "$argon2id$v=19$m=1,t=1,p=1$bad", "$argon2id$v=18$m=19456,t=2,p=1$c2FsdA$a2V5"} {
			if err := storage.CompareSecret(h, ""); err == nil {
				t.Errorf("CompareSecret(%q, \"\") succeeded", h)
			}
			if err := storage.CompareSecret(h, h); err == nil {
				t.Errorf("CompareSecret(%q, itself) succeeded", h)
			}
		}
	})

	t.Run("GenerateSecret", func(t *testing.T) {
		t.Parallel()
		a, err1 := storage.GenerateSecret()
		b, err2 := storage.GenerateSecret()
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		if a == b || len(a) < 43 {
			t.Errorf("GenerateSecret = %q, %q: want distinct 256-bit values", a, b)
		}
		checkCompare(t, storage.HashGeneratedSecret(a), a)
	})
}

// checkCompare checks hash matches secret and nothing near it.
func checkCompare(t *testing.T, hash, secret string) {
	t.Helper()
	if err := storage.CompareSecret(hash, secret); err != nil {
		t.Errorf("CompareSecret with the right secret: %v", err)
	}
	for _, wrong := range []string{"", secret + "x", secret[:len(secret)-1], strings.ToUpper(secret), hash} {
		if wrong == secret {
			continue
		}
		if err := storage.CompareSecret(hash, wrong); err == nil {
			t.Errorf("CompareSecret(%q) with wrong secret %q succeeded", hash, wrong)
		}
	}
}
