package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authz/authz/internal/pgcluster"
	"github.com/authz/authz/storage"
)

// database is where the benchmark runs: two fresh databases, one for
// authz and one for pgbench, on a private cluster or on the server
// AUTHZ_DATABASE_URL names.
type database struct {
	cluster  *pgcluster.Cluster // nil on AUTHZ_DATABASE_URL's server
	admin    string             // URL to run CREATE and DROP DATABASE from
	url      func(name string) string
	authz    string // the authz database's URL
	pgbench  string // the pgbench database's URL, as libpq reads it
	created  []string
	pgPID    int    // the postmaster, when the cluster is ours
	Describe string // where, for the report
	Version  string // PostgreSQL's server_version
}

// openDatabase starts the private cluster (or takes AUTHZ_DATABASE_URL's
// server) and creates and migrates the databases. Close undoes it.
func openDatabase(ctx context.Context, o Options) (_ *database, err error) {
	db := &database{}
	defer func() {
		if err != nil {
			err = errors.Join(err, db.Close())
		}
	}()
	suffix := ""
	if o.DatabaseURL == "" {
		c, err := pgcluster.Start(ctx, pgcluster.Options{Durable: !o.NoFsync})
		if err != nil {
			if errors.Is(err, pgcluster.ErrNoBinaries) {
				return nil, fmt.Errorf("%w; install them (Debian/Ubuntu: apt-get install -y postgresql) or set AUTHZ_DATABASE_URL", err)
			}
			return nil, fmt.Errorf("start a private PostgreSQL: %w", err)
		}
		db.cluster, db.admin, db.url = c, c.URL("postgres"), c.URL
		db.pgPID = postmasterPID(c.DataDir())
		db.Describe = "private cluster, PostgreSQL's durable defaults (fsync and synchronous_commit on)"
		if o.NoFsync {
			db.Describe = "private cluster as the tests run it (fsync and synchronous_commit off, data in RAM)"
		}
	} else {
		u, err := url.Parse(o.DatabaseURL)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			return nil, errors.New("AUTHZ_DATABASE_URL must be a postgres:// URL here: the benchmark makes its own databases on that server and hands one to pgbench")
		}
		db.admin = libpqURL(o.DatabaseURL)
		db.url = func(name string) string { return withDatabase(u, name) }
		host := u.Host
		if host == "" {
			host = u.Query().Get("host") // a socket directory
		}
		db.Describe = "AUTHZ_DATABASE_URL's server at " + host
		suffix = "_" + randomHex(4)
	}
	for _, name := range []string{"authz_bench" + suffix, "authz_bench_pgbench" + suffix} {
		if err := db.exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			return nil, fmt.Errorf("create database %s: %w", name, err)
		}
		db.created = append(db.created, name)
	}
	db.authz, db.pgbench = db.url(db.created[0]), libpqURL(db.url(db.created[1]))
	if err := db.migrate(ctx); err != nil {
		return nil, err
	}
	return db, nil
}

func (db *database) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, db.admin)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

func (db *database) migrate(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, libpqURL(db.authz))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := storage.Migrate(ctx, conn); err != nil {
		return err
	}
	return conn.QueryRow(ctx, "SHOW server_version").Scan(&db.Version)
}

// openPool opens the server's pool as cmd/authz does (configurePool):
// 32 connections unless the URL says otherwise, idle transactions ended
// by the server, and storage's tracer, which counts the statements.
func (db *database) openPool(ctx context.Context) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(db.authz)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(db.authz, "pool_max_conns") {
		cfg.MaxConns = 32
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; !ok {
		cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = "30000"
	}
	pool, err := pgxpool.NewWithConfig(ctx, storage.PoolConfig(cfg))
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// Close drops the databases it made (on AUTHZ_DATABASE_URL's server) or
// stops the private cluster, which takes its data with it.
func (db *database) Close() error {
	if db.cluster != nil {
		return db.cluster.Stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	for _, name := range db.created {
		if err := db.exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			errs = append(errs, fmt.Errorf("drop database %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// withDatabase is u naming database name instead.
func withDatabase(u *url.URL, name string) string {
	c := *u
	c.Path = "/" + name
	c.RawPath = ""
	return c.String()
}

// libpqURL drops the parameters that only pgx's pool reads, which a
// single connection (and libpq, for pgbench) would send to the server as
// settings and have refused.
func libpqURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	q := u.Query()
	for k := range q {
		switch {
		case strings.HasPrefix(k, "pool_"), k == "default_query_exec_mode", k == "statement_cache_capacity",
			k == "description_cache_capacity", k == "min_read_buffer_size":
			q.Del(k)
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// postmasterPID reads the server's PID from its data directory, or 0.
func postmasterPID(dataDir string) int {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(first))
	return pid
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// findPgbench looks for pgbench next to the server binaries, then on
// PATH.
func findPgbench() (string, error) {
	if dir, err := pgcluster.FindBinaries(); err == nil {
		if p := filepath.Join(dir, "pgbench"); isExecutable(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	return "", errors.New("pgbench not found next to the PostgreSQL server binaries nor on PATH: install it (Debian/Ubuntu: apt-get install -y postgresql, which ships it)")
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
