package main

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/devserver"
)

// devStateRoot keeps the private cluster's data when, running as root, the
// 'postgres' user cannot enter the data directory. A variable so tests can
// point it elsewhere.
var devStateRoot = devserver.DefaultStateRoot

// dev runs a development server (internal/devserver): on the database
// configured, or else on a private PostgreSQL cluster kept in the data
// directory, with a demo user and demo clients whose credentials it
// prints. With --demo it also runs the demo apps; with --seed-only it
// seeds the demo data, prints the credentials as JSON and exits (docker
// compose's demo profile does that).
func (c *cli) dev(ctx context.Context, args []string) error {
	fs := newFlags("dev")
	dbURL := serverDBFlag(fs, "without one, a private PostgreSQL in the data folder")
	listen := fs.String("listen", "", "`address` to listen on (default $AUTHZ_LISTEN, else "+devserver.DefaultListen+": this machine only)")
	issuer := fs.String("issuer", "", "public base `URL` of the server (default $AUTHZ_ISSUER, else http://localhost:<port>)")
	dataDir := fs.String("data-dir", devserver.DefaultDataDir, "`directory` for the private PostgreSQL cluster, the system secret and the demo credentials")
	demo := fs.Bool("demo", false, "also run the demo apps: a web app (BFF) with a \"Get contacts\" button, and the contacts API it calls")
	bffListen := fs.String("demo-bff-listen", devserver.DefaultBFFListen, "`address` of the demo BFF; the demo-bff client's redirect URIs follow its port")
	apiListen := fs.String("demo-api-listen", devserver.DefaultAPIListen, "`address` of the demo contacts API")
	jwtTokens := fs.Bool("demo-jwt-access-tokens", false, "with --demo: the demo BFF gets JWT access tokens (RFC 9068) for the contacts API, which verifies them itself against the JWKS instead of introspecting")
	adminListen := fs.String("admin-listen", "", "`address` of the admin API (default $AUTHZ_ADMIN_LISTEN, else "+authz.DefaultAdminListen+"; off disables it); without AUTHZ_ADMIN_TOKEN it needs no token and must be a loopback address")
	seedOnly := fs.Bool("seed-only", false, "seed the demo user and clients into the database, print their credentials as JSON, and exit")
	pos, err := c.parse(fs, "[flags]", args)
	if err != nil {
		return err
	}
	if err := checkDevFlags(pos, *demo, *seedOnly, *bffListen, *apiListen); err != nil {
		return err
	}
	if *jwtTokens && !*demo {
		return usagef("dev: --demo-jwt-access-tokens goes with --demo")
	}
	cfg, err := authz.ConfigFromEnv(c.getenv)
	if err != nil {
		return err
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *adminListen != "" {
		cfg.AdminListen = *adminListen
	}
	if *issuer != "" {
		cfg.Issuer = *issuer
	}
	logger, err := newLogger(func(name string) string {
		if v := c.getenv(name); v != "" || name != "AUTHZ_LOG_FORMAT" {
			return v
		}
		return "text" // for people, unless told otherwise
	}, c.stderr)
	if err != nil {
		return err
	}
	janitorEvery, err := janitorInterval(c.getenv)
	if err != nil {
		return err
	}
	o := devserver.Options{
		Config:      cfg,
		ListenGiven: *listen != "" || c.getenv("AUTHZ_LISTEN") != "",
		IssuerGiven: *issuer != "" || c.getenv("AUTHZ_ISSUER") != "",
		AdminGiven:  *adminListen != "" || c.getenv("AUTHZ_ADMIN_LISTEN") != "",
		DatabaseURL: c.configuredURL(*dbURL),
		DataDir:     *dataDir,
		Demo:        *demo,
		BFFListen:   *bffListen,
		APIListen:   *apiListen,
		SeedOnly:    *seedOnly,
		StateRoot:   devStateRoot,
		Logger:      logger,
		Stdout:      c.stdout,
		Stderr:      c.stderr,
		Host:        devHost{c: c, janitorEvery: janitorEvery},
	}
	o.JWTAccessTokens = *jwtTokens
	if o.DatabaseURL != "" {
		o.DatabaseShown = "from the configured URL"
		if pc, err := pgconn.ParseConfig(o.DatabaseURL); err == nil {
			o.DatabaseShown = redactedURL(*pc)
		}
	}
	return devserver.Run(ctx, o)
}

// checkDevFlags refuses what dev's flags cannot mean.
func checkDevFlags(pos []string, demo, seedOnly bool, bffListen, apiListen string) error {
	if len(pos) > 0 {
		return usagef("dev: unexpected argument %q", pos[0])
	}
	if demo && seedOnly {
		return usagef("dev: --demo and --seed-only do not go together")
	}
	// Without --demo nothing listens on the BFF's address: its port only
	// makes the demo-bff client's redirect URIs, and cannot be 0.
	_, bffPort, err := net.SplitHostPort(bffListen)
	if err != nil || bffPort == "" || bffPort == "0" && !demo {
		return usagef("dev: --demo-bff-listen %q: want host:port, with a port other than 0 unless with --demo", bffListen)
	}
	if _, _, err := net.SplitHostPort(apiListen); err != nil {
		return usagef("dev: --demo-api-listen %q: want host:port", apiListen)
	}
	return nil
}

// devHost is what dev shares with serve: the database opened and checked
// the same way, and the same server loop.
type devHost struct {
	c            *cli
	janitorEvery time.Duration
}

func (h devHost) OpenDatabase(ctx context.Context, rawURL string, own bool, logger *slog.Logger) (*pgxpool.Pool, error) {
	h.c.ownCluster = own
	pool, err := h.c.openPoolOn(ctx, rawURL)
	if err != nil {
		return nil, err
	}
	if err := h.c.prepareSchema(ctx, pool, true, logger); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

func (h devHost) NewServer(s devserver.Server) (devserver.Runner, error) {
	srv := &server{handler: s.Handler, admin: s.Admin, adminLn: s.AdminLn, store: s.Store,
		janitorEvery: h.janitorEvery, issuer: s.Config.Issuer, logger: s.Logger}
	if err := srv.listenMetrics(s.Config, s.Handler.Metrics(), s.AdminLn != nil); err != nil {
		return nil, err
	}
	return srv, nil
}
