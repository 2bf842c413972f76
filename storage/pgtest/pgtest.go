// Package pgtest gives tests their own PostgreSQL databases, on a real
// server.
//
// A test that needs the database calls NewDatabase and gets the URL of a
// brand-new database, already migrated to the latest schema and dropped when
// the test ends, so tests may run in parallel and never see each other's
// rows. Every package that calls NewDatabase must run its tests through
// Main, which tears down what the package started:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestSomething(t *testing.T) {
//		t.Parallel()
//		pool, err := pgxpool.New(t.Context(), pgtest.NewDatabase(t))
//		...
//	}
//
// AUTHZ_TEST_ISOLATION ("repeatable read", "serializable") sets every test
// database's default transaction isolation level.
//
// The databases come from the server that AUTHZ_TEST_DATABASE_URL names (the
// role must be allowed to create databases) or, when it is unset, from a
// throwaway cluster that the first NewDatabase of the test process starts
// from the local PostgreSQL binaries (internal/pgcluster). The schema
// is migrated once per process into a template database; each test's
// database is a copy of it (CREATE DATABASE ... TEMPLATE). When no server can
// be had, every test that asks fails, saying what to install: they never
// skip.
//
// Main stops the cluster, or on a shared server drops the template and any
// database a test left behind, after the tests and also on SIGINT or
// SIGTERM. A test binary killed outright (SIGKILL, or go test's -timeout
// panic) leaves its temporary directories (/tmp/authz-pg-*, and the data in
// /dev/shm/authz-pg-data-*) behind, though on Linux the server goes with it.
// PostgreSQL 13 or later is needed.
package pgtest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/authz/authz/internal/pgcluster"
	"github.com/authz/authz/storage"
)

// envURL names the variable that points the tests at an existing server.
const envURL = "AUTHZ_TEST_DATABASE_URL"

// envIsolation names the variable that runs every test database at another
// default isolation level: "repeatable read" or "serializable" (CockroachDB's
// default). The storage must give the same answers at each.
const envIsolation = "AUTHZ_TEST_ISOLATION"

// envPooler names the variable that puts a PgBouncer in transaction
// pooling mode between the tests and their private cluster: "pgbouncer".
// The URLs NewDatabase returns then go through it, with pgx's exec mode
// (no named prepared statements), as authz serve runs behind a pooler;
// DirectURL gives the database itself, for what a pooler cannot carry
// (LISTEN).
const envPooler = "AUTHZ_TEST_POOLER"

const setupTimeout = 2 * time.Minute

var (
	mainRunning atomic.Bool // set while Main runs the tests
	shared      harness     // the test process's one source of databases
)

// Main runs the tests, then tears down whatever the package started: the
// cluster, or the template and leftover test databases on a shared server.
// Use it as:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
func Main(m *testing.M) int {
	mainRunning.Store(true)
	stopSignals := teardownOnSignal()
	code := m.Run()
	stopSignals()
	mainRunning.Store(false)
	if err := shared.teardown(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: tear down: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// teardownOnSignal tears down and exits on SIGINT or SIGTERM, so an
// interrupted run leaves no server or database behind.
func teardownOnSignal() (stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			fmt.Fprintf(os.Stderr, "pgtest: %v: tearing down the test database server\n", sig)
			if err := shared.teardown(); err != nil {
				fmt.Fprintf(os.Stderr, "pgtest: tear down: %v\n", err)
			}
			os.Exit(1)
		case <-done:
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(done)
	}
}

// NewDatabase returns the URL of a brand-new database already migrated to the
// latest schema. It is dropped (WITH (FORCE)) when the test ends. Safe to call
// from parallel tests.
func NewDatabase(t testing.TB) string {
	t.Helper()
	if !mainRunning.Load() {
		t.Fatal("pgtest: NewDatabase needs the package's TestMain to run pgtest.Main, " +
			"or the test database server would leak: func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }")
	}
	src, err := shared.source()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	name := "authz_test_" + randomSuffix()
	if err := src.create(t.Context(), name); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := src.drop(ctx, name); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return src.url(name)
}

// DirectURL returns the URL of the database that url (from NewDatabase)
// names, bypassing the pooler when AUTHZ_TEST_POOLER put one in between;
// otherwise url itself.
func DirectURL(url string) string {
	src, err := shared.source()
	if err != nil || src.direct == nil {
		return url
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return url
	}
	return src.direct(cfg.Database)
}

// harness sets the source up on first use and remembers a failure, so that
// every test asking after it fails with the same message.
type harness struct {
	mu    sync.Mutex
	tried bool
	src   *source
	err   error
}

func (h *harness) source() (*source, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.tried {
		h.tried = true
		ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		h.src, h.err = newSource(ctx)
	}
	return h.src, h.err
}

func (h *harness) teardown() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	src := h.src
	h.tried, h.src, h.err = true, nil, errors.New("the test database server was torn down")
	if src == nil {
		return nil
	}
	return src.close()
}

// source is where test databases come from: a server we can create
// databases on, and the migrated template to copy.
type source struct {
	cluster  *pgcluster.Cluster // nil on the server AUTHZ_TEST_DATABASE_URL names
	bouncer  *pgcluster.PgBouncer
	admin    string // URL of the database to run CREATE/DROP DATABASE from
	url      func(database string) string
	direct   func(database string) string // the database itself, behind a pooler; nil without one
	template string

	mu  sync.Mutex
	dbs map[string]bool // test databases not dropped yet
}

func newSource(ctx context.Context) (*source, error) {
	switch level := os.Getenv(envIsolation); level {
	case "", "read committed", "repeatable read", "serializable":
	default:
		return nil, fmt.Errorf("%s=%q: want read committed, repeatable read or serializable", envIsolation, level)
	}
	s := &source{dbs: map[string]bool{}}
	if env := os.Getenv(envURL); env != "" {
		if _, err := pgx.ParseConfig(env); err != nil {
			return nil, fmt.Errorf("%s: %w", envURL, err)
		}
		s.admin = env
		s.url = func(database string) string { return withDatabase(env, database) }
	} else {
		c, err := pgcluster.Start(ctx, pgcluster.Options{Logf: verboseLogf})
		if err != nil {
			return nil, fmt.Errorf("start a test cluster: %w", withInstallHint(err))
		}
		s.cluster, s.admin, s.url = c, c.URL("postgres"), c.URL
	}
	switch pooler := os.Getenv(envPooler); {
	case pooler == "":
	case pooler != "pgbouncer":
		return nil, errors.Join(fmt.Errorf("%s=%q: want pgbouncer", envPooler, pooler), s.close())
	case s.cluster == nil:
		return nil, errors.Join(fmt.Errorf("%s works with the tests' own cluster, not with %s", envPooler, envURL), s.close())
	default:
		b, err := pgcluster.StartPgBouncer(ctx, s.cluster, pgcluster.PgBouncerOptions{Logf: verboseLogf})
		if err != nil {
			return nil, errors.Join(fmt.Errorf("start PgBouncer: %w", err), s.close())
		}
		s.bouncer, s.direct = b, s.cluster.URL
		s.url = func(database string) string { return b.URL(database) + "&default_query_exec_mode=exec" }
	}
	if err := s.migrateTemplate(ctx); err != nil {
		return nil, errors.Join(err, s.close())
	}
	return s, nil
}

// withInstallHint says what to do when there is no PostgreSQL to start.
func withInstallHint(err error) error {
	if errors.Is(err, pgcluster.ErrNoBinaries) {
		return fmt.Errorf("%w; install them (Debian: apt-get install -y postgresql) or set %s", err, envURL)
	}
	return err
}

func verboseLogf(format string, args ...any) {
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "pgtest: "+format+"\n", args...)
	}
}

// migrateTemplate creates the template database and migrates it. Its name is
// random so that test processes sharing a server don't collide.
func (s *source) migrateTemplate(ctx context.Context) error {
	t0 := time.Now()
	name := "authz_template_" + randomSuffix()
	if err := s.exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create template database: %w", err)
	}
	s.template = name
	// Directly: a pooler would keep server connections to the template
	// open, and a database cannot be copied while anyone is connected.
	migrateURL := s.url
	if s.direct != nil {
		migrateURL = s.direct
	}
	if err := migrate(ctx, migrateURL(name)); err != nil {
		return fmt.Errorf("migrate template database: %w", err)
	}
	// Nobody may be connected to the template while it is copied, or
	// CREATE DATABASE waits (autovacuum workers included, in 100ms steps).
	if err := s.exec(ctx, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH ALLOW_CONNECTIONS false"); err != nil {
		return fmt.Errorf("close template database to connections: %w", err)
	}
	verboseLogf("template %s migrated (%v)", name, time.Since(t0).Round(time.Millisecond))
	return nil
}

func migrate(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = storage.Migrate(ctx, conn)
	return err
}

func (s *source) create(ctx context.Context, name string) error {
	s.mu.Lock()
	s.dbs[name] = true
	s.mu.Unlock()
	sql := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize() + " TEMPLATE " + pgx.Identifier{s.template}.Sanitize()
	if err := s.exec(ctx, sql); err != nil {
		return fmt.Errorf("create test database: %w", err)
	}
	if level := os.Getenv(envIsolation); level != "" {
		// Settings of a database are not copied with it from the template.
		if err := s.exec(ctx, "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" SET default_transaction_isolation = '"+level+"'"); err != nil {
			return fmt.Errorf("set the test database's isolation level: %w", err)
		}
	}
	return nil
}

func (s *source) drop(ctx context.Context, name string) error {
	if err := s.exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	s.mu.Lock()
	delete(s.dbs, name)
	s.mu.Unlock()
	return nil
}

// close stops our cluster, which takes every database with it, or drops
// what we made on a shared server.
func (s *source) close() error {
	if s.cluster != nil {
		var err error
		if s.bouncer != nil {
			err = s.bouncer.Stop()
		}
		return errors.Join(err, s.cluster.Stop())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s.mu.Lock()
	names := make([]string, 0, len(s.dbs)+1)
	for name := range s.dbs {
		names = append(names, name)
	}
	s.mu.Unlock()
	if s.template != "" {
		names = append(names, s.template)
	}
	var errs []error
	for _, name := range names {
		errs = append(errs, s.drop(ctx, name))
	}
	return errors.Join(errs...)
}

// exec runs one statement on its own admin connection (CREATE DATABASE
// cannot run in a transaction, and parallel tests need not queue).
func (s *source) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, s.admin)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// withDatabase returns connString (a URL or keyword/value string) with its
// database replaced.
func withDatabase(connString, database string) string {
	if u, err := url.Parse(connString); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path, u.RawPath = "/"+database, ""
		q := u.Query()
		if q.Has("dbname") {
			q.Del("dbname")
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	return connString + " dbname=" + database // the last setting wins
}

// randomSuffix is 26 lowercase letters and digits: fine in an unquoted
// identifier, and unique.
func randomSuffix() string { return strings.ToLower(rand.Text()) }
