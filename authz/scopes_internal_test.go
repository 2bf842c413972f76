package authz

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/storage"
)

// TestScopeCatalogueFromMemory: while the database cannot be read, the
// catalogue answers from the copy it read last, logging the failure once
// per run of failures; a catalogue never read fails with
// storage.ErrUnavailable, and discovery answers 503.
func TestScopeCatalogueFromMemory(t *testing.T) {
	t.Parallel()
	e := newKeyEnv(t)
	ctx := t.Context()
	desc := "Read your contacts"
	if _, _, err := SetScope(ctx, e.store, "contacts", ScopeChange{Description: &desc}); err != nil {
		t.Fatal(err)
	}
	pool, err := storage.NewPool(ctx, e.pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	c := newScopeCatalogue(storage.New(pool), e.clock.Now, slog.New(slog.NewTextHandler(&logs, nil)))
	set, err := c.get(ctx)
	if err != nil || !slices.Equal(set.supported(), []string{"openid", "profile", "email", "offline_access", "contacts"}) {
		t.Fatalf("first read: %v, %v", set, err)
	}

	pool.Close()
	for i, advance := range []time.Duration{scopeCacheTTL, 0, scopeRetryInterval, scopeCacheTTL} {
		e.clock.Advance(advance)
		got, err := c.get(ctx)
		if err != nil || got != set {
			t.Errorf("step %d with the database gone: %v, %v; want the copy in memory", i, got, err)
		}
	}
	if n := strings.Count(logs.String(), "level=WARN msg=\"cannot read the scope catalogue"); n != 1 {
		t.Errorf("%d warnings, want 1 for the run of failures:\n%s", n, logs.String())
	}
	views := set.describe([]string{"contacts", "openid"})
	if len(views) != 2 || views[0].Description != desc || views[1].Description != "Confirm your identity" {
		t.Errorf("describe from memory = %+v", views)
	}

	// Never read: an error the request's 503 is made of.
	never := newScopeCatalogue(storage.New(pool), e.clock.Now, nil)
	if _, err := never.get(ctx); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("a catalogue never read, database gone: %v, want storage.ErrUnavailable", err)
	}
	keys := e.ensured(keySecretOld)
	h := &Handler{cfg: Config{Issuer: "https://id.example.com", Now: e.clock.Now}, keys: keys, scopes: never, log: slog.New(slog.DiscardHandler)}
	rec := httptest.NewRecorder()
	h.discovery(rec, httptest.NewRequest(http.MethodGet, "/.well-known/openid-configuration", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "temporarily_unavailable") || rec.Header().Get("Retry-After") == "" {
		t.Errorf("discovery with the catalogue never read: %d %s, want 503 temporarily_unavailable", rec.Code, rec.Body)
	}
}
