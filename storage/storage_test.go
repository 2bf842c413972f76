package storage_test

import (
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authz/authz/storage"
	"github.com/authz/authz/storage/pgtest"
	"github.com/authz/authz/storage/storagetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// TestConformance runs the storage conformance suite against the PostgreSQL
// store, each subtest on a database of its own.
func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, now func() time.Time) *storage.Store {
		pool, err := pgxpool.New(t.Context(), pgtest.NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		return storage.New(pool, storage.WithClock(now))
	})
}

// TestMigrateIdempotent checks that migrating a database that is up to date
// applies nothing and that every migration reports as applied.
func TestMigrateIdempotent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(ctx) })

	before, err := storage.MigrationsStatus(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	applied, err := storage.Migrate(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != 0 {
		t.Errorf("Migrate on an up-to-date database applied %+v, want nothing", applied)
	}
	status, err := storage.MigrationsStatus(ctx, conn)
	if err != nil {
		t.Fatal(err)
	}
	if len(status) == 0 {
		t.Fatal("MigrationsStatus lists no migrations")
	}
	for i, m := range status {
		if !m.Applied {
			t.Errorf("migration %d %s is not applied", m.Sequence, m.Name)
		}
		if i >= len(before) || before[i] != m {
			t.Errorf("migration %d %s changed from %+v to %+v", m.Sequence, m.Name, before, m)
		}
	}
}
