package pgcluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// StandbyOptions for StartStandby.
type StandbyOptions struct {
	// Synchronous makes the primary wait for this standby before it
	// acknowledges a commit (synchronous_standby_names, set on the primary
	// only, so that the standby, once promoted, waits for nobody).
	Synchronous bool
	// Logf receives progress lines; nil means silent.
	Logf func(format string, args ...any)
}

// StartStandby makes a streaming standby of primary (started with
// Options.Replication) from a pg_basebackup of it, starts it on a socket of
// its own, and returns once it accepts read-only connections and streams
// from the primary (and, if Synchronous, once the primary counts it as its
// synchronous standby). The standby is a temporary, non-durable cluster like
// the test clusters Start makes; Stop removes it.
func StartStandby(ctx context.Context, primary *Cluster, opts StandbyOptions) (*Cluster, error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	binDir, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	owner, err := serverAccount()
	if err != nil {
		return nil, err
	}
	runDir, err := makeRunDir()
	if err != nil {
		return nil, err
	}
	c := &Cluster{runDir: runDir}
	name := "standby_" + strings.ToLower(rand.Text()[:8])
	if err := c.bootStandby(ctx, binDir, owner, primary, name, logf); err != nil {
		tail := c.logTail()
		_ = c.Stop()
		return nil, errors.Join(err, tail)
	}
	if opts.Synchronous {
		if err := primary.requireStandby(ctx, name); err != nil {
			_ = c.Stop()
			return nil, err
		}
		logf("standby %s is synchronous", name)
	}
	return c, nil
}

func makeRunDir() (string, error) {
	dir, err := os.MkdirTemp("", "authz-pg-")
	if err != nil {
		return "", fmt.Errorf("create socket directory: %w", err)
	}
	return dir, nil
}

func (c *Cluster) bootStandby(ctx context.Context, binDir string, owner account, primary *Cluster, name string, logf func(string, ...any)) error {
	if err := owner.own(c.runDir); err != nil {
		return err
	}
	if err := owner.checkReachable(c.runDir); err != nil {
		return err
	}
	if err := c.makeTempData(owner, false); err != nil {
		return err
	}
	t0 := time.Now()
	// -R writes standby.signal and primary_conninfo (the primary's socket);
	// -X stream copies the WAL written during the backup too.
	cmd := owner.command(filepath.Join(binDir, "pg_basebackup"),
		"-D", c.dataDir, "-h", primary.runDir, "-p", port, "-U", "postgres",
		"-X", "stream", "-R", "--checkpoint=fast", "--no-sync")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := runContext(ctx, cmd); err != nil {
		return fmt.Errorf("pg_basebackup: %w\n%s", err, lastLines(out.Bytes()))
	}
	logf("pg_basebackup %s (%v)", c.dataDir, time.Since(t0).Round(time.Millisecond))
	// cluster_name is the application_name the standby streams under, by
	// which the primary's pg_stat_replication and synchronous_standby_names
	// know it.
	if err := c.startServer(binDir, owner, Options{Replication: true}, "-c", "cluster_name="+name); err != nil {
		return err
	}
	if err := c.waitReady(ctx); err != nil {
		return err
	}
	if err := primary.waitStandby(ctx, name, "streaming"); err != nil {
		return err
	}
	logf("standby %s streaming; socket in %s, log %s", name, c.runDir, c.logPath())
	return nil
}

// requireStandby makes the standby called name synchronous: from now on a
// commit on c returns only once the standby has it. It is set with ALTER
// SYSTEM, in the primary's own postgresql.auto.conf, which a base backup
// taken earlier did not copy.
func (c *Cluster) requireStandby(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("connect to the primary: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// ALTER SYSTEM takes no parameters; name is ours (letters, digits, _).
	if _, err := conn.Exec(ctx, `ALTER SYSTEM SET synchronous_standby_names = '"`+name+`"'`); err != nil {
		return fmt.Errorf("set synchronous_standby_names: %w", err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_reload_conf()`); err != nil {
		return fmt.Errorf("reload configuration: %w", err)
	}
	return c.waitStandby(ctx, name, "sync")
}

// waitStandby polls the primary's pg_stat_replication until the standby
// called name is streaming, or (want "sync") is its synchronous standby.
func (c *Cluster) waitStandby(ctx context.Context, name, want string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	query := `SELECT count(*) FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'`
	if want == "sync" {
		query += ` AND sync_state = 'sync'`
	}
	var last error
	for {
		n, err := c.count(ctx, query, name)
		if err == nil && n == 1 {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("standby %s not %s: %w (last error: %v)", name, want, ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *Cluster) count(ctx context.Context, query string, args ...any) (int, error) {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int
	err = conn.QueryRow(ctx, query, args...).Scan(&n)
	return n, err
}

// Crash stops the server as a failure would: PostgreSQL's immediate
// shutdown (SIGQUIT to the postmaster's PID), with no checkpoint, every
// client cut off and nothing sent to standbys that they had not received
// already. It returns once the server has exited. Stop still cleans up.
func (c *Cluster) Crash() error {
	c.crashed.Store(true)
	if err := c.cmd.Process.Signal(syscall.SIGQUIT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("crash postgres (pid %d): %w", c.cmd.Process.Pid, err)
	}
	select {
	case <-c.exited:
		return nil
	case <-time.After(stopTimeout):
		_ = c.cmd.Process.Kill()
		<-c.exited
		return fmt.Errorf("postgres (pid %d) ignored an immediate shutdown for %v; killed it", c.cmd.Process.Pid, stopTimeout)
	}
}

// PID is the postmaster's process id.
func (c *Cluster) PID() int { return c.cmd.Process.Pid }

// Promote turns a standby into a primary (pg_ctl promote) and returns once
// it accepts writes.
func (c *Cluster) Promote(ctx context.Context) error {
	binDir, err := FindBinaries()
	if err != nil {
		return err
	}
	owner, err := serverAccount()
	if err != nil {
		return err
	}
	cmd := owner.command(filepath.Join(binDir, "pg_ctl"), "promote", "-D", c.dataDir, "-w",
		"-t", strconv.Itoa(int(readyTimeout.Seconds())))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := runContext(ctx, cmd); err != nil {
		return fmt.Errorf("pg_ctl promote: %w\n%s", err, lastLines(out.Bytes()))
	}
	n, err := c.count(ctx, `SELECT count(*) FROM (SELECT 1 WHERE NOT pg_is_in_recovery()) p`)
	if err != nil {
		return fmt.Errorf("check promotion: %w", err)
	}
	if n != 1 {
		return errors.New("pg_ctl promote returned but the server is still in recovery")
	}
	return nil
}

// FailoverURL is a multi-host URL on database over the given clusters, in
// order, with target_session_attrs=read-write: a client connects to
// whichever of them accepts writes.
func FailoverURL(database string, clusters ...*Cluster) string {
	hosts := make([]string, len(clusters))
	ports := make([]string, len(clusters))
	for i, c := range clusters {
		hosts[i], ports[i] = c.runDir, port
	}
	u := url.URL{
		Scheme: "postgres",
		User:   url.User("postgres"),
		Path:   "/" + database,
		RawQuery: url.Values{
			"host":                 {strings.Join(hosts, ",")},
			"port":                 {strings.Join(ports, ",")},
			"sslmode":              {"disable"},
			"target_session_attrs": {"read-write"},
		}.Encode(),
	}
	return u.String()
}
