package storage_test

import (
	"errors"
	"testing"

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
	e.must(e.store.CreateAccessTokenSession(e.ctx, "sig-a", req))
	e.must(e.store.CreateRefreshTokenSession(e.ctx, "sig-r", "sig-a", req))
	e.clientName(e.store) // the client in the cache, as on a running server

	var v *storage.AccessTokenView
	if n := e.statements(func() {
		var err error
		v, err = e.store.LookupForIntrospection(storage.WithReads(e.ctx), "sig-a", "sig-a")
		e.must(err)
	}); n != 1 {
		t.Errorf("access token: %d statements, want 1", n)
	}
	if v == nil || !v.Active || v.Client.ID != e.client.ID || len(v.GrantedScopes) != 1 || v.GrantedScopes[0] != "openid" ||
		len(v.GrantedAudience) != 1 || v.GrantedAudience[0] != "https://api.example" || len(v.Session) == 0 {
		t.Fatalf("access token view: %+v", v)
	}

	ctx := storage.WithReads(e.ctx)
	if n := e.statements(func() {
		v, err := e.store.LookupForIntrospection(ctx, "sig-r", "sig-r")
		e.must(err)
		if v != nil {
			t.Errorf("a refresh token came back as an access token view")
		}
		if _, err := e.store.GetAccessTokenSession(ctx, "sig-r", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
			t.Errorf("refresh token as access token: %v, want not found", err)
		}
		r, err := e.store.GetRefreshTokenSession(ctx, "sig-r", openid.NewDefaultSession())
		e.must(err)
		if r.GetID() != "grant-1" {
			t.Errorf("refresh token's grant %q", r.GetID())
		}
	}); n != 1 {
		t.Errorf("refresh token: %d statements, want 1", n)
	}

	ctx = storage.WithReads(e.ctx)
	if n := e.statements(func() {
		v, err := e.store.LookupForIntrospection(ctx, "sig-unknown", "sig-unknown")
		e.must(err)
		_, errA := e.store.GetAccessTokenSession(ctx, "sig-unknown", openid.NewDefaultSession())
		_, errR := e.store.GetRefreshTokenSession(ctx, "sig-unknown", openid.NewDefaultSession())
		if v != nil || !errors.Is(errA, fosite.ErrNotFound) || !errors.Is(errR, fosite.ErrNotFound) {
			t.Errorf("unknown token: view %v, access %v, refresh %v", v, errA, errR)
		}
	}); n != 1 {
		t.Errorf("unknown token: %d statements, want 1", n)
	}

	// Revoked: the rows are gone.
	e.must(e.store.RevokeAccessToken(e.ctx, "grant-1"))
	if v, err := e.store.LookupForIntrospection(storage.WithReads(e.ctx), "sig-a", "sig-a"); err != nil || v != nil {
		t.Errorf("revoked access token: %+v, %v; want no view", v, err)
	}
	// A row marked inactive comes back as such.
	e.must(e.store.CreateAccessTokenSession(e.ctx, "sig-b", e.request("grant-2")))
	e.must(e.store.ExecForTest(e.ctx, `UPDATE access_tokens SET active = false WHERE signature = $1`, "sig-b"))
	v, err := e.store.LookupForIntrospection(storage.WithReads(e.ctx), "sig-b", "sig-b")
	e.must(err)
	if v == nil || v.Active {
		t.Errorf("deactivated token: %+v, want an inactive view", v)
	}
}
