package storage_test

import (
	"errors"
	"testing"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/authz/authz/storage"
)

// TestDeleteClientWithoutForeignKeys: token rows name their client
// without a foreign key (migration 019). Deleting a client still deletes
// its codes and tokens, and nobody else's; a token that a grant racing the
// delete commits afterwards belongs to no client and reads as absent; and
// the id cannot be taken again until no such grant can still commit, when
// what the old client left is removed first, so no token outlives its
// client into a new one of the same id.
func TestDeleteClientWithoutForeignKeys(t *testing.T) {
	t.Parallel()
	e := newUnitEnv(t)
	e.startCache(e.store)
	other := &storage.Client{ID: "other", SecretHash: "x", RedirectURIs: []string{"https://other.example/cb"},
		GrantTypes: []string{"authorization_code"}, ResponseTypes: []string{"code"}, Scopes: []string{"openid"},
		TokenEndpointAuthMethod: "client_secret_basic"}
	e.must(e.store.CreateClient(e.ctx, other))

	issue := func(c *storage.Client, grant string) {
		r := e.request(grant)
		r.Client = c
		e.must(e.store.CreateAuthorizeCodeSession(e.ctx, "code-"+grant, r))
		e.must(e.store.CreatePKCERequestSession(e.ctx, "code-"+grant, r))
		e.must(e.store.CreateOpenIDConnectSession(e.ctx, "code-"+grant, r))
		e.must(e.store.CreateAccessTokenSession(e.ctx, "at-"+grant, r))
		e.must(e.store.CreateRefreshTokenSession(e.ctx, "rt-"+grant, "at-"+grant, r))
	}
	issue(e.client, "mine")
	issue(other, "theirs")
	rows := func(client string) int {
		t.Helper()
		n := 0
		for _, table := range []string{"authorization_codes", "pkce_requests", "oidc_sessions", "access_tokens", "refresh_tokens"} {
			n += e.count(table+` WHERE client_id = $1`, client)
		}
		return n
	}
	if rows("rp") != 5 || rows("other") != 5 {
		t.Fatalf("before the delete: %d rows of rp, %d of other; want 5 each", rows("rp"), rows("other"))
	}

	// A grant that read the client before the delete commits after it.
	racing, err := e.store.BeginTX(e.ctx)
	e.must(err)
	late := e.request("late")
	e.must(e.store.CreateAccessTokenSession(racing, "at-late", late))

	e.must(e.store.DeleteClient(e.ctx, "rp"))
	if n := rows("rp"); n != 0 {
		t.Errorf("after the delete: %d rows of rp, want 0", n)
	}
	if n := rows("other"); n != 5 {
		t.Errorf("after deleting rp: %d rows of other, want 5", n)
	}
	if err := e.store.DeleteClient(e.ctx, "rp"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("deleting it again: %v, want not found", err)
	}

	e.must(e.store.Commit(racing))
	if n := e.count(`access_tokens WHERE signature = 'at-late'`); n != 1 {
		t.Fatalf("the racing grant's token: %d rows, want 1 (a foreign key would have refused it)", n)
	}
	if _, err := e.store.GetAccessTokenSession(e.ctx, "at-late", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("a token of a deleted client: %v, want not found", err)
	}
	if v, err := e.store.LookupForIntrospection(storage.WithReads(e.ctx), "at-late", "at-late", true); err != nil || v != nil {
		t.Errorf("introspecting a token of a deleted client: %+v, %v; want nothing", v, err)
	}

	// The id is not free again while a grant may still commit for it.
	again := *e.client
	err = e.store.CreateClient(e.ctx, &again)
	if !errors.Is(err, storage.ErrRecentlyDeleted) || !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("creating rp again at once: %v, want ErrRecentlyDeleted", err)
	}
	again = *e.client
	if _, err := e.store.UpsertMetadataDocumentClient(e.ctx, &again); !errors.Is(err, storage.ErrRecentlyDeleted) {
		t.Fatalf("storing a document client as rp at once: %v, want ErrRecentlyDeleted", err)
	}

	// Once it is, the new client starts with nothing of the old one's.
	e.must(e.store.ExecForTest(e.ctx, `UPDATE deleted_clients SET deleted_at = now() - $1 * interval '1 second' WHERE id = 'rp'`,
		int64(storage.ClientIDReuseDelay.Seconds())+1))
	again = *e.client
	e.must(e.store.CreateClient(e.ctx, &again))
	if n := rows("rp"); n != 0 {
		t.Errorf("the new rp inherited %d rows of the old one", n)
	}
	if n := e.count(`deleted_clients WHERE id = 'rp'`); n != 0 {
		t.Errorf("the tombstone outlived the new client: %d", n)
	}
	if n := rows("other"); n != 5 {
		t.Errorf("other lost rows: %d, want 5", n)
	}
	// A client never deleted is created with no tombstone to clear.
	fresh := *other
	fresh.ID = "fresh"
	e.must(e.store.CreateClient(e.ctx, &fresh))
}
