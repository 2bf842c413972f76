package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// bouncerPort only names PgBouncer's socket file, as port does the server's.
const bouncerPort = "6432"

// ErrNoPgBouncer is returned (wrapped) by FindPgBouncer and StartPgBouncer
// when the pgbouncer binary is not installed.
var ErrNoPgBouncer = errors.New("no pgbouncer binary found")

// FindPgBouncer returns the path of the pgbouncer binary: on PATH, or where
// Debian installs it (/usr/sbin, which a normal user's PATH lacks).
func FindPgBouncer() (string, error) {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"} {
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w (looked on PATH and in /usr/sbin)", ErrNoPgBouncer)
}

// PgBouncerOptions for StartPgBouncer.
type PgBouncerOptions struct {
	// PoolSize is how many server connections PgBouncer opens per database
	// (default_pool_size); 0 means 20.
	PoolSize int
	// Logf receives progress lines; nil means silent.
	Logf func(format string, args ...any)
}

// PgBouncer is a PgBouncer in transaction pooling mode in front of one
// Cluster: every database of the cluster, under its own name, on a socket
// in a private directory, as the 'postgres' role. Like the cluster it never
// listens on TCP.
type PgBouncer struct {
	runDir  string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error

	stopOnce sync.Once
	stopErr  error
}

// StartPgBouncer starts a PgBouncer in front of backend and returns once it
// passes a query through. As root it runs as the 'postgres' user (it
// refuses root, as PostgreSQL does). It runs until Stop.
func StartPgBouncer(ctx context.Context, backend *Cluster, opts PgBouncerOptions) (*PgBouncer, error) {
	bin, err := FindPgBouncer()
	if err != nil {
		return nil, err
	}
	owner, err := serverAccount()
	if err != nil {
		return nil, err
	}
	runDir, err := os.MkdirTemp("", "authz-pgbouncer-")
	if err != nil {
		return nil, fmt.Errorf("create pgbouncer directory: %w", err)
	}
	b := &PgBouncer{runDir: runDir}
	if err := b.boot(ctx, bin, owner, backend, opts); err != nil {
		tail := b.logTail()
		_ = b.Stop()
		return nil, errors.Join(err, tail)
	}
	return b, nil
}

func (b *PgBouncer) logPath() string { return filepath.Join(b.runDir, "pgbouncer.log") }

func (b *PgBouncer) boot(ctx context.Context, bin string, owner account, backend *Cluster, opts PgBouncerOptions) error {
	if err := owner.own(b.runDir); err != nil {
		return err
	}
	if err := owner.checkReachable(b.runDir); err != nil {
		return err
	}
	size := opts.PoolSize
	if size <= 0 {
		size = 20
	}
	ini := filepath.Join(b.runDir, "pgbouncer.ini")
	if err := os.WriteFile(ini, []byte(bouncerConfig(b.runDir, backend.runDir, size)), 0o600); err != nil {
		return fmt.Errorf("write pgbouncer.ini: %w", err)
	}
	if err := owner.own(ini); err != nil {
		return err
	}
	t0 := time.Now()
	cmd := owner.command(bin, ini)
	// In the foreground PgBouncer logs to stderr.
	log, err := os.OpenFile(b.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("create pgbouncer log: %w", err)
	}
	defer log.Close() // PgBouncer has its own copy
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start pgbouncer: %w", err)
	}
	b.cmd, b.exited = cmd, make(chan struct{})
	go func() {
		b.waitErr = cmd.Wait()
		close(b.exited)
	}()
	if err := b.waitReady(ctx); err != nil {
		return err
	}
	if opts.Logf != nil {
		opts.Logf("pgbouncer ready in %v (pid %d); socket in %s, log %s", time.Since(t0).Round(time.Millisecond), cmd.Process.Pid, b.runDir, b.logPath())
	}
	return nil
}

// bouncerConfig is PgBouncer's configuration: transaction pooling, no TCP,
// every database of the backend as the 'postgres' role (auth_type any:
// the socket directory is private, as the backend's is).
func bouncerConfig(runDir, backendDir string, poolSize int) string {
	return strings.Join([]string{
		"[databases]",
		"* = host=" + backendDir + " port=" + port + " user=postgres",
		"",
		"[pgbouncer]",
		"listen_addr =",
		"listen_port = " + bouncerPort,
		"unix_socket_dir = " + runDir,
		"auth_type = any",
		"pool_mode = transaction",
		"default_pool_size = " + strconv.Itoa(poolSize),
		"max_client_conn = 1000",
		"log_connections = 0",
		"log_disconnections = 0",
		"",
	}, "\n")
}

// waitReady polls until a query passes through to the backend, PgBouncer
// exits, or the deadline passes.
func (b *PgBouncer) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	cfg, err := pgx.ParseConfig(b.URL("postgres"))
	if err != nil {
		return err
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			_, err = conn.Exec(ctx, "SELECT 1")
			conn.Close(ctx)
			if err == nil {
				return nil
			}
		}
		select {
		case <-b.exited:
			return fmt.Errorf("pgbouncer exited during start-up: %v", b.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("pgbouncer not ready: %w (last attempt: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// URL returns a connection URL for database through PgBouncer.
func (b *PgBouncer) URL(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Path:     "/" + database,
		RawQuery: url.Values{"host": {b.runDir}, "port": {bouncerPort}, "sslmode": {"disable"}}.Encode(),
	}
	return u.String()
}

// PID is PgBouncer's process id.
func (b *PgBouncer) PID() int { return b.cmd.Process.Pid }

// Stop ends PgBouncer (SIGTERM to its PID: immediate shutdown, clients
// disconnected), waits for it and removes its directory. Calling it again
// returns the first result.
func (b *PgBouncer) Stop() error {
	b.stopOnce.Do(func() {
		if b.cmd != nil {
			b.stopErr = b.shutdown()
		}
		if err := os.RemoveAll(b.runDir); err != nil {
			b.stopErr = errors.Join(b.stopErr, fmt.Errorf("remove %s: %w", b.runDir, err))
		}
	})
	return b.stopErr
}

func (b *PgBouncer) shutdown() error {
	_ = b.cmd.Process.Signal(syscall.SIGTERM) // fails only if it has exited already
	select {
	case <-b.exited:
		return nil // SIGTERM's exit status is no failure
	case <-time.After(stopTimeout):
	}
	_ = b.cmd.Process.Kill()
	<-b.exited
	return fmt.Errorf("pgbouncer did not stop within %v; killed it", stopTimeout)
}

// logTail returns the end of PgBouncer's log as an error, or nil.
func (b *PgBouncer) logTail() error {
	out, err := os.ReadFile(b.logPath())
	if err != nil || len(out) == 0 {
		return nil
	}
	return fmt.Errorf("pgbouncer log (%s), last lines:\n%s", b.logPath(), lastLines(out))
}
