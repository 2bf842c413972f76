package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/authz/authz/internal/pgcluster"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func tableExists(t *testing.T, conn *pgx.Conn, table string) bool {
	t.Helper()
	var exists bool
	if err := conn.QueryRow(t.Context(), "SELECT to_regclass($1) IS NOT NULL", table).Scan(&exists); err != nil {
		t.Fatalf("look for table %s: %v", table, err)
	}
	return exists
}

func TestNewDatabaseIsolated(t *testing.T) {
	url1, url2 := NewDatabase(t), NewDatabase(t)
	if url1 == url2 {
		t.Fatalf("NewDatabase returned %s twice", url1)
	}
	db1, db2 := connect(t, url1), connect(t, url2)
	for _, conn := range []*pgx.Conn{db1, db2} {
		if !tableExists(t, conn, "clients") {
			t.Fatalf("%s: table clients missing: not migrated", conn.Config().Database)
		}
	}
	if _, err := db1.Exec(t.Context(), "CREATE TABLE probe (x int); INSERT INTO probe VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if !tableExists(t, db1, "probe") {
		t.Fatal("write to the first database not visible in it")
	}
	if tableExists(t, db2, "probe") {
		t.Fatal("write to the first database visible in the second")
	}
}

func TestNewDatabaseParallel(t *testing.T) {
	for i := range 8 {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			conn := connect(t, NewDatabase(t))
			if !tableExists(t, conn, "clients") {
				t.Fatal("table clients missing: not migrated")
			}
			if _, err := conn.Exec(t.Context(), "INSERT INTO clients (id, token_endpoint_auth_method) VALUES ($1, 'none')", t.Name()); err != nil {
				t.Fatal(err)
			}
			var n int
			if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM clients").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Fatalf("%d clients, want only the one this test wrote", n)
			}
		})
	}
}

func TestWithDatabase(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:p@db.example:5433/postgres?sslmode=require", "postgres://u:p@db.example:5433/x?sslmode=require"},
		{"postgresql://u@/postgres?host=/run/postgresql&dbname=other", "postgresql://u@/x?host=%2Frun%2Fpostgresql"},
		{"host=/run/postgresql dbname=postgres user=u", "host=/run/postgresql dbname=postgres user=u dbname=x"},
	} {
		got := withDatabase(tc.in, "x")
		if got != tc.want {
			t.Errorf("withDatabase(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if cfg, err := pgx.ParseConfig(got); err != nil {
			t.Errorf("pgx.ParseConfig(%q): %v", got, err)
		} else if cfg.Database != "x" {
			t.Errorf("pgx.ParseConfig(%q): database %q, want x", got, cfg.Database)
		}
	}
}

func TestInstallHint(t *testing.T) {
	missing := fmt.Errorf("%w (looked on PATH and in /usr/lib/postgresql/*/bin)", pgcluster.ErrNoBinaries)
	want := "no PostgreSQL server binaries found (looked on PATH and in /usr/lib/postgresql/*/bin); " +
		"install them (Debian: apt-get install -y postgresql) or set AUTHZ_TEST_DATABASE_URL"
	if got := withInstallHint(missing); got.Error() != want || !errors.Is(got, pgcluster.ErrNoBinaries) {
		t.Errorf("withInstallHint = %v, want %s", got, want)
	}
	other := errors.New("initdb failed")
	if got := withInstallHint(other); got != other {
		t.Errorf("withInstallHint(other) = %v, want it unchanged", got)
	}
}

// TestPooler: with AUTHZ_TEST_POOLER=pgbouncer a test's URL leads to
// PgBouncer (whose own admin database, "pgbouncer", answers there) in
// pgx's exec mode, and DirectURL reaches the same database without it.
// Without the variable DirectURL is the URL itself.
func TestPooler(t *testing.T) {
	url := NewDatabase(t)
	direct := DirectURL(url)
	if os.Getenv(envPooler) == "" {
		if direct != url {
			t.Fatalf("without a pooler DirectURL(%s) = %s", url, direct)
		}
		return
	}
	if direct == url {
		t.Fatalf("behind a pooler DirectURL returned the pooled URL %s", url)
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DefaultQueryExecMode != pgx.QueryExecModeExec {
		t.Errorf("the pooled URL's exec mode is %v, want exec", cfg.DefaultQueryExecMode)
	}
	admin, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	admin.Database = "pgbouncer"
	admin.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	conn, err := pgx.ConnectConfig(t.Context(), admin)
	if err != nil {
		t.Fatalf("the pooled URL does not lead to PgBouncer: %v", err)
	}
	defer conn.Close(context.Background())
	var pooled, direct1 string
	if err := connect(t, url).QueryRow(t.Context(), "SELECT current_database()").Scan(&pooled); err != nil {
		t.Fatal(err)
	}
	if err := connect(t, direct).QueryRow(t.Context(), "SELECT current_database()").Scan(&direct1); err != nil {
		t.Fatal(err)
	}
	if pooled != direct1 || pooled != cfg.Database {
		t.Errorf("pooled URL reaches %s, direct %s, want both %s", pooled, direct1, cfg.Database)
	}
}
