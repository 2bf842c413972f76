package pgtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
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

func TestPersistentDataDir(t *testing.T) {
	// As root the server runs as 'postgres', which cannot enter the 0700
	// directories t.TempDir makes; so the data lives in one it can enter.
	parent, err := os.MkdirTemp("", "pgtest-persistent-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(parent, "nested", "pg")
	start := func() *Cluster {
		t.Helper()
		c, err := Start(t.Context(), Options{DataDir: dataDir, Logf: t.Logf})
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		t.Cleanup(func() { c.Stop() })
		return c
	}

	c := start()
	conn := connect(t, c.URL("postgres"))
	var listen string
	if err := conn.QueryRow(t.Context(), "SHOW listen_addresses").Scan(&listen); err != nil {
		t.Fatal(err)
	}
	if listen != "" {
		t.Errorf("listen_addresses = %q, want none: the cluster must not listen on TCP", listen)
	}
	if fi, err := os.Stat(c.runDir); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o700 {
		t.Errorf("socket directory %s has mode %v, want 0700", c.runDir, fi.Mode().Perm())
	}
	if _, err := conn.Exec(t.Context(), "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')"); err != nil {
		t.Fatal(err)
	}
	conn.Close(t.Context())
	pid, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := os.Stat(c.runDir); !os.IsNotExist(err) {
		t.Errorf("socket directory %s still there after Stop (%v)", c.runDir, err)
	}
	leaveStalePID(t, dataDir, pid)

	c = start()
	conn = connect(t, c.URL("postgres"))
	var v string
	if err := conn.QueryRow(t.Context(), "SELECT v FROM kept").Scan(&v); err != nil {
		t.Fatalf("read back after restart: %v", err)
	}
	if v != "still here" {
		t.Fatalf("read back %q", v)
	}
}

// leaveStalePID puts back the postmaster.pid a server had, naming a process
// that is gone, as after a crash.
func leaveStalePID(t *testing.T, dataDir string, pidFile []byte) {
	t.Helper()
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(pidFile), "\n")
	path := filepath.Join(dataDir, "postmaster.pid")
	if err := os.WriteFile(path, fmt.Appendf(nil, "%d\n%s", gone.Process.Pid, rest), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if err := os.Chown(path, int(st.Uid), int(st.Gid)); err != nil {
		t.Fatal(err)
	}
}

func TestFindBinaries(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // nothing on PATH

	empty := t.TempDir()
	_, err := findBinaries(empty)
	want := "no PostgreSQL server binaries found (looked on PATH and in " + empty + "/*/bin); " +
		"install them (Debian: apt-get install -y postgresql) or set AUTHZ_TEST_DATABASE_URL"
	if err == nil || err.Error() != want {
		t.Fatalf("findBinaries(empty) error = %v, want %s", err, want)
	}

	root := t.TempDir()
	for _, v := range []string{"9.6", "15", "10", "16", "common"} {
		dir := filepath.Join(root, v, "bin")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if v == "16" {
			continue // a leftover directory without binaries
		}
		for _, name := range []string{"initdb", "postgres"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := findBinaries(root)
	if want := filepath.Join(root, "15", "bin"); err != nil || got != want {
		t.Fatalf("findBinaries = %q, %v; want %q", got, err, want)
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
