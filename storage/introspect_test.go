package storage_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/authz/authz/storage"
)

// TestLookupForIntrospection: one statement answers introspection
// whatever the token is. An access token comes back as a view of its row;
// a refresh token is left, already read, to fosite's path; an unknown
// token or one whose client was deleted is known absent from both tables,
// with no further statement.
func TestLookupForIntrospection(t *testing.T) {
	t.Parallel()
	e := newUnitEnv(t)
	e.startCache(e.store)
	req := e.request("grant-1")
	req.GrantedAudience = fosite.Arguments{"https://api.example"}
	sess := req.Session.(*openid.DefaultSession)
	sess.Username = "alice"
	exp := time.Date(2031, 5, 6, 7, 8, 9, 123456000, time.UTC)
	sess.SetExpiresAt(fosite.AccessToken, exp)
	e.must(e.store.CreateAccessTokenSession(e.ctx, "sig-a", req))
	e.must(e.store.CreateRefreshTokenSession(e.ctx, "sig-r", "sig-a", req))
	e.clientName(e.store) // the client in the cache, as on a running server

	var v *storage.AccessTokenView
	if n := e.statements(func() {
		var err error
		v, err = e.store.LookupForIntrospection(storage.WithReads(e.ctx), "sig-a", "sig-a", false)
		e.must(err)
	}); n != 1 {
		t.Errorf("access token: %d statements, want 1", n)
	}
	if v == nil || !v.Active || v.Client.ID != e.client.ID || len(v.GrantedScopes) != 1 || v.GrantedScopes[0] != "openid" ||
		len(v.GrantedAudience) != 1 || v.GrantedAudience[0] != "https://api.example" {
		t.Fatalf("access token view: %+v", v)
	}
	// What introspection needs of the session, without the session.
	if v.Subject != "user-1" || v.Username != "alice" || !v.ExpiresAt.Equal(exp) {
		t.Errorf("access token view: subject %q, username %q, expiry %v; want user-1, alice, %v", v.Subject, v.Username, v.ExpiresAt, exp)
	}

	// A refresh token is left, already read, to fosite's path: in the
	// same statement without a hint; with a wrong one (access_token),
	// the refresh table is read next, as fosite asks.
	for _, tc := range []struct {
		accessOnly bool
		statements int64
	}{{false, 1}, {true, 2}} {
		ctx := storage.WithReads(e.ctx)
		if n := e.statements(func() {
			v, err := e.store.LookupForIntrospection(ctx, "sig-r", "sig-r", tc.accessOnly)
			e.must(err)
			if v != nil {
				t.Errorf("access only %v: a refresh token came back as an access token view", tc.accessOnly)
			}
			if _, err := e.store.GetAccessTokenSession(ctx, "sig-r", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
				t.Errorf("access only %v: refresh token as access token: %v, want not found", tc.accessOnly, err)
			}
			r, err := e.store.GetRefreshTokenSession(ctx, "sig-r", openid.NewDefaultSession())
			e.must(err)
			if r.GetID() != "grant-1" {
				t.Errorf("access only %v: refresh token's grant %q", tc.accessOnly, r.GetID())
			}
		}); n != tc.statements {
			t.Errorf("refresh token, access only %v: %d statements, want %d", tc.accessOnly, n, tc.statements)
		}
	}

	ctx := storage.WithReads(e.ctx)
	if n := e.statements(func() {
		v, err := e.store.LookupForIntrospection(ctx, "sig-unknown", "sig-unknown", false)
		e.must(err)
		_, errA := e.store.GetAccessTokenSession(ctx, "sig-unknown", openid.NewDefaultSession())
		_, errR := e.store.GetRefreshTokenSession(ctx, "sig-unknown", openid.NewDefaultSession())
		if v != nil || !errors.Is(errA, fosite.ErrNotFound) || !errors.Is(errR, fosite.ErrNotFound) {
			t.Errorf("unknown token: view %v, access %v, refresh %v", v, errA, errR)
		}
	}); n != 1 {
		t.Errorf("unknown token: %d statements, want 1", n)
	}

	// Told to expect an access token: the access table alone answers one,
	// the same view.
	if n := e.statements(func() {
		w, err := e.store.LookupForIntrospection(storage.WithReads(e.ctx), "sig-a", "sig-a", true)
		e.must(err)
		if w == nil || w.Subject != v.Subject || w.Username != v.Username || !w.ExpiresAt.Equal(v.ExpiresAt) ||
			w.Client.ID != v.Client.ID || !w.Active || len(w.GrantedScopes) != 1 || len(w.GrantedAudience) != 1 {
			t.Errorf("access token, access table alone: %+v, want %+v", w, v)
		}
	}); n != 1 {
		t.Errorf("access token, access table alone: %d statements, want 1", n)
	}

	// Revoked: the rows are gone.
	e.must(e.store.RevokeAccessToken(e.ctx, "grant-1"))
	if v, err := e.store.LookupForIntrospection(storage.WithReads(e.ctx), "sig-a", "sig-a", false); err != nil || v != nil {
		t.Errorf("revoked access token: %+v, %v; want no view", v, err)
	}
	// A row marked inactive comes back as such.
	noExpiry := e.request("grant-2")
	noExpiry.Session.(*openid.DefaultSession).ExpiresAt = nil
	e.must(e.store.CreateAccessTokenSession(e.ctx, "sig-b", noExpiry))
	e.must(e.store.ExecForTest(e.ctx, `UPDATE access_tokens SET active = false WHERE signature = $1`, "sig-b"))
	v, err := e.store.LookupForIntrospection(storage.WithReads(e.ctx), "sig-b", "sig-b", false)
	e.must(err)
	if v == nil || v.Active || !v.ExpiresAt.IsZero() || v.Username != "" {
		t.Errorf("deactivated token without an expiry: %+v, want an inactive view, no expiry, no username", v)
	}
}

// TestIntrospectBatch: one statement answers a batch of lookups, each
// with what its own signature and hint call for: a caller expecting an
// access token is not given a refresh token's row, one that gave no hint
// is; the same signature twice is answered twice.
func TestIntrospectBatch(t *testing.T) {
	t.Parallel()
	e := newUnitEnv(t)
	req := e.request("grant-1")
	e.must(e.store.CreateAccessTokenSession(e.ctx, "sig-a", req))
	e.must(e.store.CreateRefreshTokenSession(e.ctx, "sig-r", "sig-a", req))

	for _, tc := range []struct {
		sigs       []string
		accessOnly []bool
		want       []string
	}{
		{[]string{"sig-a", "sig-r", "sig-r", "sig-x", "sig-a"}, []bool{true, true, false, false, false},
			[]string{"access", "", "refresh", "", "access"}},
		{[]string{"sig-r", "sig-a", "sig-x"}, []bool{true, true, true}, []string{"", "access", ""}},
		{[]string{"sig-r"}, []bool{false}, []string{"refresh"}},
	} {
		var got []string
		if n := e.statements(func() {
			var err error
			got, err = e.store.IntrospectBatchForTest(e.ctx, tc.sigs, tc.accessOnly)
			e.must(err)
		}); n != 1 {
			t.Errorf("%v: %d statements, want 1", tc.sigs, n)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%v, access only %v: %q, want %q", tc.sigs, tc.accessOnly, got, tc.want)
		}
	}
}

// TestLookupForIntrospectionConcurrent: many lookups at once, sharing
// statements, each get the answer for their own token and hint.
func TestLookupForIntrospectionConcurrent(t *testing.T) {
	t.Parallel()
	e := newUnitEnv(t)
	e.startCache(e.store)
	const tokens = 20
	for i := range tokens {
		req := e.request(fmt.Sprintf("grant-%d", i))
		req.Session.(*openid.DefaultSession).Subject = fmt.Sprintf("user-%d", i)
		e.must(e.store.CreateAccessTokenSession(e.ctx, fmt.Sprintf("sig-a%d", i), req))
		e.must(e.store.CreateRefreshTokenSession(e.ctx, fmt.Sprintf("sig-r%d", i), fmt.Sprintf("sig-a%d", i), req))
	}
	e.clientName(e.store)

	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 30 {
				i := (w*7 + j) % tokens
				kind := j % 3 // access token, refresh token, unknown
				sig := [3]string{fmt.Sprintf("sig-a%d", i), fmt.Sprintf("sig-r%d", i), fmt.Sprintf("sig-x%d", i)}[kind]
				accessOnly := (w+j)%2 == 0
				ctx := storage.WithReads(e.ctx)
				v, err := e.store.LookupForIntrospection(ctx, sig, sig, accessOnly)
				if err != nil {
					t.Errorf("%s: %v", sig, err)
					return
				}
				switch {
				case kind == 0 && (v == nil || v.Subject != fmt.Sprintf("user-%d", i)):
					t.Errorf("%s: view %+v, want user-%d's access token", sig, v, i)
				case kind > 0 && v != nil:
					t.Errorf("%s: view %+v, want none", sig, v)
				case kind == 1:
					r, err := e.store.GetRefreshTokenSession(ctx, sig, openid.NewDefaultSession())
					if err != nil || r.GetID() != fmt.Sprintf("grant-%d", i) {
						t.Errorf("%s: refresh token %v, %v; want grant-%d", sig, r, err, i)
					}
				}
			}
		}()
	}
	wg.Wait()
}
