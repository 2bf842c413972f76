package storage_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"

	"github.com/authz/authz/migrations"
	"github.com/authz/authz/storage"
	"github.com/authz/authz/storage/pgtest"
)

// migrators is how many migrators race in these tests: the three
// concurrent `authz migrate`, and one more.
const migrators = 4

// counted are migrations whose every run leaves a row in migration_runs
// (which the test creates), so a migration applied twice shows as two rows
// even where the SQL would not fail the second time.
var counted = fstest.MapFS{
	"001_one.sql":   {Data: []byte("INSERT INTO migration_runs (seq) VALUES (1);")},
	"002_two.sql":   {Data: []byte("INSERT INTO migration_runs (seq) VALUES (2);")},
	"003_three.sql": {Data: []byte("INSERT INTO migration_runs (seq) VALUES (3);")},
}

const createRuns = "CREATE TABLE migration_runs (seq int NOT NULL)"

// emptyDatabase is a test database with nothing in it: pgtest's copy of
// the migrated template with its schema dropped, so that it keeps the
// isolation level AUTHZ_TEST_ISOLATION gives test databases.
func emptyDatabase(t *testing.T) string {
	t.Helper()
	url := pgtest.NewDatabase(t)
	execOn(t, connectTo(t, url), "DROP SCHEMA public CASCADE; CREATE SCHEMA public")
	return url
}

// connectTo opens a connection closed when the test ends.
func connectTo(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func execOn(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(t.Context(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// migrateFunc is storage.Migrate or a migration of other files.
type migrateFunc func(ctx context.Context, conn *pgx.Conn) ([]storage.MigrationStatus, error)

func migrateFiles(fsys fs.FS) migrateFunc {
	return func(ctx context.Context, conn *pgx.Conn) ([]storage.MigrationStatus, error) {
		return storage.MigrateFSForTest(ctx, conn, fsys)
	}
}

type migrateResult struct {
	applied []storage.MigrationStatus
	err     error
}

// startMigrators starts n migrators on url at once, each on a connection
// of its own, and returns where their results arrive.
func startMigrators(t *testing.T, url string, n int, run migrateFunc) <-chan migrateResult {
	t.Helper()
	conns := make([]*pgx.Conn, n)
	for i := range conns {
		conns[i] = connectTo(t, url)
	}
	start := make(chan struct{})
	results := make(chan migrateResult, n)
	var wg sync.WaitGroup
	for _, conn := range conns {
		wg.Go(func() {
			<-start
			applied, err := run(t.Context(), conn)
			results <- migrateResult{applied, err}
		})
	}
	close(start)
	t.Cleanup(wg.Wait)
	return results
}

// wantEachOnce collects n results and checks that they succeeded and that
// together they applied each of the migrations 1..total exactly once.
func wantEachOnce(t *testing.T, results <-chan migrateResult, n, total int) {
	t.Helper()
	times := make(map[int32]int)
	for range n {
		r := <-results
		if r.err != nil {
			t.Errorf("Migrate: %v", r.err)
		}
		for _, m := range r.applied {
			times[m.Sequence]++
		}
	}
	for seq := int32(1); seq <= int32(total); seq++ {
		if times[seq] != 1 {
			t.Errorf("migration %d reported applied %d times by %d concurrent migrators, want once", seq, times[seq], n)
		}
	}
	if len(times) != total {
		t.Errorf("migrations reported applied: %v, want 1..%d once each", times, total)
	}
}

// wantVersion checks the recorded schema version and that it is one row.
func wantVersion(t *testing.T, conn *pgx.Conn, want int) {
	t.Helper()
	rows, _ := conn.Query(t.Context(), "SELECT version FROM schema_version")
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	if len(versions) != 1 || int(versions[0]) != want {
		t.Errorf("schema_version holds %v, want one row, %d", versions, want)
	}
}

// wantRuns checks that each counted migration left exactly the rows in want.
func wantRuns(t *testing.T, conn *pgx.Conn, want map[int]int) {
	t.Helper()
	got := make(map[int]int)
	rows, _ := conn.Query(t.Context(), "SELECT seq, count(*)::int FROM migration_runs GROUP BY seq")
	var seq, n int
	if _, err := pgx.ForEachRow(rows, []any{&seq, &n}, func() error { got[seq] = n; return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("migration runs per migration: %v, want %v", got, want)
	}
}

func embeddedCount(t *testing.T) int {
	t.Helper()
	files, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no migrations embedded: %v", err)
	}
	return len(files)
}

// TestMigrateConcurrently: migrators started together on an empty
// database, which must also create the version table without tripping
// over each other, apply each migration exactly once between them, at any
// isolation level (those that lose a serialization race run again).
func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		url := emptyDatabase(t)
		total := embeddedCount(t)
		wantEachOnce(t, startMigrators(t, url, migrators, storage.Migrate), migrators, total)
		conn := connectTo(t, url)
		wantVersion(t, conn, total)
		status, err := storage.MigrationsStatus(t.Context(), conn)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range status {
			if !m.Applied {
				t.Errorf("migration %s is not applied", m.Name)
			}
		}
	})
	t.Run("counted", func(t *testing.T) {
		t.Parallel()
		url := emptyDatabase(t)
		conn := connectTo(t, url)
		execOn(t, conn, createRuns)
		wantEachOnce(t, startMigrators(t, url, migrators, migrateFiles(counted)), migrators, len(counted))
		wantVersion(t, conn, len(counted))
		wantRuns(t, conn, map[int]int{1: 1, 2: 1, 3: 1})
	})
}

// TestMigrateLocksTheVersionRow: migrators queue on the version table's
// row, not on an advisory lock (which neither a transaction pooler nor
// distributed SQL engines offer): while the test holds the row, every
// migrator waits, no advisory lock exists, and once the row is free each
// migration is applied once.
func TestMigrateLocksTheVersionRow(t *testing.T) {
	t.Parallel()
	url := emptyDatabase(t)
	// The version table as tern leaves it, nothing applied yet.
	holder := connectTo(t, url)
	execOn(t, holder, "CREATE TABLE schema_version (version int4 NOT NULL); INSERT INTO schema_version VALUES (0)")
	tx, err := holder.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(t.Context(), "SELECT version FROM schema_version FOR UPDATE"); err != nil {
		t.Fatal(err)
	}

	const waiters = 3
	results := startMigrators(t, url, waiters, storage.Migrate)
	watch := connectTo(t, url)
	waitFor(t, fmt.Sprintf("%d migrators to wait on a lock", waiters), func() bool {
		if len(results) > 0 {
			r := <-results
			t.Fatalf("a migrator finished while the version row was locked: applied %v, error %v", r.applied, r.err)
		}
		var waiting int
		err := watch.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'`).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		return waiting == waiters
	})
	var advisory int
	err = watch.QueryRow(t.Context(), `SELECT count(*) FROM pg_locks
		WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&advisory)
	if err != nil {
		t.Fatal(err)
	}
	if advisory != 0 {
		t.Errorf("%d advisory locks held or awaited while migrators wait, want none", advisory)
	}

	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	wantEachOnce(t, results, waiters, embeddedCount(t))
	wantVersion(t, watch, embeddedCount(t))
}

// TestMigrateFailureAppliesNothing: pending migrations run in one
// transaction, so when one fails the ones before it are not applied
// either, the error names it, and the next run starts from the same
// version.
func TestMigrateFailureAppliesNothing(t *testing.T) {
	t.Parallel()
	url := emptyDatabase(t)
	conn := connectTo(t, url)
	execOn(t, conn, createRuns)
	broken := fstest.MapFS{
		"001_one.sql":   counted["001_one.sql"],
		"002_two.sql":   {Data: []byte("INSERT INTO migration_runs (seq) VALUES (2); SELECT 1/0;")},
		"003_three.sql": counted["003_three.sql"],
	}
	applied, err := storage.MigrateFSForTest(t.Context(), conn, broken)
	var failed *storage.MigrationError
	if !errors.As(err, &failed) || failed.Migration.Sequence != 2 || failed.Migration.Name != "002_two.sql" {
		t.Fatalf("Migrate with a failing 002 = %v, %v; want a MigrationError for 002_two.sql", applied, err)
	}
	if applied != nil {
		t.Errorf("a failed run reported %v applied, want none", applied)
	}
	wantRuns(t, conn, map[int]int{})
	wantVersion(t, conn, 0)

	applied, err = storage.MigrateFSForTest(t.Context(), conn, counted)
	if err != nil || len(applied) != 3 {
		t.Fatalf("Migrate after the fix = %v, %v; want 3 applied", applied, err)
	}
	wantRuns(t, conn, map[int]int{1: 1, 2: 1, 3: 1})
	wantVersion(t, conn, 3)
}

// TestMigrateContinuesTernVersion: a database that tern's own migrator
// brought part of the way (an earlier release) is carried on from the
// version tern recorded.
func TestMigrateContinuesTernVersion(t *testing.T) {
	t.Parallel()
	url := emptyDatabase(t)
	conn := connectTo(t, url)
	m, err := migrate.NewMigrator(t.Context(), conn, "schema_version")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.LoadMigrations(migrations.FS); err != nil {
		t.Fatal(err)
	}
	if err := m.MigrateTo(t.Context(), 3); err != nil {
		t.Fatal(err)
	}
	applied, err := storage.Migrate(t.Context(), conn)
	if err != nil {
		t.Fatal(err)
	}
	total := embeddedCount(t)
	if len(applied) != total-3 || applied[0].Sequence != 4 {
		t.Errorf("Migrate after tern's 3 applied %+v, want 4..%d", applied, total)
	}
	wantVersion(t, conn, total)
}

// TestMigrationsStatusChangesNothing: on a database never migrated every
// migration is pending, and asking creates nothing (the version table
// included).
func TestMigrationsStatusChangesNothing(t *testing.T) {
	t.Parallel()
	conn := connectTo(t, emptyDatabase(t))
	status, err := storage.MigrationsStatus(t.Context(), conn)
	if err != nil {
		t.Fatal(err)
	}
	if len(status) != embeddedCount(t) {
		t.Errorf("MigrationsStatus lists %d migrations, want %d", len(status), embeddedCount(t))
	}
	for _, m := range status {
		if m.Applied {
			t.Errorf("migration %s is applied on an empty database", m.Name)
		}
	}
	var exists bool
	if err := conn.QueryRow(t.Context(), "SELECT to_regclass('schema_version') IS NOT NULL").Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Error("MigrationsStatus created schema_version")
	}
}
