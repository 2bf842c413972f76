package devserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/pgcluster"
)

func TestEnsurePostgres(t *testing.T) {
	t.Parallel()
	missing := fmt.Errorf("%w (looked on PATH and in /usr/lib/postgresql/*/bin)", pgcluster.ErrNoBinaries)
	tests := []struct {
		name       string
		root       bool
		found      []bool // what each find call sees
		installErr error
		installs   int
		want       string // error; empty for none
	}{
		{"installed", false, []bool{true}, nil, 0, ""},
		{"missing, not root", false, []bool{false}, nil, 0,
			"no PostgreSQL server binaries found (looked on PATH and in /usr/lib/postgresql/*/bin); " +
				"install PostgreSQL (Debian: sudo apt-get install -y postgresql) or set AUTHZ_DATABASE_URL"},
		{"missing, root", true, []bool{false, true}, nil, 1, ""},
		{"install fails", true, []bool{false}, errors.New("apt-get update: exit status 100"), 1,
			"install postgresql: apt-get update: exit status 100; install PostgreSQL (Debian: sudo apt-get install -y postgresql) or set AUTHZ_DATABASE_URL"},
		{"still missing", true, []bool{false, false}, nil, 1, "installed postgresql, but: no PostgreSQL server binaries found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			calls, installs := 0, 0
			find := func() (string, error) {
				found := tc.found[calls]
				calls++
				if found {
					return "/usr/lib/postgresql/15/bin", nil
				}
				return "", missing
			}
			install := func(context.Context) error { installs++; return tc.installErr }
			err := ensurePostgres(t.Context(), tc.root, find, install)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("error %v", err)
			case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
				t.Errorf("error %v, want %s", err, tc.want)
			}
			if installs != tc.installs {
				t.Errorf("installed %d times, want %d", installs, tc.installs)
			}
		})
	}
}

func TestLocalIssuer(t *testing.T) {
	t.Parallel()
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 41234}
	for _, tc := range []struct{ listen, want string }{
		{":8080", "http://localhost:41234"},
		{"0.0.0.0:0", "http://localhost:41234"},
		{"[::]:0", "http://localhost:41234"},
		{"localhost:0", "http://localhost:41234"},
		{"127.0.0.1:0", "http://127.0.0.1:41234"},
		{"[::1]:0", "http://[::1]:41234"},
	} {
		if got := localIssuer(tc.listen, addr); got != tc.want {
			t.Errorf("localIssuer(%q) = %s, want %s", tc.listen, got, tc.want)
		}
	}
}

// TestListenHint: a port in use is refused with a hint naming a port that
// is free, never the busy one: with the port and the port 10 above it both
// taken, the hint names neither.
func TestListenHint(t *testing.T) {
	t.Parallel()
	busy, next := twoBusyPorts(t)
	_, err := listenTCP(busy, func(free string) string { return "AUTHZ_LISTEN=" + free })
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("listen on a busy port: %v, want EADDRINUSE", err)
	}
	_, suggested, ok := strings.Cut(err.Error(), "choose another port with AUTHZ_LISTEN=")
	if !ok {
		t.Fatalf("no hint in %q", err)
	}
	if suggested == busy || suggested == next {
		t.Errorf("hint suggests %s, which is busy (%s and %s are)", suggested, busy, next)
	}
	host, _, err := net.SplitHostPort(suggested)
	if err != nil || host != "127.0.0.1" {
		t.Errorf("hint %q: want 127.0.0.1:PORT (%v)", suggested, err)
	}
	ln, err := net.Listen("tcp", suggested)
	if err != nil {
		t.Fatalf("the suggested %s is not free: %v", suggested, err)
	}
	ln.Close()
}

// twoBusyPorts listens on 127.0.0.1:P and 127.0.0.1:P+10 until the test
// ends, and returns both addresses.
func twoBusyPorts(t *testing.T) (string, string) {
	t.Helper()
	for range 50 {
		first, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := first.Addr().(*net.TCPAddr).Port
		second, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10)))
		if err != nil {
			first.Close()
			continue
		}
		t.Cleanup(func() { first.Close(); second.Close() })
		return first.Addr().String(), second.Addr().String()
	}
	t.Fatal("found no port P with P+10 free in 50 tries")
	return "", ""
}

// TestFindDatabaseNone: a folder where dev never ran its own cluster (no
// data directory, a data directory without pg/, a state file whose
// database is gone) holds no database of dev's, and FindDatabase starts
// nothing.
func TestFindDatabaseNone(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := FindDatabase(t.Context(), filepath.Join(dir, "missing")); !errors.Is(err, ErrNoDatabase) {
		t.Errorf("no data directory: %v, want ErrNoDatabase", err)
	}
	gone := state{DatabaseURL: "postgres://postgres@/authz?host=" + filepath.Join(dir, "no-socket") + "&sslmode=disable", PID: 1}
	if err := writeState(dir, gone); err != nil {
		t.Fatal(err)
	}
	if _, err := FindDatabase(t.Context(), dir); !errors.Is(err, ErrNoDatabase) {
		t.Errorf("a stale state file and no pg/: %v, want ErrNoDatabase", err)
	}
	// An empty pg/ (initdb never ran): starting it would make a new cluster.
	if err := os.Mkdir(filepath.Join(dir, "pg"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := FindDatabase(t.Context(), dir); !errors.Is(err, ErrNoDatabase) {
		t.Errorf("an empty pg/: %v, want ErrNoDatabase", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "pg")); len(entries) > 0 {
		t.Errorf("FindDatabase wrote into the empty pg/: %d entries", len(entries))
	}
}

// TestStateFile: the state file is the owner's only, and removeState
// leaves alone a file another process wrote.
func TestStateFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, stateFile)
	if err := writeState(dir, state{DatabaseURL: "postgres://x", PID: os.Getpid()}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v, %v; want mode 0600", fi, err)
	}
	if err := removeState(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file still there after removeState: %v", err)
	}
	if err := writeState(dir, state{DatabaseURL: "postgres://x", PID: os.Getpid() + 1}); err != nil {
		t.Fatal(err)
	}
	if err := removeState(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("removeState removed another process's state file: %v", err)
	}
}

// TestDefaultListen: dev listens on this machine only unless an address
// was chosen (it prints the demo password), and its issuer is then
// http://localhost:PORT.
func TestDefaultListen(t *testing.T) {
	t.Parallel()
	cfg := authz.Config{Listen: ":8080", AdminListen: "off"} // ConfigFromEnv's defaults
	d, err := newDev(Options{Config: cfg, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if d.cfg.Listen != "127.0.0.1:8080" {
		t.Errorf("dev listens on %q by default, want 127.0.0.1:8080", d.cfg.Listen)
	}
	d, err = newDev(Options{Config: cfg, ListenGiven: true, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if d.cfg.Listen != ":8080" {
		t.Errorf("dev with AUTHZ_LISTEN=:8080 listens on %q", d.cfg.Listen)
	}
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	if got := localIssuer("", addr); got != "http://localhost:8080" {
		t.Errorf("issuer for the default address: %s, want http://localhost:8080", got)
	}
}
