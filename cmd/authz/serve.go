package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/storage"
)

// Server limits and timings.
const (
	readHeaderTimeout      = 10 * time.Second
	readTimeout            = 30 * time.Second
	writeTimeout           = 30 * time.Second
	idleTimeout            = 120 * time.Second
	maxHeaderBytes         = 64 << 10
	shutdownTimeout        = 15 * time.Second
	defaultJanitorInterval = 10 * time.Minute
)

// serve runs the authorization server until ctx ends, then shuts down
// gracefully: in-flight requests finish (up to shutdownTimeout), the
// janitor stops, the pool closes.
func (c *cli) serve(ctx context.Context, args []string) error {
	fs := newFlags("serve")
	dbURL := serverDBFlag(fs, "one is required")
	listen := fs.String("listen", "", "`address` to listen on (default $AUTHZ_LISTEN, else :8080)")
	issuer := fs.String("issuer", "", "public base `URL` of the server (default $AUTHZ_ISSUER, else http://localhost:8080)")
	migrate := fs.Bool("migrate", false, "apply pending database migrations before serving")
	adminListen := fs.String("admin-listen", "", "`address` of the admin API (default $AUTHZ_ADMIN_LISTEN, else "+authz.DefaultAdminListen+"; off disables it)")
	pos, err := c.parse(fs, "[flags]", args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("serve: unexpected argument %q", pos[0])
	}

	cfg, err := authz.ConfigFromEnv(c.getenv)
	if err != nil {
		return err
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *issuer != "" {
		cfg.Issuer = *issuer
	}
	adminAsked := *adminListen != "" || c.getenv("AUTHZ_ADMIN_LISTEN") != ""
	if *adminListen != "" {
		cfg.AdminListen = *adminListen
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	logger, err := newLogger(c.getenv, c.stderr)
	if err != nil {
		return err
	}
	// The admin API runs only with a token. Asked for explicitly without
	// one is a mistake worth stopping for; by default it just stays off.
	adminOn := !strings.EqualFold(cfg.AdminListen, "off")
	if adminOn && cfg.AdminToken == "" {
		if adminAsked {
			return errors.New("the admin API needs AUTHZ_ADMIN_TOKEN (generate one with: openssl rand -base64 48), or set AUTHZ_ADMIN_LISTEN=off")
		}
		logger.Info("admin API off: set AUTHZ_ADMIN_TOKEN to enable it on " + cfg.AdminListen)
		adminOn = false
	}
	janitorEvery, err := janitorInterval(c.getenv)
	if err != nil {
		return err
	}

	pool, err := c.openPool(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := c.prepareSchema(ctx, pool, *migrate, logger); err != nil {
		return err
	}
	store := storage.New(pool)
	handler, err := authz.New(cfg, store, logger)
	if err != nil {
		return err
	}
	stopCache, err := c.startClientCache(store, logger)
	if err != nil {
		return err
	}
	defer stopCache()
	srv := &server{handler: handler, store: store, janitorEvery: janitorEvery, issuer: cfg.Issuer, logger: logger}
	defer srv.Close() // on early returns; Run closes them otherwise
	if adminOn {
		if srv.admin, err = authz.NewAdmin(cfg, store, logger, authz.WithMetrics(handler.Metrics())); err != nil {
			return err
		}
		if srv.adminLn, err = net.Listen("tcp", cfg.AdminListen); err != nil {
			return fmt.Errorf("admin API: %w", err)
		}
	}
	if err := srv.listenMetrics(cfg, handler.Metrics(), adminOn); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err // "listen tcp :8080: bind: address already in use"
	}
	return srv.Run(ctx, ln)
}

// startClientCache turns the store's client cache on. Its LISTEN needs a
// session of its own, which a transaction pooler does not give: there it
// listens on AUTHZ_MIGRATE_DATABASE_URL, the direct URL, and without one
// every client is read from the database.
func (c *cli) startClientCache(store *storage.Store, logger *slog.Logger) (stop func(), err error) {
	mode, err := c.pooler()
	if err != nil {
		return nil, err
	}
	if mode != poolerTransaction {
		return store.StartClientCache(nil, logger), nil
	}
	raw := strings.TrimSpace(c.getenv("AUTHZ_MIGRATE_DATABASE_URL"))
	if raw == "" {
		logger.Info("client cache off: behind a transaction pooler it needs a direct connection for LISTEN; set AUTHZ_MIGRATE_DATABASE_URL")
		return func() {}, nil
	}
	cfg, err := pgx.ParseConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("AUTHZ_MIGRATE_DATABASE_URL: %w", err)
	}
	return store.StartClientCache(cfg, logger), nil
}

// listenMetrics opens the metrics' own listener when AUTHZ_METRICS_LISTEN
// asks for one (or names the address of an admin API that is off); by
// default the admin API serves them (authz.WithMetrics).
func (s *server) listenMetrics(cfg authz.Config, m *authz.Metrics, adminOn bool) error {
	switch {
	case cfg.MetricsOff():
		return nil
	case !cfg.MetricsOnAdmin() || !adminOn && cfg.MetricsListen != "":
		ln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		s.metrics, s.metricsLn = authz.MetricsHandler(m), ln
	case !adminOn:
		s.logger.Info("metrics off: they are served on the admin API's listener, which is off; set AUTHZ_METRICS_LISTEN to give them a listener of their own")
	}
	if cfg.Pprof && !adminOn {
		s.logger.Warn("AUTHZ_PPROF is set but the admin API, which serves the profiles, is off")
	}
	return nil
}

// Close closes the side listeners; after Run has closed them, it does
// nothing of consequence.
func (s *server) Close() {
	for _, ln := range []net.Listener{s.adminLn, s.metricsLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

// server is what serve and dev run once everything is ready: the HTTP
// server, the admin API's when there is one, and the janitor.
type server struct {
	handler      http.Handler
	admin        http.Handler // nil: no admin API
	adminLn      net.Listener
	metrics      http.Handler // nil: no listener of the metrics' own
	metricsLn    net.Listener
	store        *storage.Store // the janitor's
	janitorEvery time.Duration  // 0 disables the janitor
	issuer       string         // for the log
	logger       *slog.Logger
}

// Run serves on ln (and closes it) until ctx ends, then shuts down
// gracefully: in-flight requests finish (up to shutdownTimeout), then the
// janitor stops. The caller closes the pool afterwards.
func (s *server) Run(ctx context.Context, ln net.Listener) error {
	logger := s.logger
	newServer := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler:           h,
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       readTimeout,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
	}
	srv := newServer(s.handler)
	served := make(chan error, 3)
	go func() { served <- srv.Serve(ln) }()
	// The admin API and the metrics' own listener, when there are.
	var sides []*http.Server
	for _, side := range []struct {
		name string
		h    http.Handler
		ln   net.Listener
	}{{"admin API", s.admin, s.adminLn}, {"metrics", s.metrics, s.metricsLn}} {
		if side.h == nil {
			continue
		}
		hs := newServer(side.h)
		sides = append(sides, hs)
		go func() {
			if err := hs.Serve(side.ln); !errors.Is(err, http.ErrServerClosed) {
				served <- fmt.Errorf("%s: %w", side.name, err)
			}
		}()
		logger.Info(side.name+" listening", "addr", side.ln.Addr().String())
	}
	logger.Info("listening", "addr", ln.Addr().String(), "issuer", s.issuer, "version", version())

	// The janitor outlives ctx: it is stopped after the server has drained.
	janitorCtx, stopJanitor := context.WithCancel(context.WithoutCancel(ctx))
	var janitorDone sync.WaitGroup
	if s.janitorEvery > 0 {
		janitorDone.Go(func() { runJanitor(janitorCtx, s.store, s.janitorEvery, logger) })
	}
	defer func() {
		stopJanitor()
		janitorDone.Wait()
	}()

	select {
	case err := <-served:
		for _, hs := range sides {
			_ = hs.Close()
		}
		_ = srv.Close()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down", "timeout", shutdownTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	for _, hs := range sides {
		if err := hs.Shutdown(shutdownCtx); err != nil {
			_ = hs.Close()
		}
	}
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("requests still running after %v were cut off: %w", shutdownTimeout, err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	stopJanitor()
	janitorDone.Wait()
	logger.Info("stopped")
	return nil
}

// prepareSchema applies pending migrations when asked (migrateOnStart),
// then refuses to go on unless every migration this binary knows is applied.
func (c *cli) prepareSchema(ctx context.Context, pool *pgxpool.Pool, migrate bool, logger *slog.Logger) error {
	if migrate {
		if err := c.migrateOnStart(ctx, pool, logger); err != nil {
			return err
		}
	}
	return pool.AcquireFunc(ctx, func(conn *pgxpool.Conn) error {
		list, err := storage.MigrationsStatus(ctx, conn.Conn())
		if err != nil {
			return err
		}
		if pending := pendingMigrations(list); len(pending) > 0 {
			return fmt.Errorf("database schema is not up to date: run `authz migrate` (pending: %s)", strings.Join(pending, ", "))
		}
		logger.Debug("database schema is up to date", "version", schemaVersion(list))
		return nil
	})
}

// runJanitor deletes expired rows every interval until ctx ends.
func runJanitor(ctx context.Context, store *storage.Store, every time.Duration, logger *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		deleted, err := store.DeleteExpired(ctx, defaultJanitorBatch)
		if ctx.Err() != nil {
			return
		}
		var attrs []any
		var total int64
		for table, n := range deleted {
			if n > 0 {
				attrs = append(attrs, slog.Int64(table, n))
				total += n
			}
		}
		if total > 0 {
			logger.Info("deleted expired rows", append([]any{slog.Int64("total", total)}, attrs...)...)
		}
		if err != nil {
			logger.Error("delete expired rows", "err", err)
		}
	}
}

// newLogger builds the server's logger from AUTHZ_LOG_LEVEL and
// AUTHZ_LOG_FORMAT.
func newLogger(getenv func(string) string, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if v := getenv("AUTHZ_LOG_LEVEL"); v != "" {
		switch strings.ToLower(v) {
		case "debug", "info", "warn", "error":
			_ = level.UnmarshalText([]byte(v))
		default:
			return nil, fmt.Errorf("AUTHZ_LOG_LEVEL: %q is not one of debug, info, warn, error", v)
		}
	}
	opts := &slog.HandlerOptions{Level: level}
	switch format := getenv("AUTHZ_LOG_FORMAT"); strings.ToLower(format) {
	case "", "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("AUTHZ_LOG_FORMAT: %q is not json or text", format)
	}
}

// janitorInterval reads AUTHZ_JANITOR_INTERVAL; 0 disables the janitor.
func janitorInterval(getenv func(string) string) (time.Duration, error) {
	v := getenv("AUTHZ_JANITOR_INTERVAL")
	if v == "" {
		return defaultJanitorInterval, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("AUTHZ_JANITOR_INTERVAL: %q is not a duration like 10m (0 disables the janitor)", v)
	}
	return d, nil
}
