package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authz/authz/internal/devserver"
	"github.com/authz/authz/storage"
)

// connectTimeout bounds the first connection, so that a database that
// does not answer fails the command instead of hanging it. A connect_timeout
// in the URL, when shorter, wins.
const connectTimeout = 15 * time.Second

const noDatabase = "no database configured: set AUTHZ_DATABASE_URL (e.g. postgres://user:pass@localhost:5432/authz)"

// noDevDatabase is noDatabase for the commands that would have used dev's.
const noDevDatabase = noDatabase + ", or run `make run` (authz dev) in this folder first"

// dbFlag adds --database-url to a command's flags.
func dbFlag(fs *flag.FlagSet) *string {
	return fs.String("database-url", "", "PostgreSQL `URL` (default: $AUTHZ_DATABASE_URL, then $DATABASE_URL, then the database of authz dev run in this folder)")
}

// serverDBFlag is dbFlag for serve and dev, which never borrow dev's
// database: serve needs one configured, dev starts its own without one.
func serverDBFlag(fs *flag.FlagSet, without string) *string {
	return fs.String("database-url", "", "PostgreSQL `URL` (default: $AUTHZ_DATABASE_URL, then $DATABASE_URL; "+without+")")
}

// configuredURL is the database URL configured: the command's flag, the
// global flag, AUTHZ_DATABASE_URL, then DATABASE_URL; empty when none is.
func (c *cli) configuredURL(flagValue string) string {
	for _, v := range []string{flagValue, c.databaseURL, c.getenv("AUTHZ_DATABASE_URL"), c.getenv("DATABASE_URL")} {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}

// dbURL picks the database URL: the one configured, else, for the
// commands that manage data (not serve or dev), the database of authz dev
// run in this folder.
func (c *cli) dbURL(ctx context.Context, flagValue string) (string, error) {
	if v := c.configuredURL(flagValue); v != "" {
		return v, nil
	}
	if !c.devFallback {
		return "", errors.New(noDatabase)
	}
	return c.devDatabase(ctx)
}

// devDatabase is the database of authz dev run in this folder (its data
// in ./.data): its cluster while dev runs, else that cluster started for
// this command and stopped when it ends (closeDev). It says which on
// stderr, in one line.
func (c *cli) devDatabase(ctx context.Context) (string, error) {
	if c.devDB != nil {
		return c.devDB.URL, nil
	}
	db, err := devserver.FindDatabase(ctx, devserver.DefaultDataDir)
	if errors.Is(err, devserver.ErrNoDatabase) {
		return "", errors.New(noDevDatabase)
	}
	if err != nil {
		return "", err
	}
	c.devDB, c.ownCluster = db, true
	if db.Started {
		fmt.Fprintf(c.stderr, "authz: AUTHZ_DATABASE_URL is unset and authz dev is not running: started its PostgreSQL (%s) for this command\n",
			devserver.DefaultDataDir)
	} else {
		fmt.Fprintf(c.stderr, "authz: AUTHZ_DATABASE_URL is unset: using the database of authz dev running in this folder (%s)\n",
			devserver.DefaultDataDir)
	}
	return db.URL, nil
}

// closeDev stops dev's cluster if devDatabase started it.
func (c *cli) closeDev() error {
	if c.devDB == nil {
		return nil
	}
	return c.devDB.Close()
}

// openPool opens a pool on the database and checks that it answers.
func (c *cli) openPool(ctx context.Context, flagValue string) (*pgxpool.Pool, error) {
	raw, err := c.dbURL(ctx, flagValue)
	if err != nil {
		return nil, err
	}
	return c.openPoolOn(ctx, raw)
}

// openPoolOn opens a pool on raw and checks that it answers.
func (c *cli) openPoolOn(ctx context.Context, raw string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(raw)
	if err != nil {
		return nil, parseError(raw, err)
	}
	mode, err := c.pooler()
	if err != nil {
		return nil, err
	}
	configurePool(cfg, raw, mode)
	pool, err := pgxpool.NewWithConfig(ctx, storage.PoolConfig(cfg))
	if err != nil {
		return nil, poolerHint(mode, unreachable(ctx, cfg.ConnConfig.Config, err))
	}
	pingCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, poolerHint(mode, unreachable(ctx, cfg.ConnConfig.Config, err))
	}
	return pool, nil
}

// poolerMode is how the database URL reaches PostgreSQL
// (AUTHZ_DATABASE_POOLER).
type poolerMode string

const (
	// poolerNone: directly, or through a pooler in session mode; every
	// connection is a session of its own.
	poolerNone poolerMode = "none"
	// poolerTransaction: through a pooler in transaction mode (PgBouncer's
	// pool_mode = transaction), which hands each transaction, or each
	// statement outside one, to whichever server connection is free.
	poolerTransaction poolerMode = "transaction"
)

// pooler reads AUTHZ_DATABASE_POOLER: none (the default) or transaction.
// It describes the configured URL, not the cluster dev runs itself.
func (c *cli) pooler() (poolerMode, error) {
	if c.ownCluster {
		return poolerNone, nil
	}
	switch v := strings.ToLower(strings.TrimSpace(c.getenv("AUTHZ_DATABASE_POOLER"))); v {
	case "", string(poolerNone):
		return poolerNone, nil
	case string(poolerTransaction):
		return poolerTransaction, nil
	default:
		return "", fmt.Errorf("AUTHZ_DATABASE_POOLER: %q is not none or transaction", v)
	}
}

// poolerExecMode is how queries run through a transaction pooler. Named
// prepared statements (pgx's default) live in one server session, which
// the next transaction may not get: PgBouncer before 1.21 does not track
// them ("prepared statement ... does not exist"). Of the modes that use
// none, exec sends each query in one round trip with the parameters typed
// by the server and keeps no per-connection cache that a schema change
// could make stale; describe_exec takes two round trips, simple_protocol
// quotes the parameters into the SQL, and cache_describe was no faster
// (docs/operations-database.md has the figures). A default_query_exec_mode
// in the URL wins, e.g. cache_statement behind PgBouncer 1.21+ with
// max_prepared_statements set.
const poolerExecMode = pgx.QueryExecModeExec

// configurePool applies our defaults to a pool configuration parsed from
// raw; what raw sets explicitly wins.
func configurePool(cfg *pgxpool.Config, raw string, mode poolerMode) {
	// pgx defaults to max(4, CPUs) connections, which a few slow clients
	// could hold; pool_max_conns in the URL still wins.
	if !strings.Contains(raw, "pool_max_conns") {
		cfg.MaxConns = 32
	}
	if mode == poolerTransaction {
		// A pooler refuses start-up parameters it does not know, and would
		// not keep them per session anyway: idle_in_transaction_session_timeout
		// is a role setting there (ALTER ROLE ... SET).
		if !strings.Contains(raw, "default_query_exec_mode") {
			cfg.ConnConfig.DefaultQueryExecMode = poolerExecMode
		}
		return
	}
	// A transaction left idle (a bug, or a client stalling mid-request) is
	// ended by the server instead of holding its connection and locks.
	if _, ok := cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; !ok {
		cfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = "30000"
	}
}

// poolerHint adds what to do when a transaction pooler refused a setting
// of the URL at start-up.
func poolerHint(mode poolerMode, err error) error {
	if mode == poolerTransaction && strings.Contains(err.Error(), "unsupported startup parameter") {
		return fmt.Errorf("%w (a pooler in transaction mode takes no session settings in the URL: "+
			"set them on the role instead, e.g. ALTER ROLE authz SET idle_in_transaction_session_timeout = '30s')", err)
	}
	return err
}

// openStore opens a pool and a store on it; close the pool when done.
func (c *cli) openStore(ctx context.Context, flagValue string) (*storage.Store, func(), error) {
	pool, err := c.openPool(ctx, flagValue)
	if err != nil {
		return nil, nil, err
	}
	return storage.New(pool), pool.Close, nil
}

// separateMigrationURL is the URL migrations run on when it is not the
// database URL: AUTHZ_MIGRATE_DATABASE_URL, optional. A transaction pooler
// does not need it: migrations hold no session-level lock (storage.Migrate
// serialises migrators on a row lock inside the one transaction that
// applies them, and that transaction keeps its server connection), and
// they use no named prepared statements. It still serves a role that may
// change the schema when the server's may not, or a direct path for a long
// migration that a pooler's query_timeout, if set, would cut short. ok is
// false when migrations use the database URL.
func (c *cli) separateMigrationURL() (raw string, ok bool, err error) {
	if c.ownCluster {
		return "", false, nil
	}
	if v := strings.TrimSpace(c.getenv("AUTHZ_MIGRATE_DATABASE_URL")); v != "" {
		return v, true, nil
	}
	// A mistyped AUTHZ_DATABASE_POOLER is reported here too.
	if _, err := c.pooler(); err != nil {
		return "", false, err
	}
	return "", false, nil
}

// connectForMigrations opens a single connection for migrations: on
// AUTHZ_MIGRATE_DATABASE_URL when set, else on the database URL.
func (c *cli) connectForMigrations(ctx context.Context, flagValue string) (*pgx.Conn, error) {
	raw, ok, err := c.separateMigrationURL()
	if err != nil {
		return nil, err
	}
	if !ok {
		if raw, err = c.dbURL(ctx, flagValue); err != nil {
			return nil, err
		}
		return connect(ctx, raw)
	}
	conn, err := connect(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("AUTHZ_MIGRATE_DATABASE_URL: %w", err)
	}
	return conn, nil
}

// connect opens a single connection on raw.
func connect(ctx context.Context, raw string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		return nil, parseError(raw, err)
	}
	connCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(connCtx, cfg)
	if err != nil {
		return nil, unreachable(ctx, cfg.Config, err)
	}
	return conn, nil
}

// parseError explains a database URL that does not parse, without showing
// it: it may hold a password.
func parseError(raw string, err error) error {
	msg := "invalid database URL (expected postgres://user:pass@host:5432/dbname)"
	// pgconn says "cannot parse `<the URL, password masked>`: <why>"; keep
	// only why.
	detail := err.Error()
	if _, after, ok := strings.Cut(detail, "`: "); ok {
		detail = after
	}
	for _, pw := range passwordsIn(raw) {
		detail = strings.ReplaceAll(detail, pw, "xxxxx")
	}
	if detail != "" {
		msg += ": " + detail
	}
	return errors.New(msg)
}

var (
	urlPassword = regexp.MustCompile(`^[A-Za-z]+://[^@/]*?:([^@]+)@`)
	kvPassword  = regexp.MustCompile(`password\s*=\s*(?:'((?:[^'\\]|\\.)*)'|(\S+))`)
)

// passwordsIn finds what look like passwords in a connection string that
// may not parse.
func passwordsIn(raw string) []string {
	var out []string
	if m := urlPassword.FindStringSubmatch(raw); m != nil {
		out = append(out, m[1])
		if dec, err := url.PathUnescape(m[1]); err == nil && dec != m[1] {
			out = append(out, dec)
		}
	}
	for _, m := range kvPassword.FindAllStringSubmatch(raw, -1) {
		out = append(out, m[1]+m[2])
	}
	return slices.DeleteFunc(out, func(s string) bool { return s == "" })
}

// unreachable is the one-line error for a database that cannot be reached:
// where (without the password) and a short cause.
func unreachable(ctx context.Context, cfg pgconn.Config, err error) error {
	return fmt.Errorf("cannot reach the database at %s: %s", redactedURL(cfg), shortCause(ctx, err))
}

// redactedURL shows where a configuration points, never its password.
func redactedURL(cfg pgconn.Config) string {
	var b strings.Builder
	b.WriteString("postgres://")
	if cfg.User != "" {
		b.WriteString(url.PathEscape(cfg.User))
		b.WriteString("@")
	}
	socket := strings.HasPrefix(cfg.Host, "/")
	if !socket {
		b.WriteString(net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))))
	}
	b.WriteString("/")
	b.WriteString(url.PathEscape(cfg.Database))
	if socket {
		b.WriteString("?host=" + cfg.Host)
		if cfg.Port != 5432 {
			b.WriteString("&port=" + strconv.Itoa(int(cfg.Port)))
		}
	}
	return b.String()
}

// shortCause reduces a connection error to what an operator needs: the
// server's own message, or what went wrong on the network.
func shortCause(ctx context.Context, err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Message
	}
	if ctx.Err() != nil {
		return "interrupted"
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsNotFound {
			return fmt.Sprintf("unknown host %q", dnsErr.Name)
		}
		return "cannot resolve host: " + dnsErr.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return "timed out"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error() // "connection refused", "no such file or directory"
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return opErr.Err.Error()
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) && connectErr.Unwrap() != nil {
		err = connectErr.Unwrap()
	}
	return oneLine(err.Error())
}

// openForList parses the flags every list command shares (--database-url,
// --format, no arguments) and opens the store; close it when done. The
// format pointer is what --format said.
func (c *cli) openForList(ctx context.Context, name string, args []string) (*storage.Store, *string, func(), error) {
	fs := newFlags(name)
	dbURL := dbFlag(fs)
	format := formatFlag(fs)
	pos, err := c.parse(fs, "[flags]", args)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(pos) > 0 {
		return nil, nil, nil, usagef("%s: unexpected argument %q", name, pos[0])
	}
	if err := checkFormat(name, *format); err != nil {
		return nil, nil, nil, err
	}
	store, closeStore, err := c.openStore(ctx, *dbURL)
	if err != nil {
		return nil, nil, nil, err
	}
	return store, format, closeStore, nil
}
