// Package pgclustertest starts what a test needs beyond a database of its
// own (storage/pgtest): a primary with a synchronous streaming standby to
// fail over to, and a PgBouncer in transaction pooling mode. Everything runs
// from the local binaries on private Unix sockets and is stopped, by PID,
// when the test ends. What is missing is installed with apt-get when running
// as root; otherwise the test fails saying what to install. Tests never skip.
package pgclustertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authz/authz/internal/pgcluster"
)

const setupTimeout = 2 * time.Minute

// Cluster starts a throwaway cluster for the test, stopped when it ends.
func Cluster(t testing.TB, opts pgcluster.Options) *pgcluster.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), setupTimeout)
	defer cancel()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	c, err := pgcluster.Start(ctx, opts)
	if errors.Is(err, pgcluster.ErrNoBinaries) {
		t.Fatalf("%v; install them: apt-get install -y postgresql", err)
	}
	if err != nil {
		t.Fatalf("start a cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stop cluster: %v", err)
		}
	})
	return c
}

// Replicated starts a primary and a synchronous streaming standby of it:
// every commit the primary acknowledges is on the standby too. Both are
// stopped when the test ends.
func Replicated(t testing.TB) (primary, standby *pgcluster.Cluster) {
	t.Helper()
	primary = Cluster(t, pgcluster.Options{Replication: true})
	ctx, cancel := context.WithTimeout(t.Context(), setupTimeout)
	defer cancel()
	standby, err := pgcluster.StartStandby(ctx, primary, pgcluster.StandbyOptions{Synchronous: true, Logf: t.Logf})
	if err != nil {
		t.Fatalf("start a standby: %v", err)
	}
	t.Cleanup(func() {
		if err := standby.Stop(); err != nil {
			t.Errorf("stop standby: %v", err)
		}
	})
	return primary, standby
}

// PgBouncer starts a PgBouncer in transaction pooling mode in front of c,
// stopped when the test ends. When pgbouncer is missing it installs Debian's
// package if running as root, and otherwise fails saying how to.
func PgBouncer(t testing.TB, c *pgcluster.Cluster) *pgcluster.PgBouncer {
	t.Helper()
	if err := EnsurePgBouncer(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), setupTimeout)
	defer cancel()
	b, err := pgcluster.StartPgBouncer(ctx, c, pgcluster.PgBouncerOptions{Logf: t.Logf})
	if err != nil {
		t.Fatalf("start pgbouncer: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Stop(); err != nil {
			t.Errorf("stop pgbouncer: %v", err)
		}
	})
	return b
}

const installHint = "install pgbouncer: apt-get install -y pgbouncer"

var install struct {
	sync.Mutex
	err  error
	done bool
}

// EnsurePgBouncer installs pgbouncer once per process when it is missing
// and we are root.
func EnsurePgBouncer() error {
	if _, err := pgcluster.FindPgBouncer(); err == nil {
		return nil
	}
	if os.Geteuid() != 0 {
		return errors.New(installHint)
	}
	install.Lock()
	defer install.Unlock()
	if !install.done {
		install.done = true
		install.err = aptInstall("pgbouncer")
	}
	if install.err != nil {
		return fmt.Errorf("%s (installing it failed: %v)", installHint, install.err)
	}
	_, err := pgcluster.FindPgBouncer()
	return err
}

func aptInstall(pkg string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"update", "-q"},
		{"install", "-y", "-q", "--no-install-recommends", pkg},
	} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			return fmt.Errorf("apt-get %s: %w: %s", args[0], err, lines[len(lines)-1])
		}
	}
	return nil
}

// CreateDatabase creates an empty database on c for the test (dropped with
// the cluster) and returns its name.
func CreateDatabase(t testing.TB, c *pgcluster.Cluster, name string) string {
	t.Helper()
	Exec(t, c.URL("postgres"), "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	return name
}

// Exec runs one statement on its own connection to url.
func Exec(t testing.TB, url, sql string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
