package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5"
)

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
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
	want := "no PostgreSQL server binaries found (looked on PATH and in " + empty + "/*/bin)"
	if err == nil || err.Error() != want || !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("findBinaries(empty) error = %v, want %s wrapping ErrNoBinaries", err, want)
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

func TestCheckReachable(t *testing.T) {
	mkdir := func(mode os.FileMode) string {
		dir, err := os.MkdirTemp("", "pgcluster-reach-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	open, closed := mkdir(0o755), mkdir(0o700)
	dangling := filepath.Join(open, "link")
	if err := os.Symlink(filepath.Join(open, "gone", "pg"), dangling); err != nil {
		t.Fatal(err)
	}
	throughLink := filepath.Join(open, "to-closed")
	if err := os.Symlink(closed, throughLink); err != nil {
		t.Fatal(err)
	}

	// dir itself need not exist.
	if err := CheckReachable(filepath.Join(open, "pg")); err != nil {
		t.Errorf("under a 0755 directory: %v", err)
	}
	if err := CheckReachable(dangling); err == nil {
		t.Error("a dangling link: no error")
	}
	for _, dir := range []string{filepath.Join(closed, "pg"), filepath.Join(throughLink, "pg")} {
		err := CheckReachable(dir)
		if os.Geteuid() != 0 {
			if err != nil {
				t.Errorf("not root, %s: %v; want nil (the server runs as us)", dir, err)
			}
			continue
		}
		var u *UnreachableError
		if !errors.As(err, &u) || u.Blocker != closed || u.Mode != 0o700 {
			t.Errorf("as root, %s: %v; want an UnreachableError naming %s (0700)", dir, err, closed)
		}
	}
}
