package storage_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authz/authz/storage"
)

func ptr[T any](v T) *T { return &v }

// TestScopesCRUD: the catalogue's create, partial change, replace, list
// (paged, in byte order), get and delete, with not-found where due.
func TestScopesCRUD(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := throttleStore(t, clock, 4)
	ctx := t.Context()

	if _, err := s.Scope(ctx, "contacts:read"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Scope of an empty catalogue: %v, want ErrNotFound", err)
	}
	// Without a description only an existing scope can change.
	if _, _, err := s.SetScope(ctx, "contacts:read", storage.ScopeUpdate{Discoverable: ptr(false)}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("SetScope without a description of a new scope: %v, want ErrNotFound", err)
	}

	created := clock.Now()
	sc, isNew, err := s.SetScope(ctx, "contacts:read", storage.ScopeUpdate{Description: ptr("Read your contacts")})
	if err != nil || !isNew {
		t.Fatalf("SetScope (new) = %+v, %v, %v", sc, isNew, err)
	}
	want := storage.Scope{Name: "contacts:read", Description: "Read your contacts", ShowOnConsent: true, Discoverable: true,
		CreatedAt: created, UpdatedAt: created}
	if *sc != want {
		t.Errorf("new scope = %+v\nwant %+v", *sc, want)
	}

	clock.Advance(time.Minute)
	sc, isNew, err = s.SetScope(ctx, "contacts:read", storage.ScopeUpdate{ShowOnConsent: ptr(false)})
	if err != nil || isNew {
		t.Fatalf("SetScope (flag only) = %+v, %v, %v", sc, isNew, err)
	}
	want.ShowOnConsent, want.UpdatedAt = false, clock.Now()
	if *sc != want {
		t.Errorf("after changing a flag = %+v\nwant %+v (the description kept)", *sc, want)
	}
	sc, isNew, err = s.SetScope(ctx, "contacts:read", storage.ScopeUpdate{Description: ptr("Read and export your contacts")})
	if err != nil || isNew {
		t.Fatalf("SetScope (description) = %+v, %v, %v", sc, isNew, err)
	}
	want.Description = "Read and export your contacts"
	if *sc != want {
		t.Errorf("after a new description = %+v\nwant %+v (the flags kept)", *sc, want)
	}
	if got, err := s.Scope(ctx, "contacts:read"); err != nil || *got != want {
		t.Errorf("Scope = %+v, %v\nwant %+v", got, err, want)
	}

	for _, name := range []string{"b", "a/x", "Z", "openid"} {
		if _, _, err := s.SetScope(ctx, name, storage.ScopeUpdate{Description: ptr("d")}); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	for after := ""; ; {
		page, err := s.ListScopes(ctx, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, sc := range page {
			names = append(names, sc.Name)
		}
		if len(page) < 2 {
			break
		}
		after = page[len(page)-1].Name
	}
	if got, want := strings.Join(names, " "), "Z a/x b contacts:read openid"; got != want {
		t.Errorf("ListScopes in pages of 2: %s, want %s", got, want)
	}

	if err := s.DeleteScope(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteScope(ctx, "b"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("deleting a deleted scope: %v, want ErrNotFound", err)
	}
	if _, err := s.Scope(ctx, "b"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Scope of a deleted scope: %v, want ErrNotFound", err)
	}
}

// TestScopesSchemaRefuses: the table itself refuses what the HTTP layer
// validates, so a scope written some other way cannot break the pages.
func TestScopesSchemaRefuses(t *testing.T) {
	t.Parallel()
	s := throttleStore(t, newFakeClock(), 4)
	for _, tc := range []struct{ name, description string }{
		{"", "d"},
		{"two words", "d"},
		{`quote"d`, "d"},
		{`back\slash`, "d"},
		{"caf\u00e9", "d"},
		{strings.Repeat("a", 129), "d"},
		{"ok", ""},
		{"ok", strings.Repeat("x", 201)},
	} {
		if _, _, err := s.SetScope(t.Context(), tc.name, storage.ScopeUpdate{Description: &tc.description}); err == nil {
			t.Errorf("SetScope(%q, description of %d characters) succeeded, want the schema to refuse it", tc.name, len(tc.description))
		}
	}
	for _, name := range []string{strings.Repeat("a", 128), "!#[]~"} {
		if _, _, err := s.SetScope(t.Context(), name, storage.ScopeUpdate{Description: ptr(strings.Repeat("é", 200))}); err != nil {
			t.Errorf("SetScope(%q): %v, want it accepted", name, err)
		}
	}
}

// TestScopesConcurrentSet: two changes of different fields at once both
// land, and exactly one call reports the scope created.
func TestScopesConcurrentSet(t *testing.T) {
	t.Parallel()
	s := throttleStore(t, newFakeClock(), 8)
	ctx := t.Context()
	const n = 8
	var wg sync.WaitGroup
	createdCount := make(chan bool, n)
	for range n {
		wg.Go(func() {
			_, c, err := s.SetScope(ctx, "race", storage.ScopeUpdate{Description: ptr("Race")})
			if err != nil {
				t.Error(err)
			}
			createdCount <- c
		})
	}
	wg.Wait()
	close(createdCount)
	created := 0
	for c := range createdCount {
		if c {
			created++
		}
	}
	if created != 1 {
		t.Errorf("%d of %d concurrent SetScope calls reported the scope created, want 1", created, n)
	}

	wg.Go(func() {
		if _, _, err := s.SetScope(ctx, "race", storage.ScopeUpdate{ShowOnConsent: ptr(false)}); err != nil {
			t.Error(err)
		}
	})
	wg.Go(func() {
		if _, _, err := s.SetScope(ctx, "race", storage.ScopeUpdate{Discoverable: ptr(false)}); err != nil {
			t.Error(err)
		}
	})
	wg.Wait()
	if sc, err := s.Scope(ctx, "race"); err != nil || sc.ShowOnConsent || sc.Discoverable || sc.Description != "Race" {
		t.Errorf("after two concurrent changes: %+v, %v; want both applied", sc, err)
	}
}
