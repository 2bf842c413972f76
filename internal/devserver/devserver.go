// Package devserver runs "authz dev": the authorization server on a private
// PostgreSQL cluster (or a configured database), with a system secret, a
// demo user and demo clients kept in a data directory, and on request the
// demo apps. Everything survives a restart. FindDatabase lets the CLI find
// that database from the same folder.
//
// The command (cmd/authz) parses flags and environment and provides the
// Host: what dev shares with "authz serve".
package devserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/demo/api"
	"github.com/authz/authz/internal/demo/bff"
	"github.com/authz/authz/storage"
)

// DefaultDataDir is where dev keeps its data unless told otherwise,
// relative to the folder it runs in; the CLI looks there for dev's
// database.
const DefaultDataDir = ".data"

// DefaultListen keeps dev on this machine unless --listen or AUTHZ_LISTEN
// says otherwise: its banner prints the demo password.
const DefaultListen = "127.0.0.1:8080"

// Host is what dev shares with "authz serve"; the command provides it.
type Host interface {
	// OpenDatabase opens a pool on rawURL, applies pending migrations and
	// checks the schema. own: rawURL is dev's own cluster, reached
	// directly whatever the pooler settings say.
	OpenDatabase(ctx context.Context, rawURL string, own bool, logger *slog.Logger) (*pgxpool.Pool, error)
	// NewServer readies serve's server loop for s.
	NewServer(s Server) (Runner, error)
}

// Server is what dev serves.
type Server struct {
	Config  authz.Config
	Handler *authz.Handler
	Store   *storage.Store
	Admin   http.Handler // nil: no admin API
	AdminLn net.Listener
	Logger  *slog.Logger
}

// Runner is serve's server loop.
type Runner interface {
	// Run serves on ln until ctx ends, then shuts down gracefully.
	Run(ctx context.Context, ln net.Listener) error
	// Close releases what NewServer opened, if Run did not.
	Close()
}

// Options say how to run dev.
type Options struct {
	// Config is the server's configuration from the environment, with the
	// flags applied.
	Config authz.Config
	// ListenGiven, IssuerGiven: --listen or AUTHZ_LISTEN, --issuer or
	// AUTHZ_ISSUER chose them. Else dev listens on DefaultListen and the
	// issuer is http://localhost:PORT.
	ListenGiven, IssuerGiven bool
	// AdminGiven: --admin-listen or AUTHZ_ADMIN_LISTEN asked for the admin
	// API, which must then start.
	AdminGiven bool
	// DatabaseURL is the configured database; empty: dev runs its own
	// cluster, in DataDir. DatabaseShown is it as the banner shows it,
	// without its password.
	DatabaseURL, DatabaseShown string
	// DataDir keeps the cluster, the system secret and the demo
	// credentials.
	DataDir string
	// Demo also runs the demo apps on BFFListen and APIListen. The demo-bff
	// client's redirect URIs follow BFFListen's port.
	Demo                 bool
	BFFListen, APIListen string
	// JWTAccessTokens, with Demo: the demo-bff client gets JWT access
	// tokens (RFC 9068) for the API's URL, which the BFF asks for as its
	// resource (RFC 8707), and the API verifies them locally against the
	// JWKS instead of introspecting.
	JWTAccessTokens bool
	// SeedOnly seeds the demo user and clients, prints their credentials
	// as JSON and returns.
	SeedOnly bool
	// StateRoot keeps the cluster's data when, running as root, the
	// 'postgres' user cannot enter DataDir (default DefaultStateRoot).
	StateRoot string

	Logger         *slog.Logger
	Stdout, Stderr io.Writer
	Host           Host
}

// dev is one run.
type dev struct {
	o         Options
	cfg       authz.Config
	log       *slog.Logger
	dataDir   string // absolute
	adminOn   bool
	adminNote string // where the admin API is, or why it is not
	bffOrigin string // the demo-bff client's redirect URIs' origin

	ln, adminLn, bffLn, apiLn net.Listener
}

// Run runs a development server until ctx ends: on the database
// configured, or else on a private PostgreSQL cluster kept in the data
// directory; with a system secret kept there too, and a demo user and
// demo clients whose credentials it prints. With Demo it also runs the
// demo apps once the provider listens. When ctx ends it shuts the demo
// apps down, then the server, then the cluster.
func Run(ctx context.Context, o Options) (err error) {
	d, err := newDev(o)
	if err != nil {
		return err
	}
	// Listen first: a port in use fails at once, not after a database
	// start.
	defer d.closeListeners() // on early returns; serving closes them otherwise
	if err := d.listen(); err != nil {
		return err
	}
	db, err := d.openDatabase(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.close()) }()
	creds, err := seedDemo(ctx, db.store, filepath.Join(d.dataDir, demoFile), demoClients(d.bffOrigin, d.jwtResource()), d.log)
	if err != nil {
		return err
	}
	if o.SeedOnly {
		return printCredentials(o.Stdout, creds)
	}
	return d.serve(ctx, db, creds)
}

func newDev(o Options) (*dev, error) {
	if o.StateRoot == "" {
		o.StateRoot = DefaultStateRoot
	}
	d := &dev{o: o, cfg: o.Config, log: o.Logger, adminNote: "off (AUTHZ_ADMIN_LISTEN=off)"}
	if !o.ListenGiven {
		d.cfg.Listen = DefaultListen
	}
	d.adminOn = !strings.EqualFold(d.cfg.AdminListen, "off")
	if d.adminOn && d.cfg.AdminToken == "" {
		// Dev mode may run the admin API without a token, but only where
		// nothing but this machine can reach it.
		if !loopbackAddr(d.cfg.AdminListen) {
			return nil, fmt.Errorf("dev: the admin API without AUTHZ_ADMIN_TOKEN must listen on a loopback address, not %q", d.cfg.AdminListen)
		}
		d.cfg.AdminWithoutToken = true
	}
	dataDir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	// 0755: as root, the 'postgres' user may have to pass through to the
	// cluster in pg/. What is secret in it is 0600.
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	d.dataDir = dataDir
	return d, nil
}

// listen opens the listeners: the server's and the admin API's unless
// seeding only (which serves nothing and needs no system secret), the demo
// apps' with Demo.
func (d *dev) listen() error {
	if !d.o.SeedOnly {
		if err := d.listenServer(); err != nil {
			return err
		}
	}
	_, bffPort, _ := net.SplitHostPort(d.o.BFFListen)
	if d.o.Demo {
		var err error
		if d.bffLn, err = listenTCP(d.o.BFFListen, flagHint("--demo-bff-listen")); err != nil {
			return err
		}
		if d.apiLn, err = listenTCP(d.o.APIListen, flagHint("--demo-api-listen")); err != nil {
			return err
		}
		bffPort = strconv.Itoa(d.bffLn.Addr().(*net.TCPAddr).Port)
	}
	// The BFF's pages are at http://localhost:PORT, whatever address it
	// listens on: redirect URIs may be http only for this machine.
	d.bffOrigin = "http://" + net.JoinHostPort("localhost", bffPort)
	return nil
}

func flagHint(flag string) func(string) string {
	return func(free string) string { return flag + " " + free }
}

func (d *dev) listenServer() error {
	if len(d.cfg.Secrets) == 0 { // AUTHZ_SECRETS wins
		secret, err := loadOrCreateSecret(filepath.Join(d.dataDir, secretFile))
		if err != nil {
			return err
		}
		d.cfg.Secrets = [][]byte{secret}
	}
	if err := d.cfg.Validate(); err != nil {
		return err
	}
	var err error
	d.ln, err = listenTCP(d.cfg.Listen, func(free string) string { return "AUTHZ_LISTEN=" + free })
	if err != nil {
		return err
	}
	if !d.o.IssuerGiven {
		host := d.cfg.Listen
		if !d.o.ListenGiven {
			host = "" // DefaultListen: this machine, by the name people type
		}
		d.cfg.Issuer = localIssuer(host, d.ln.Addr())
	}
	if !d.adminOn {
		return nil
	}
	d.adminLn, err = listenTCP(d.cfg.AdminListen, flagHint("--admin-listen"))
	switch {
	case err == nil:
	case d.o.AdminGiven:
		return fmt.Errorf("admin API: %w", err)
	default:
		// Not asked for: the provider matters more than its admin API.
		d.adminNote = fmt.Sprintf("not running: %v", err)
		d.log.Warn("admin API not started", "err", err)
	}
	return nil
}

func (d *dev) closeListeners() {
	for _, ln := range []net.Listener{d.ln, d.adminLn, d.bffLn, d.apiLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

// database is the database dev serves.
type database struct {
	store *storage.Store
	own   bool   // dev's own cluster
	url   string // the own cluster's
	data  string // what is kept where, for the banner
	close func() error
}

// openDatabase opens the configured database, or else starts the private
// cluster and records its URL for the CLI; close undoes it all.
func (d *dev) openDatabase(ctx context.Context) (*database, error) {
	if d.o.DatabaseURL != "" {
		return d.openConfigured(ctx)
	}
	cluster, err := startCluster(ctx, d.dataDir, d.o.StateRoot, d.o.Stderr, d.log)
	if err != nil {
		return nil, err
	}
	stop := func() error {
		err := removeState(d.dataDir)
		if stopErr := cluster.Stop(); stopErr != nil {
			return errors.Join(err, fmt.Errorf("stop PostgreSQL: %w", stopErr))
		}
		d.log.Info("stopped PostgreSQL", "data", cluster.DataDir())
		return err
	}
	url, err := createDatabase(ctx, cluster, demoDatabase)
	if err != nil {
		return nil, errors.Join(err, stop())
	}
	pool, err := d.o.Host.OpenDatabase(ctx, url, true, d.log)
	if err != nil {
		return nil, errors.Join(err, stop())
	}
	db := &database{store: storage.New(pool), own: true, url: url, close: func() error { pool.Close(); return stop() }}
	if !d.o.SeedOnly {
		if err := writeState(d.dataDir, state{DatabaseURL: url, PID: os.Getpid(), Issuer: d.cfg.Issuer}); err != nil {
			return nil, errors.Join(err, db.close())
		}
	}
	db.data = relPath(d.dataDir) + ", with PostgreSQL's data in " + relPath(cluster.DataDir())
	if link := filepath.Join(d.dataDir, "pg"); cluster.DataDir() != link {
		db.data += " (linked from " + relPath(link) + ")"
	}
	return db, nil
}

func (d *dev) openConfigured(ctx context.Context) (*database, error) {
	pool, err := d.o.Host.OpenDatabase(ctx, d.o.DatabaseURL, false, d.log)
	if err != nil {
		return nil, err
	}
	return &database{
		store: storage.New(pool),
		data:  relPath(d.dataDir) + " (the system secret and the demo credentials); database " + d.o.DatabaseShown,
		close: func() error { pool.Close(); return nil },
	}, nil
}

// serve builds the server, prints the banner and serves until ctx ends.
func (d *dev) serve(ctx context.Context, db *database, creds *demoCredentials) error {
	// Error pages tell the developer why; the home page shows what the
	// banner does.
	d.cfg.Dev = true
	d.cfg.DevHome = devHome(d.cfg.Issuer, d.bffOrigin, creds)
	handler, err := authz.New(d.cfg, db.store, d.log)
	if err != nil {
		return err
	}
	defer db.store.StartClientCache(nil, d.log)() // as authz serve does
	s := Server{Config: d.cfg, Handler: handler, Store: db.store, Logger: d.log}
	if d.adminLn != nil {
		if s.Admin, err = authz.NewAdmin(d.cfg, db.store, d.log, authz.WithMetrics(handler.Metrics())); err != nil {
			return err
		}
		s.AdminLn = d.adminLn
		d.adminNote = "http://" + dialAddr(d.adminLn.Addr()) + "/admin/clients"
		if d.cfg.AdminWithoutToken {
			d.adminNote += "  (no token in dev mode)"
		} else {
			d.adminNote += "  (Authorization: Bearer $AUTHZ_ADMIN_TOKEN)"
		}
	}
	runner, err := d.o.Host.NewServer(s)
	if err != nil {
		return err
	}
	defer runner.Close() // on early returns; Run closes them otherwise
	b := banner{issuer: d.cfg.Issuer, data: db.data, ownCluster: db.own, databaseURL: db.url, dataDir: relPath(d.dataDir),
		creds: creds, bffOrigin: d.bffOrigin, admin: d.adminNote}
	if !d.o.Demo {
		b.print(d.o.Stdout)
		return runner.Run(ctx, d.ln)
	}
	b.apps = d.demoApps(creds)
	return runWithDemo(ctx, runner.Run, d.ln, b.apps, func() { b.print(d.o.Stdout) })
}

// jwtResource is the demo API's URL when it verifies JWT access tokens
// (the resource they are for), else "".
func (d *dev) jwtResource() string {
	if !d.o.Demo || !d.o.JWTAccessTokens {
		return ""
	}
	return "http://" + dialAddr(d.apiLn.Addr())
}

// demoApps configures the demo apps for the demo clients.
func (d *dev) demoApps(creds *demoCredentials) *demoApps {
	apps := &demoApps{
		bffLn: d.bffLn,
		apiLn: d.apiLn,
		bff: bff.Config{
			Issuer:         d.cfg.Issuer,
			ClientID:       demoBFF,
			ClientSecret:   creds.ClientSecrets[demoBFF],
			RedirectURI:    d.bffOrigin + "/callback",
			APIURL:         "http://" + dialAddr(d.apiLn.Addr()),
			Scopes:         strings.Fields(bff.DefaultScope),
			StartupTimeout: demoStartupTimeout,
		},
		api: api.Config{
			Issuer:         d.cfg.Issuer,
			ClientID:       demoAPI,
			ClientSecret:   creds.ClientSecrets[demoAPI],
			Cache:          api.DefaultCache,
			StartupTimeout: demoStartupTimeout,
		},
		logger: d.log,
	}
	if resource := d.jwtResource(); resource != "" {
		apps.bff.Resource = resource
		apps.api.Verify, apps.api.Resource = api.VerifyJWT, resource
	}
	return apps
}
