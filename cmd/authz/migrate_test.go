package main

import (
	"io/fs"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/authz/authz/internal/pgcluster"
	"github.com/authz/authz/internal/pgcluster/pgclustertest"
	"github.com/authz/authz/migrations"
)

// migrationNames are the embedded migrations' names, in order.
func migrationNames(t *testing.T) []string {
	t.Helper()
	files, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no migrations embedded: %v", err)
	}
	for i, f := range files {
		files[i] = strings.TrimSuffix(f, ".sql")
	}
	return files
}

// TestConcurrentMigrateThroughPgBouncer runs three `authz migrate` at
// once on an empty database through a PgBouncer in transaction pooling
// mode, without AUTHZ_MIGRATE_DATABASE_URL: migrations hold no session
// lock, so the pooler is no obstacle, and between them the three apply
// each migration exactly once. With AUTHZ_TEST_ISOLATION the database
// runs at that isolation level, where the losers retry.
func TestConcurrentMigrateThroughPgBouncer(t *testing.T) {
	t.Parallel()
	cluster := pgclustertest.Cluster(t, pgcluster.Options{})
	bouncer := pgclustertest.PgBouncer(t, cluster)
	db := pgclustertest.CreateDatabase(t, cluster, "authz")
	if level := os.Getenv("AUTHZ_TEST_ISOLATION"); level != "" {
		pgclustertest.Exec(t, cluster.URL("postgres"),
			"ALTER DATABASE "+pgx.Identifier{db}.Sanitize()+" SET default_transaction_isolation = '"+level+"'")
	}
	e := env{
		"AUTHZ_DATABASE_URL":    bouncer.URL(db),
		"AUTHZ_DATABASE_POOLER": "transaction",
	}
	names := migrationNames(t)
	version := strconv.Itoa(len(names))

	const runs = 3
	outs := make([]string, runs)
	errs := make([]error, runs)
	var wg sync.WaitGroup
	for i := range runs {
		wg.Go(func() { outs[i], _, errs[i] = runCLI(t, e, "", "migrate") })
	}
	wg.Wait()

	times := make(map[string]int)
	for i, out := range outs {
		if errs[i] != nil {
			t.Errorf("authz migrate through PgBouncer: %v\n%s", errs[i], out)
			continue
		}
		applied := regexp.MustCompile(`(?m)^applied (\S+)$`).FindAllStringSubmatch(out, -1)
		for _, m := range applied {
			times[m[1]]++
		}
		last := "schema is up to date (version " + version + ")\n"
		if len(applied) > 0 {
			last = "schema is now at version " + version + "\n"
		}
		if !strings.HasSuffix(out, last) {
			t.Errorf("authz migrate printed:\n%s\nwant it to end with %q", out, last)
		}
	}
	for _, name := range names {
		if times[name] != 1 {
			t.Errorf("%s applied %d times by %d concurrent `authz migrate`, want once", name, times[name], runs)
		}
	}

	out := mustRun(t, e, "", "migrate", "status")
	for _, name := range names {
		if !regexp.MustCompile(`(?m)^` + name + `\s+applied$`).MatchString(out) {
			t.Errorf("migrate status through PgBouncer:\n%s\nwant %s applied", out, name)
		}
	}
}

// TestMigrateFailureAppliesNothing: when a migration fails, `authz
// migrate` names it and says that nothing was applied, which is true: the
// migrations before it are pending still.
func TestMigrateFailureAppliesNothing(t *testing.T) {
	t.Parallel()
	e := env{"AUTHZ_DATABASE_URL": emptyDatabase(t)}
	names := migrationNames(t)
	// The second migration creates signing_keys; having it already makes
	// the second fail after the first ran.
	if !strings.HasPrefix(names[1], "002_signing_keys") {
		t.Fatalf("second migration is %s, want 002_signing_keys", names[1])
	}
	conn, err := pgx.Connect(t.Context(), e["AUTHZ_DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(t.Context(), "CREATE TABLE signing_keys (id int)")
	conn.Close(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	wantError(t, e, "", "migration "+names[1]+" failed, so none was applied: ", false, "migrate")
	out := mustRun(t, e, "", "migrate", "status")
	for _, name := range names {
		if !regexp.MustCompile(`(?m)^` + name + `\s+pending$`).MatchString(out) {
			t.Errorf("migrate status after a failed migrate:\n%s\nwant %s pending", out, name)
		}
	}
}
