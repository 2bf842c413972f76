// Package pgcluster runs a private PostgreSQL server from the local
// PostgreSQL binaries: a throwaway one for tests (storage/pgtest), or one
// with a persistent data directory for development (authz dev).
//
// The server never listens on TCP; its only socket is in a private
// directory, reachable by its own OS user and root. initdb and postgres
// refuse to run as root, so as root they run as the 'postgres' user.
// PostgreSQL 13 or later is needed.
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// searchRoot is where Debian and Ubuntu install one bin directory per major
// version. A variable so tests can point it elsewhere.
var searchRoot = "/usr/lib/postgresql"

const (
	// port only names the socket file: the socket directory is private.
	port         = "5432"
	readyTimeout = time.Minute
	stopTimeout  = time.Minute
)

// Options for Start.
type Options struct {
	// DataDir keeps the cluster's data. Empty: a temporary directory removed
	// by Stop. Non-empty: persistent; initialised on first use, reused on
	// later starts (authz dev keeps it under ./.data/pg). As root, the
	// 'postgres' user must be able to reach it: see CheckReachable.
	DataDir string
	// Durable keeps fsync on. Test clusters turn fsync, full_page_writes and
	// synchronous_commit off for speed; dev mode sets Durable.
	Durable bool
	// Replication lets streaming standbys (StartStandby) connect, and keeps
	// synchronous_commit on even when not Durable, so that a synchronous
	// standby holds every commit the primary acknowledged.
	Replication bool
	// Logf receives progress lines; nil means silent.
	Logf func(format string, args ...any)
}

// Cluster is a private PostgreSQL server started from the local PostgreSQL
// binaries.
//
// It never listens on TCP: its only socket is in a private (0700) temporary
// directory, so its trust authentication is reachable only by the server's
// OS user and root.
type Cluster struct {
	runDir   string // private temporary directory: socket and log
	dataDir  string
	tempData string // holds a temporary dataDir; removed by Stop
	cmd      *exec.Cmd
	exited   chan struct{} // closed once the server process has exited
	waitErr  error         // the server's exit status, set before exited closes
	crashed  atomic.Bool   // Crash stopped it: its exit status is no failure

	stopOnce sync.Once
	stopErr  error
}

// ErrNoBinaries is returned (wrapped) by FindBinaries and Start when no
// PostgreSQL server binaries are installed. Callers add what to do about it.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries found")

// FindBinaries returns the directory holding the PostgreSQL server binaries
// (initdb and postgres). It looks on PATH, then in
// /usr/lib/postgresql/*/bin, highest version first. When there are none,
// the error wraps ErrNoBinaries.
func FindBinaries() (binDir string, err error) {
	return findBinaries(searchRoot)
}

func findBinaries(root string) (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		// Through a symlink (/usr/local/bin/initdb, say), postgres lives
		// next to the real file.
		dirs := []string{filepath.Dir(p)}
		if real, err := filepath.EvalSymlinks(p); err == nil {
			dirs = append([]string{filepath.Dir(real)}, dirs...)
		}
		for _, dir := range dirs {
			if hasServer(dir) {
				return dir, nil
			}
		}
	}
	for _, dir := range versionDirs(root) {
		if hasServer(dir) {
			return dir, nil
		}
	}
	return "", fmt.Errorf("%w (looked on PATH and in %s/*/bin)", ErrNoBinaries, root)
}

func hasServer(dir string) bool {
	return isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres"))
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// versionDirs lists root/VERSION/bin, highest version first ("16" before
// "9.6"); entries that are not version numbers are ignored.
func versionDirs(root string) []string {
	entries, _ := os.ReadDir(root)
	type version struct {
		name string
		nums []int
	}
	var versions []version
	for _, e := range entries {
		var nums []int
		for part := range strings.SplitSeq(e.Name(), ".") {
			n, err := strconv.Atoi(part)
			if err != nil {
				nums = nil
				break
			}
			nums = append(nums, n)
		}
		if nums != nil {
			versions = append(versions, version{e.Name(), nums})
		}
	}
	slices.SortFunc(versions, func(a, b version) int { return slices.Compare(b.nums, a.nums) })
	dirs := make([]string, len(versions))
	for i, v := range versions {
		dirs[i] = filepath.Join(root, v.name, "bin")
	}
	return dirs
}

// Start initialises the data directory if needed and starts a server on it,
// returning once it accepts connections. ctx bounds the start only; the
// server runs until Stop.
//
// initdb and postgres refuse to run as root, so when the caller is root they
// run as the 'postgres' OS user, which must then be able to reach the data
// directory: every directory above it must be searchable by that user
// (/root, mode 0700, is not). Start does not loosen anyone's permissions; it
// fails and says which directory is in the way.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
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
	runDir, err := os.MkdirTemp("", "authz-pg-")
	if err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	c := &Cluster{runDir: runDir}
	if err := c.boot(ctx, binDir, owner, opts, logf); err != nil {
		tail := c.logTail()
		_ = c.Stop() // best effort: err and the log say what went wrong
		return nil, errors.Join(err, tail)
	}
	return c, nil
}

func (c *Cluster) boot(ctx context.Context, binDir string, owner account, opts Options, logf func(string, ...any)) error {
	if err := owner.own(c.runDir); err != nil {
		return err
	}
	if err := owner.checkReachable(c.runDir); err != nil {
		return err
	}
	if opts.DataDir != "" {
		dir, err := prepareDataDir(opts.DataDir, owner)
		if err != nil {
			return err
		}
		c.dataDir = dir
	} else if err := c.makeTempData(owner, opts.Durable); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(c.dataDir, "PG_VERSION")); errors.Is(err, fs.ErrNotExist) {
		t0 := time.Now()
		if err := initdb(ctx, binDir, c.dataDir, owner, opts.Durable); err != nil {
			return err
		}
		logf("initdb %s (%v)", c.dataDir, time.Since(t0).Round(time.Millisecond))
	}
	t0 := time.Now()
	if err := c.startServer(binDir, owner, opts); err != nil {
		return err
	}
	if err := c.waitReady(ctx); err != nil {
		return err
	}
	logf("postgres %s ready in %v; socket in %s, log %s", binDir, time.Since(t0).Round(time.Millisecond), c.runDir, c.logPath())
	return nil
}

// prepareDataDir makes a persistent data directory exist, checks the
// server's account can reach it, and hands it to that account if it is not
// initialised yet.
func prepareDataDir(dir string, owner account) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("data directory: %w", err)
	}
	// Parents are made 0755 (less umask) so the server's account can pass.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", fmt.Errorf("create data directory: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("create data directory: %w", err)
	}
	if err := owner.checkReachable(dir); err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(dir, "PG_VERSION")); errors.Is(err, fs.ErrNotExist) {
		if err := owner.own(dir); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// makeTempData makes a directory for a temporary cluster's data. Unless
// Durable, it is in RAM when there is room: with fsync off the data never
// needed the disk, and on a busy disk each CREATE DATABASE (which writes the
// template's pages to the files and to the WAL) took ~230ms instead of ~40ms.
func (c *Cluster) makeTempData(owner account, durable bool) error {
	parent := "" // os.TempDir
	if !durable {
		parent = ramDir()
	}
	dir, err := os.MkdirTemp(parent, "authz-pg-data-")
	if err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	c.tempData, c.dataDir = dir, filepath.Join(dir, "data") // initdb makes data
	if err := owner.checkReachable(dir); err != nil {
		return err
	}
	return owner.own(dir)
}

func initdb(ctx context.Context, binDir, dataDir string, owner account, durable bool) error {
	args := []string{"-D", dataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"}
	if !durable {
		args = append(args, "--no-sync")
	}
	cmd := owner.command(filepath.Join(binDir, "initdb"), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := runContext(ctx, cmd); err != nil {
		return fmt.Errorf("initdb %s: %w\n%s", dataDir, err, lastLines(out.Bytes()))
	}
	return nil
}

// runContext runs cmd, interrupting it if ctx ends first.
func runContext(ctx context.Context, cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = cmd.Process.Signal(syscall.SIGINT) })
	defer stop()
	return cmd.Wait()
}

func (c *Cluster) logPath() string { return filepath.Join(c.runDir, "postgres.log") }

func (c *Cluster) startServer(binDir string, owner account, opts Options, extra ...string) error {
	log, err := os.OpenFile(c.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("create server log: %w", err)
	}
	defer log.Close() // the server has its own copy
	args := []string{
		"-D", c.dataDir,
		"-k", c.runDir, // unix_socket_directories
		"-p", port,
		"-c", "listen_addresses=", // no TCP at all
		"-c", "max_connections=300",
	}
	if !opts.Durable {
		args = append(args, "-c", "fsync=off", "-c", "full_page_writes=off",
			// Each CREATE DATABASE writes the template's pages to the WAL:
			// don't zero-fill each new 16MB segment first, and keep little
			// WAL between checkpoints (it may be in RAM: makeTempData).
			"-c", "wal_init_zero=off", "-c", "max_wal_size=128MB")
		if !opts.Replication {
			args = append(args, "-c", "synchronous_commit=off")
		}
	}
	if opts.Replication {
		args = append(args, "-c", "wal_level=replica", "-c", "max_wal_senders=10", "-c", "hot_standby=on")
	}
	args = append(args, extra...)
	cmd := owner.command(filepath.Join(binDir, "postgres"), args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	c.cmd, c.exited = cmd, make(chan struct{})
	go func() {
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	return nil
}

// waitReady polls until the server accepts a connection, it exits, or the
// deadline passes.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		conn, err := pgx.Connect(ctx, c.URL("postgres"))
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-c.exited:
			return fmt.Errorf("postgres exited during start-up: %v", c.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("postgres not ready: %w (last attempt: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// SocketDir returns the private directory holding the server's socket.
func (c *Cluster) SocketDir() string { return c.runDir }

// DataDir returns the absolute path of the cluster's data directory.
func (c *Cluster) DataDir() string { return c.dataDir }

// URL returns a pgx-compatible connection URL for database on this cluster.
func (c *Cluster) URL(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Path:     "/" + database,
		RawQuery: url.Values{"host": {c.runDir}, "port": {port}, "sslmode": {"disable"}}.Encode(),
	}
	return u.String()
}

// Stop shuts the server down (PostgreSQL's "fast" shutdown: clients are
// disconnected) and waits for it, then removes the socket directory and, if
// it was temporary, the data. Calling it again returns the first result.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		if c.cmd != nil {
			c.stopErr = c.shutdown()
		}
		for _, dir := range []string{c.tempData, c.runDir} {
			if err := os.RemoveAll(dir); err != nil {
				c.stopErr = errors.Join(c.stopErr, fmt.Errorf("remove %s: %w", dir, err))
			}
		}
	})
	return c.stopErr
}

func (c *Cluster) shutdown() error {
	_ = c.cmd.Process.Signal(syscall.SIGINT) // fails only if it has exited already
	select {
	case <-c.exited:
		if c.waitErr != nil && !c.crashed.Load() {
			return fmt.Errorf("postgres: %w", c.waitErr)
		}
		return nil
	case <-time.After(stopTimeout):
	}
	_ = c.cmd.Process.Kill()
	<-c.exited
	return fmt.Errorf("postgres did not shut down within %v; killed it", stopTimeout)
}

// logTail returns the end of the server's log as an error, or nil if the
// log is empty or missing.
func (c *Cluster) logTail() error {
	b, err := os.ReadFile(c.logPath())
	if err != nil || len(b) == 0 {
		return nil
	}
	return fmt.Errorf("postgres log (%s), last lines:\n%s", c.logPath(), lastLines(b))
}

// lastLines returns the last few lines of out, indented.
func lastLines(out []byte) string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	lines = lines[max(0, len(lines)-15):]
	return "    " + strings.Join(lines, "\n    ")
}

// account is the OS user that initdb and the server run as: the current
// user, or 'postgres' when running as root, since both refuse root.
type account struct {
	cred *syscall.Credential // nil: the current user
}

func serverAccount() (account, error) {
	if os.Geteuid() != 0 {
		return account{}, nil
	}
	u, err := user.Lookup("postgres")
	if errors.As(err, new(user.UnknownUserError)) {
		return account{}, errors.New("running as root and there is no 'postgres' user to run the server as; " +
			"install the postgresql package or run as a normal user")
	}
	if err != nil {
		return account{}, fmt.Errorf("look up the 'postgres' user: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return account{}, fmt.Errorf("look up the 'postgres' user: %w", err)
	}
	return account{cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}, nil
}

// own hands dir to the account.
func (a account) own(dir string) error {
	if a.cred == nil {
		return nil
	}
	if err := os.Chown(dir, int(a.cred.Uid), int(a.cred.Gid)); err != nil {
		return fmt.Errorf("hand %s to the 'postgres' user: %w", dir, err)
	}
	return nil
}

// UnreachableError says that, running as root, the server's 'postgres'
// user cannot reach Dir because it may not enter Blocker.
type UnreachableError struct {
	Dir, Blocker string
	Mode         fs.FileMode // Blocker's permission bits
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("running as root, the server runs as the 'postgres' user, which cannot reach %s "+
		"because it may not enter %s (mode %#o); use a data directory outside it, run as a normal user, "+
		"or let it through with chmod o+x %s", e.Dir, e.Blocker, e.Mode, e.Blocker)
}

// CheckReachable reports whether the account the server would run as can
// reach dir, as Start requires of a persistent data directory: nil when not
// running as root (the server runs as the current user); as root, an
// *UnreachableError naming the first directory above dir that the 'postgres'
// user may not enter, or an error if there is no such user. dir itself need
// not exist yet, but its parent must. Symbolic links are followed.
func CheckReachable(dir string) error {
	owner, err := serverAccount()
	if err != nil {
		return err
	}
	return owner.checkReachable(dir)
}

// checkReachable fails, naming the culprit, if some directory above dir is
// not searchable by the account. (Permission bits only; ACLs are ignored.)
// The current user needs no check: it made the directory.
func (a account) checkReachable(dir string) error {
	if a.cred == nil {
		return nil
	}
	real, err := resolve(dir)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", dir, err)
	}
	for d := filepath.Dir(real); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("check access to %s: %w", dir, err)
		}
		if !a.searchable(fi) {
			return &UnreachableError{Dir: dir, Blocker: d, Mode: fi.Mode().Perm()}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// resolve returns the absolute path of path with symbolic links evaluated;
// the last element of path need not exist.
func resolve(path string) (string, error) {
	path, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return real, err
	}
	if _, lerr := os.Lstat(path); lerr == nil {
		return "", err // a dangling symbolic link
	}
	parent, err := filepath.EvalSymlinks(filepath.Dir(path))
	if err != nil {
		return "", err
	}
	return filepath.Join(parent, filepath.Base(path)), nil
}

func (a account) searchable(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	perm := fi.Mode().Perm()
	switch {
	case st.Uid == a.cred.Uid:
		return perm&0o100 != 0
	case st.Gid == a.cred.Gid:
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}

// command prepares name to run as the account, in its own process group (so
// a terminal's Ctrl-C reaches only us, and Stop decides when the server
// goes), from "/" (the caller's working directory may be closed to it).
func (a account) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = "/"
	cmd.SysProcAttr = sysProcAttr()
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Credential = a.cred
	return cmd
}
