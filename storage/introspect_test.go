package storage_test

import (
	"errors"
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
