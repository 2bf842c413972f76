package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/demo"
	"github.com/authz/authz/internal/demo/api"
	"github.com/authz/authz/internal/demo/bff"
	"github.com/authz/authz/internal/pgcluster"
	"github.com/authz/authz/storage"
)

// The demo data that dev seeds once. The ids are fixed so that a restart
// finds them, and so that README examples can name them.
const (
	demoUsername    = "alice"
	demoBFF         = "demo-bff"
	demoSPA         = "demo-spa"
	demoAPI         = "demo-api"
	demoRedirectSPA = "http://localhost:5173/callback"
	demoDatabase    = "authz" // on the private cluster

	// Where --demo runs the demo apps (internal/demo/bff and api).
	demoBFFListen = "127.0.0.1:3000"
	demoAPIListen = "127.0.0.1:4000"
	// How long the demo apps wait for discovery: the provider is up
	// already, so only an issuer this machine cannot reach takes long.
	demoStartupTimeout = 10 * time.Second
)

// demoClients are the demo clients; the BFF's pages are at bffOrigin
// (http://localhost:3000 unless --demo-bff-listen says another port), the
// origin of its redirect and post-logout redirect URIs.
func demoClients(bffOrigin string) []authz.ClientMetadata {
	return []authz.ClientMetadata{{
		ClientID:                demoBFF,
		ClientName:              "Contacts demo",
		RedirectURIs:            []string{bffOrigin + "/callback"},
		Scope:                   bff.DefaultScope,
		TokenEndpointAuthMethod: "client_secret_basic",
		PostLogoutRedirectURIs:  []string{bffOrigin + "/"},
	}, {
		ClientID:                demoSPA,
		ClientName:              "Contacts SPA",
		RedirectURIs:            []string{demoRedirectSPA},
		Scope:                   "openid profile email",
		TokenEndpointAuthMethod: "none",
	}, {
		ClientID:                demoAPI,
		ClientName:              "Contacts API",
		GrantTypes:              []string{"client_credentials"},
		TokenEndpointAuthMethod: "client_secret_basic",
	}}
}

// devStateRoot keeps the private cluster's data when, running as root, the
// 'postgres' user cannot enter the data directory (a checkout under /root).
// A variable so tests can point it elsewhere.
var devStateRoot = "/var/lib/authz-dev"

// installPostgres is what to do when there is no PostgreSQL to start.
const installPostgres = "install PostgreSQL (Debian: sudo apt-get install -y postgresql) or set AUTHZ_DATABASE_URL"

// dev runs a development server: on the database configured, or else on a
// private PostgreSQL cluster kept in the data directory; with a system
// secret kept there too, and a demo user and demo clients whose credentials
// it prints. Everything survives a restart. With --demo it also runs the
// demo apps, the contacts API and the BFF, once the provider listens. When
// ctx ends it shuts the demo apps down, then the server, then the cluster.
//
// With --seed-only it seeds the demo user and clients, prints their
// credentials as JSON and exits: docker compose's demo profile does that
// before it starts the demo apps in containers of their own.
func (c *cli) dev(ctx context.Context, args []string) (err error) {
	fs := newFlags("dev")
	dbURL := dbFlag(fs)
	listen := fs.String("listen", "", "`address` to listen on (default $AUTHZ_LISTEN, else :8080)")
	issuer := fs.String("issuer", "", "public base `URL` of the server (default $AUTHZ_ISSUER, else http://localhost:<port>)")
	dataFlag := fs.String("data-dir", ".data", "`directory` for the private PostgreSQL cluster, the system secret and the demo credentials")
	demoFlag := fs.Bool("demo", false, "also run the demo apps: a web app (BFF) with a \"Get contacts\" button, and the contacts API it calls")
	bffListen := fs.String("demo-bff-listen", demoBFFListen, "`address` of the demo BFF; the demo-bff client's redirect URIs follow its port")
	apiListen := fs.String("demo-api-listen", demoAPIListen, "`address` of the demo contacts API")
	adminListen := fs.String("admin-listen", "", "`address` of the admin API (default $AUTHZ_ADMIN_LISTEN, else "+authz.DefaultAdminListen+"; off disables it); without AUTHZ_ADMIN_TOKEN it needs no token and must be a loopback address")
	seedOnly := fs.Bool("seed-only", false, "seed the demo user and clients into the database, print their credentials as JSON, and exit")
	pos, err := c.parse(fs, "[flags]", args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("dev: unexpected argument %q", pos[0])
	}
	if *demoFlag && *seedOnly {
		return usagef("dev: --demo and --seed-only do not go together")
	}
	// The BFF's pages are at http://localhost:PORT, whatever address it
	// listens on: redirect URIs may be http only for this machine.
	_, bffPort, err := net.SplitHostPort(*bffListen)
	if err != nil || bffPort == "" || bffPort == "0" && !*demoFlag {
		return usagef("dev: --demo-bff-listen %q: want host:port, with a port other than 0 unless with --demo", *bffListen)
	}
	if _, _, err := net.SplitHostPort(*apiListen); err != nil {
		return usagef("dev: --demo-api-listen %q: want host:port", *apiListen)
	}

	cfg, err := authz.ConfigFromEnv(c.getenv)
	if err != nil {
		return err
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	adminAsked := *adminListen != "" || c.getenv("AUTHZ_ADMIN_LISTEN") != ""
	if *adminListen != "" {
		cfg.AdminListen = *adminListen
	}
	adminOn := !strings.EqualFold(cfg.AdminListen, "off")
	if adminOn && cfg.AdminToken == "" {
		// Dev mode may run the admin API without a token, but only where
		// nothing but this machine can reach it.
		if !loopbackAddr(cfg.AdminListen) {
			return fmt.Errorf("dev: the admin API without AUTHZ_ADMIN_TOKEN must listen on a loopback address, not %q", cfg.AdminListen)
		}
		cfg.AdminWithoutToken = true
	}
	// Without an issuer, it is this machine at the port listened on (known
	// once listening: --listen :0 picks one).
	issuerGiven := *issuer != "" || c.getenv("AUTHZ_ISSUER") != ""
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
	dataDir, err := filepath.Abs(*dataFlag)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	// 0755: as root, the 'postgres' user may have to pass through to the
	// cluster in pg/. What is secret in it is 0600.
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}

	// Listen first: a port in use fails at once, not after a database
	// start. Seeding serves nothing and needs no system secret.
	var ln, adminLn, bffLn, apiLn net.Listener
	adminNote := "off (AUTHZ_ADMIN_LISTEN=off)"
	if !*seedOnly {
		if len(cfg.Secrets) == 0 { // AUTHZ_SECRETS wins
			secret, err := loadOrCreateSecret(filepath.Join(dataDir, "secret"))
			if err != nil {
				return err
			}
			cfg.Secrets = [][]byte{secret}
		}
		if err := cfg.Validate(); err != nil {
			return err
		}
		if ln, err = listenTCP(cfg.Listen, "AUTHZ_LISTEN=:8090"); err != nil {
			return err
		}
		defer ln.Close() // on early returns; run closes it otherwise
		if !issuerGiven {
			cfg.Issuer = localIssuer(cfg.Listen, ln.Addr())
		}
		if adminOn {
			adminLn, err = listenTCP(cfg.AdminListen, "--admin-listen 127.0.0.1:8091")
			switch {
			case err == nil:
				defer adminLn.Close()
			case adminAsked:
				return fmt.Errorf("admin API: %w", err)
			default:
				// Not asked for: the provider matters more than its admin API.
				adminNote = fmt.Sprintf("not running: %v", err)
				logger.Warn("admin API not started", "err", err)
			}
		}
	}
	if *demoFlag {
		if bffLn, err = listenTCP(*bffListen, "--demo-bff-listen 127.0.0.1:3001"); err != nil {
			return err
		}
		defer bffLn.Close()
		if apiLn, err = listenTCP(*apiListen, "--demo-api-listen 127.0.0.1:4001"); err != nil {
			return err
		}
		defer apiLn.Close()
		bffPort = fmt.Sprint(bffLn.Addr().(*net.TCPAddr).Port)
	}
	bffOrigin := "http://" + net.JoinHostPort("localhost", bffPort)

	rawURL, noDB := c.dbURL(*dbURL)
	ownCluster := noDB != nil // none configured: start our own
	data := relPath(dataDir) + " (the system secret and the demo credentials); "
	if ownCluster {
		c.ownCluster = true
		cluster, startErr := c.startCluster(ctx, dataDir, logger)
		if startErr != nil {
			return startErr
		}
		defer func() { // err: the named result
			if stopErr := cluster.Stop(); stopErr != nil {
				err = errors.Join(err, fmt.Errorf("stop PostgreSQL: %w", stopErr))
				return
			}
			logger.Info("stopped PostgreSQL", "data", cluster.DataDir())
		}()
		if rawURL, err = createDatabase(ctx, cluster, demoDatabase); err != nil {
			return err
		}
		data = relPath(dataDir) + ", with PostgreSQL's data in " + relPath(cluster.DataDir())
		if link := filepath.Join(dataDir, "pg"); cluster.DataDir() != link {
			data += " (linked from " + relPath(link) + ")"
		}
	} else if pc, err := pgconn.ParseConfig(rawURL); err == nil {
		data += "database " + redactedURL(*pc)
	} else {
		data += "database from the configured URL"
	}

	pool, err := c.openPool(ctx, rawURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := c.prepareSchema(ctx, pool, true, logger); err != nil {
		return err
	}
	store := storage.New(pool)
	creds, err := seedDemo(ctx, store, filepath.Join(dataDir, "demo.json"), demoClients(bffOrigin), logger)
	if err != nil {
		return err
	}
	if *seedOnly {
		return printCredentials(c.stdout, creds)
	}
	handler, err := authz.New(cfg, store, logger)
	if err != nil {
		return err
	}
	srv := &server{handler: handler, store: store, janitorEvery: janitorEvery, issuer: cfg.Issuer, logger: logger}
	if err := srv.listenMetrics(cfg, handler.Metrics(), adminLn != nil); err != nil {
		return err
	}
	defer srv.closeListeners() // on early returns; run closes them otherwise
	if adminLn != nil {
		if srv.admin, err = authz.NewAdmin(cfg, store, logger, authz.WithMetrics(handler.Metrics())); err != nil {
			return err
		}
		srv.adminLn = adminLn
		adminNote = "http://" + dialAddr(adminLn.Addr()) + "/admin/clients"
		if cfg.AdminWithoutToken {
			adminNote += "  (no token in dev mode)"
		} else {
			adminNote += "  (Authorization: Bearer $AUTHZ_ADMIN_TOKEN)"
		}
	}
	b := banner{issuer: cfg.Issuer, data: data, ownCluster: ownCluster, dataDir: relPath(dataDir), creds: creds, bffOrigin: bffOrigin, admin: adminNote}
	if !*demoFlag {
		b.print(c.stdout)
		return srv.run(ctx, ln)
	}
	b.apps = &demoApps{
		bffLn: bffLn,
		apiLn: apiLn,
		bff: bff.Config{
			Issuer:         cfg.Issuer,
			ClientID:       demoBFF,
			ClientSecret:   creds.ClientSecrets[demoBFF],
			RedirectURI:    bffOrigin + "/callback",
			APIURL:         "http://" + dialAddr(apiLn.Addr()),
			Scopes:         strings.Fields(bff.DefaultScope),
			StartupTimeout: demoStartupTimeout,
		},
		api: api.Config{
			Issuer:         cfg.Issuer,
			ClientID:       demoAPI,
			ClientSecret:   creds.ClientSecrets[demoAPI],
			Cache:          api.DefaultCache,
			StartupTimeout: demoStartupTimeout,
		},
		logger: logger,
	}
	return runWithDemo(ctx, srv, ln, b.apps, func() { b.print(c.stdout) })
}

// listenTCP listens on addr; when another program has the port, the error
// says how to choose another (hint: the flag or variable, with an example).
func listenTCP(addr, hint string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("%w: another program has the port; stop it, or choose another port with %s", err, hint)
	}
	return ln, err
}

// dialAddr is where this machine reaches a listener: its address, with
// 127.0.0.1 for "every address".
func dialAddr(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String()
	}
	ip := tcp.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(tcp.Port))
}

// demoApps are the demo apps that dev --demo runs, on listeners of their
// own.
type demoApps struct {
	bffLn, apiLn net.Listener
	bff          bff.Config
	api          api.Config
	logger       *slog.Logger
}

// run discovers the provider (which must be serving), then serves the API
// and the BFF until ctx ends or one of them fails; ready is called once
// both serve. Cancelled while discovering, it returns nil.
func (d *demoApps) run(ctx context.Context, ready func()) error {
	defer d.bffLn.Close() // Serve closes them; this is for early returns
	defer d.apiLn.Close()
	apiLog, bffLog := d.logger.With("app", demoAPI), d.logger.With("app", demoBFF)
	apiHandler, err := api.NewHandler(ctx, d.api, apiLog)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("demo API: %w", err)
	}
	bffHandler, err := bff.NewServer(ctx, d.bff, bffLog)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("demo BFF: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	served := make(chan error, 2)
	go func() { served <- wrapErr("demo API", demo.Serve(ctx, d.apiLn, apiHandler, apiLog)) }()
	go func() { served <- wrapErr("demo BFF", demo.Serve(ctx, d.bffLn, bffHandler, bffLog)) }()
	d.logger.Info("demo apps listening", "bff", d.bffLn.Addr().String(), "api", d.apiLn.Addr().String())
	ready()
	err = <-served // nil once ctx ended; else one failed: stop the other
	cancel()
	return errors.Join(err, <-served)
}

func wrapErr(what string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// runWithDemo serves the provider on ln and, once it listens, the demo
// apps, until ctx ends; ready is called when all three serve. The demo
// apps stop first (a sign-in in flight still needs the provider), then the
// provider. If any of them fails, all stop.
func runWithDemo(ctx context.Context, srv *server, ln net.Listener, apps *demoApps, ready func()) error {
	providerCtx, stopProvider := context.WithCancel(context.WithoutCancel(ctx))
	defer stopProvider()
	provider := make(chan error, 1)
	go func() { provider <- srv.run(providerCtx, ln) }()

	appsCtx, stopApps := context.WithCancel(ctx)
	defer stopApps()
	demos := make(chan error, 1)
	go func() { demos <- apps.run(appsCtx, ready) }()

	select {
	case err := <-provider: // failed: nothing stopped it
		stopApps()
		return errors.Join(err, <-demos)
	case err := <-demos: // ctx ended, or an app failed
		stopProvider()
		return errors.Join(err, <-provider)
	}
}

// loopbackAddr reports whether a listen address is on this machine only:
// localhost or a loopback IP, with a port.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// localIssuer is http://localhost:PORT for a server listening on every
// address (or on localhost), else http://HOST:PORT with the host as given.
func localIssuer(listen string, addr net.Addr) string {
	host, _, _ := net.SplitHostPort(listen)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	port := "8080"
	if tcp, ok := addr.(*net.TCPAddr); ok {
		port = fmt.Sprint(tcp.Port)
	}
	return "http://" + net.JoinHostPort(host, port)
}

// relPath shows path relative to the working directory when it is inside
// it, as people typed it.
func relPath(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	rel, err := filepath.Rel(wd, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return path
	}
	return rel
}

// loadOrCreateSecret reads the system secret from path, or generates one
// (48 random bytes, base64) and writes it there, readable by the owner only.
func loadOrCreateSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		secret := strings.TrimSpace(string(b))
		if len(secret) < authz.MinSecretLength {
			return nil, fmt.Errorf("%s: the system secret is %d bytes, want at least %d (delete the file to have a new one made)",
				path, len(secret), authz.MinSecretLength)
		}
		return []byte(secret), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read system secret: %w", err)
	}
	secret := base64.StdEncoding.EncodeToString(randomBytes(48))
	if err := writeFileAtomic(path, []byte(secret+"\n")); err != nil {
		return nil, fmt.Errorf("write system secret: %w", err)
	}
	return []byte(secret), nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand panics instead)
	return b
}

// writeFileAtomic writes data to path with mode 0600 through a temporary
// file, so that a crash leaves the old file or the new one, never half.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path) // CreateTemp made it 0600
}

// startCluster starts the private cluster for dataDir, installing
// PostgreSQL first if it is missing and we may.
func (c *cli) startCluster(ctx context.Context, dataDir string, logger *slog.Logger) (*pgcluster.Cluster, error) {
	if err := ensurePostgres(ctx, os.Geteuid() == 0, pgcluster.FindBinaries, c.aptInstallPostgres); err != nil {
		return nil, err
	}
	pgDir, err := clusterDir(dataDir, logger)
	if err != nil {
		return nil, err
	}
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{
		DataDir: pgDir,
		Durable: true,
		Logf:    func(format string, args ...any) { logger.Info(fmt.Sprintf(format, args...)) },
	})
	if err != nil {
		if errors.Is(err, pgcluster.ErrNoBinaries) {
			err = fmt.Errorf("%w; %s", err, installPostgres)
		}
		return nil, fmt.Errorf("start PostgreSQL: %w", err)
	}
	return cluster, nil
}

// ensurePostgres makes sure the PostgreSQL server binaries are installed:
// as root it installs them (install) when they are missing; otherwise it
// says what to install.
func ensurePostgres(ctx context.Context, root bool, find func() (string, error), install func(context.Context) error) error {
	_, err := find()
	if !errors.Is(err, pgcluster.ErrNoBinaries) {
		return err
	}
	if !root {
		return fmt.Errorf("%w; %s", err, installPostgres)
	}
	if err := install(ctx); err != nil {
		return fmt.Errorf("install postgresql: %w; %s", err, installPostgres)
	}
	if _, err := find(); err != nil {
		return fmt.Errorf("installed postgresql, but: %w", err)
	}
	return nil
}

// aptInstallPostgres installs Debian's postgresql package.
func (c *cli) aptInstallPostgres(ctx context.Context) error {
	if _, err := exec.LookPath("apt-get"); err != nil {
		return errors.New("no apt-get here")
	}
	steps := [][]string{
		{"apt-get", "update", "-q"},
		{"apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"},
	}
	fmt.Fprintln(c.stderr, "authz dev: PostgreSQL is not installed; installing it with: apt-get update && apt-get install -y postgresql")
	for _, step := range steps {
		// Not CommandContext: a Ctrl-C reaches apt-get from the terminal,
		// and it should stop the way it knows, not be killed mid-install.
		cmd := exec.Command(step[0], step[1:]...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		cmd.Stdout, cmd.Stderr = c.stderr, c.stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(step, " "), err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// clusterDir decides where the cluster for dataDir keeps its data:
// dataDir/pg, unless (running as root) the 'postgres' user cannot reach it,
// e.g. in a checkout under /root (0700). Then the data lives under
// devStateRoot, in a directory named after dataDir's path, and dataDir/pg is
// a symbolic link to it, so that later starts find it. Nobody's directory
// is loosened.
func clusterDir(dataDir string, logger *slog.Logger) (string, error) {
	link := filepath.Join(dataDir, "pg")
	fi, err := os.Lstat(link)
	switch {
	case err == nil && fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(link)
		if err != nil {
			return "", fmt.Errorf("data directory: %w", err)
		}
		return target, nil // Start recreates it if it went missing
	case err == nil:
		return link, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("data directory: %w", err)
	}

	var unreachable *pgcluster.UnreachableError
	if err := pgcluster.CheckReachable(link); !errors.As(err, &unreachable) {
		return link, err // nil: dataDir/pg will do
	}
	// The checks above and Start follow the link; the 'postgres' user
	// never needs to pass dataDir.
	sum := sha256.Sum256([]byte(dataDir))
	state := filepath.Join(devStateRoot, hex.EncodeToString(sum[:])[:12])
	for _, dir := range []string{devStateRoot, state} {
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("create %s: %w", dir, err)
		}
		if err := os.Chmod(dir, 0o755); err != nil { // ours; whatever the umask
			return "", err
		}
	}
	target := filepath.Join(state, "pg")
	// With no link to it, a cluster there was left by a data directory of
	// the same path that has been deleted: start over, as its owner meant.
	if _, err := os.Lstat(target); err == nil {
		logger.Warn("removing the cluster of a deleted data directory", "dir", target)
		if err := os.RemoveAll(target); err != nil {
			return "", err
		}
	}
	if err := os.Symlink(target, link); err != nil {
		return "", fmt.Errorf("data directory: %w", err)
	}
	logger.Info("the postgres user cannot enter "+unreachable.Blocker+", so PostgreSQL's data goes to "+target+
		", linked from "+relPath(link), "mode", fmt.Sprintf("%#o", unreachable.Mode))
	return target, nil
}

// createDatabase creates database name on the cluster unless it exists, and
// returns its URL.
func createDatabase(ctx context.Context, cluster *pgcluster.Cluster, name string) (string, error) {
	conn, err := pgx.Connect(ctx, cluster.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", fmt.Errorf("look for database %s: %w", name, err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			return "", fmt.Errorf("create database %s: %w", name, err)
		}
	}
	return cluster.URL(name), nil
}

// demoCredentials are the demo user's password and the demo clients'
// secrets, kept in the data directory (0600) so that every start can print
// them: the database has only their hashes.
type demoCredentials struct {
	Password      string            `json:"alice_password"`
	ClientSecrets map[string]string `json:"client_secrets"`

	// passwordUnknown: alice existed, with another password. She may be
	// someone's own test user, so she is left alone.
	passwordUnknown bool
}

func loadDemo(path string) (*demoCredentials, error) {
	d := &demoCredentials{}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		b, err = []byte("{}"), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read demo credentials: %w", err)
	}
	if err := json.Unmarshal(b, d); err != nil {
		return nil, fmt.Errorf("%s: %w (delete it to have new demo credentials made)", path, err)
	}
	if d.ClientSecrets == nil {
		d.ClientSecrets = map[string]string{}
	}
	return d, nil
}

func (d *demoCredentials) save(path string) error {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(path, append(b, '\n')); err != nil {
		return fmt.Errorf("write demo credentials: %w", err)
	}
	return nil
}

// seedDemo makes sure the demo user and clients exist and that the
// credentials in path work: what is missing is created once. A demo
// client's secret that path does not know (the file was deleted, or the
// database was seeded from another data directory) is replaced, so that
// what the banner shows works, and its redirect URIs are set to this run's
// (the BFF's port may change); a user alice with another password is left
// alone (she may be someone's own, made by hand as the README shows).
func seedDemo(ctx context.Context, store *storage.Store, path string, clients []authz.ClientMetadata, logger *slog.Logger) (*demoCredentials, error) {
	creds, err := loadDemo(path)
	if err != nil {
		return nil, err
	}
	if err := seedUser(ctx, store, creds, path, logger); err != nil {
		return nil, err
	}
	for _, m := range clients {
		if err := seedClient(ctx, store, m, creds, path, logger); err != nil {
			return nil, err
		}
	}
	return creds, nil
}

func seedUser(ctx context.Context, store *storage.Store, creds *demoCredentials, path string, logger *slog.Logger) error {
	if creds.Password == "" {
		// Saved before it is used, so that it is never lost.
		creds.Password = strings.ToLower(rand.Text()[:16])
		if err := creds.save(path); err != nil {
			return err
		}
	}
	u, err := store.UserByUsername(ctx, demoUsername)
	if errors.Is(err, storage.ErrNotFound) {
		u = &storage.User{Username: demoUsername, Name: "Alice Example", Email: "alice@example.com", EmailVerified: true}
		err = store.CreateUser(ctx, u, creds.Password)
		if err == nil {
			logger.Info("created the demo user", "username", demoUsername)
			return nil
		}
		if !errors.Is(err, storage.ErrAlreadyExists) {
			return fmt.Errorf("create the demo user: %w", err)
		}
		u, err = store.UserByUsername(ctx, demoUsername) // another instance was first
	}
	if err != nil {
		return fmt.Errorf("look up the demo user: %w", err)
	}
	if storage.CompareSecret(u.PasswordHash, creds.Password) != nil {
		creds.passwordUnknown = true
		logger.Warn("the user "+demoUsername+" exists already with a password not in "+path+"; leaving her alone",
			"hint", "set one with: authz users set-password "+demoUsername+" --password-stdin")
	}
	return nil
}

func seedClient(ctx context.Context, store *storage.Store, m authz.ClientMetadata, creds *demoCredentials, path string, logger *slog.Logger) error {
	existing, err := store.Client(ctx, m.ClientID)
	if errors.Is(err, storage.ErrNotFound) {
		// The server generates confidential clients' secrets (256 bits,
		// stored with a fast hash); they are saved right after.
		created, err := authz.CreateClient(ctx, store, m)
		if err == nil {
			logger.Info("created a demo client", "client_id", m.ClientID)
			if created.ClientSecret == "" {
				return nil
			}
			creds.ClientSecrets[m.ClientID] = created.ClientSecret
			return creds.save(path)
		}
		if !errors.Is(err, authz.ErrClientExists) {
			return fmt.Errorf("create demo client %s: %w", m.ClientID, err)
		}
		existing, err = store.Client(ctx, m.ClientID) // another instance was first
	}
	if err != nil {
		return fmt.Errorf("look up demo client %s: %w", m.ClientID, err)
	}
	// The demo clients are dev's: their redirect URIs are this run's.
	moved := !slices.Equal(existing.RedirectURIs, m.RedirectURIs) || !slices.Equal(existing.PostLogoutRedirectURIs, m.PostLogoutRedirectURIs)
	if moved {
		existing.RedirectURIs, existing.PostLogoutRedirectURIs = m.RedirectURIs, m.PostLogoutRedirectURIs
	}
	secret := creds.ClientSecrets[m.ClientID]
	rekey := existing.TokenEndpointAuthMethod != "none" && (secret == "" || storage.CompareSecret(existing.SecretHash, secret) != nil)
	if rekey {
		if secret, err = storage.GenerateSecret(); err != nil {
			return err
		}
		creds.ClientSecrets[m.ClientID] = secret
		if err := creds.save(path); err != nil { // before it is used, so that it is never lost
			return err
		}
		existing.SecretHash = storage.HashGeneratedSecret(secret)
	}
	if !moved && !rekey {
		return nil
	}
	if err := store.UpdateClient(ctx, existing); err != nil {
		return fmt.Errorf("update demo client %s: %w", m.ClientID, err)
	}
	if rekey {
		logger.Warn("gave a demo client a new secret: the one it had is not in "+path, "client_id", m.ClientID)
	}
	if moved {
		logger.Info("set a demo client's redirect URIs", "client_id", m.ClientID, "redirect_uris", m.RedirectURIs,
			"post_logout_redirect_uris", m.PostLogoutRedirectURIs)
	}
	return nil
}

// demoAuthorizeURL is the demo BFF's authorization request, by hand.
func demoAuthorizeURL(issuer, redirectURI string) string {
	return issuer + "/oauth2/authorize?" + encodeOrdered(
		"response_type", "code",
		"client_id", demoBFF,
		"redirect_uri", redirectURI,
		"scope", "openid profile contacts",
		"state", "demo")
}

// encodeOrdered is url.Values.Encode keeping the order given, with
// spaces as %20: easier to read than the sorted, +-for-space form.
func encodeOrdered(kv ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(kv[i]) + "=" + strings.ReplaceAll(url.QueryEscape(kv[i+1]), "+", "%20"))
	}
	return b.String()
}

// banner is what dev prints once it serves.
type banner struct {
	issuer     string
	data       string // what is kept where
	ownCluster bool
	dataDir    string
	creds      *demoCredentials
	bffOrigin  string    // the demo-bff client's redirect URIs' origin
	apps       *demoApps // with --demo
	admin      string    // where the admin API is, or why it is not
}

// print tells a newcomer what is running and how to try it.
func (b *banner) print(w io.Writer) {
	bffSecret, apiSecret := b.creds.ClientSecrets[demoBFF], b.creds.ClientSecrets[demoAPI]
	redirect := b.bffOrigin + "/callback"
	password := "password " + b.creds.Password
	if b.creds.passwordUnknown {
		password = "who existed already (her password was not set by authz dev)"
	}
	tryDemo, nothing, what := "", "nothing listens\n   there", "the server"
	if b.apps != nil {
		tryDemo = fmt.Sprintf("\nDemo: open %s and click Get contacts\n      (the BFF calls the contacts API at %s; sign in as %s)\n",
			b.bffOrigin, b.apps.bff.APIURL, demoUsername)
		nothing, what = "the demo BFF\n   there did not start this sign-in", "the demo apps and the server"
	}
	stop := "Ctrl-C stops " + what + "."
	if b.ownCluster {
		what = strings.Replace(what, " and ", ", ", 1)
		stop = "Ctrl-C stops " + what + " and PostgreSQL; the next start keeps everything (delete " + b.dataDir + " to start over)."
	}
	fmt.Fprintf(w, `
authz dev is running at %[1]s
  discovery  %[1]s/.well-known/openid-configuration
  admin API  %[16]s
  data       %[2]s
  user       %[3]s, %[4]s
  clients    %[5]s  secret %[6]s  (confidential BFF; redirect %[7]s)
             %[8]s  public SPA, PKCE S256 required; redirect %[9]s
             %[10]s  secret %[11]s  (resource server: introspection)
%[14]s
1. Open this URL, sign in as %[3]s and press Allow:
   %[12]s
2. The browser lands on %[7]s?code=...&state=demo (%[15]s: copy the code from the address bar). Exchange it within 10 minutes:
   curl -s -u %[5]s:%[6]s %[1]s/oauth2/token -d grant_type=authorization_code -d redirect_uri=%[7]s -d code=CODE
3. Check the access token as the API would:
   curl -s -u %[10]s:%[11]s %[1]s/oauth2/introspect -d token=ACCESS_TOKEN

%[13]s

`, b.issuer, b.data, demoUsername, password, demoBFF, bffSecret, redirect,
		demoSPA, demoRedirectSPA, demoAPI, apiSecret, demoAuthorizeURL(b.issuer, redirect), stop, tryDemo, nothing, b.admin)
}

// printCredentials prints the demo credentials as JSON, for --seed-only.
// alice_password is left out when alice existed with another password.
func printCredentials(w io.Writer, creds *demoCredentials) error {
	out := struct {
		Username      string            `json:"username"`
		Password      string            `json:"alice_password,omitempty"`
		ClientSecrets map[string]string `json:"client_secrets"`
	}{demoUsername, creds.Password, creds.ClientSecrets}
	if creds.passwordUnknown {
		out.Password = ""
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
