// Command demo-api is the demo resource server for authz: a small
// "contacts API" that accepts the access tokens authz issues.
//
// GET /contacts needs an access token (Authorization: Bearer, RFC 6750).
// For each request the API asks the authorization server about the token
// with token introspection (RFC 7662), authenticating as its own client
// (client_secret_basic), and answers
//
//   - 401 with WWW-Authenticate: Bearer when there is no token, or the token
//     is not active (unknown, expired, revoked) or is not an access token;
//   - 400 invalid_request when the Authorization header is malformed;
//   - 403 insufficient_scope when the token is active but was not granted
//     the "contacts" scope, or does not stand for a user;
//   - 200 with a JSON document otherwise: the token's sub and username and
//     three made-up contacts derived deterministically from the sub;
//   - 502 when the authorization server cannot be asked.
//
// # Caching
//
// An active introspection result is cached for --cache (5s by default), and
// never past the token's exp. A token revoked at the authorization server
// therefore keeps working here for up to that long; --cache 0 turns the
// cache off and every request is introspected. Inactive results are never
// cached. The cache is keyed by the SHA-256 of the token: the raw token is
// neither kept nor logged.
//
// # Configuration
//
// Flags, each with an environment variable as its fallback:
//
//	--listen           DEMO_API_LISTEN         127.0.0.1:4000
//	--issuer           AUTHZ_ISSUER            http://localhost:8080
//	--client-id        DEMO_API_CLIENT_ID      demo-api
//	--client-secret    DEMO_API_CLIENT_SECRET  (required; prefer the variable, flags show in ps)
//	--cache            DEMO_API_CACHE          5s (0 disables)
//	--startup-timeout  DEMO_API_STARTUP_TIMEOUT  30s: how long to wait for the issuer's discovery document
//
// The client is one that may use the client_credentials grant (authz dev
// seeds it as demo-api); the API uses it only to authenticate at the
// introspection endpoint, which it finds in the issuer's
// /.well-known/openid-configuration at start-up.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintf(os.Stderr, "demo-api: %v\n", err)
		os.Exit(1)
	}
}

// shutdownTimeout bounds how long in-flight requests may take to finish
// once a signal arrived.
const shutdownTimeout = 10 * time.Second

// run reads the configuration, discovers the introspection endpoint and
// serves until ctx is done, then shuts down gracefully.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	listen, cfg, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	defer ln.Close()
	h, err := NewHandler(ctx, cfg, logger)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for the issuer
		}
		return err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	fmt.Fprintf(stdout, "demo-api listening on http://%s\n", ln.Addr())
	logger.Info("listening", "addr", ln.Addr().String(), "issuer", cfg.Issuer, "cache", cfg.Cache.String())
	return serve(ctx, srv, ln, logger)
}

// serve runs srv on ln until ctx is done, then lets in-flight requests
// finish (for at most shutdownTimeout).
func serve(ctx context.Context, srv *http.Server, ln net.Listener, logger *slog.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// parseFlags reads the flags, falling back to the environment, and checks
// them.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (listen string, cfg Config, err error) {
	fs := flag.NewFlagSet("demo-api", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cache, err := envDuration(getenv, "DEMO_API_CACHE", DefaultCache)
	if err != nil {
		return "", cfg, err
	}
	startup, err := envDuration(getenv, "DEMO_API_STARTUP_TIMEOUT", DefaultStartupTimeout)
	if err != nil {
		return "", cfg, err
	}
	fs.StringVar(&listen, "listen", envOr(getenv, "DEMO_API_LISTEN", "127.0.0.1:4000"), "address to listen on (env DEMO_API_LISTEN)")
	fs.StringVar(&cfg.Issuer, "issuer", envOr(getenv, "AUTHZ_ISSUER", "http://localhost:8080"), "the authorization server's issuer URL (env AUTHZ_ISSUER)")
	fs.StringVar(&cfg.ClientID, "client-id", envOr(getenv, "DEMO_API_CLIENT_ID", "demo-api"), "this API's client id, for introspection (env DEMO_API_CLIENT_ID)")
	fs.StringVar(&cfg.ClientSecret, "client-secret", getenv("DEMO_API_CLIENT_SECRET"), "this API's client secret (env DEMO_API_CLIENT_SECRET; prefer it: flags show in ps)")
	fs.DurationVar(&cfg.Cache, "cache", cache, "how long an active introspection result is cached, never past the token's exp; 0 disables (env DEMO_API_CACHE)")
	fs.DurationVar(&cfg.StartupTimeout, "startup-timeout", startup, "how long to wait for the issuer at start-up (env DEMO_API_STARTUP_TIMEOUT)")
	if err := fs.Parse(args); err != nil {
		return "", cfg, err
	}
	if fs.NArg() > 0 {
		return "", cfg, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	cfg.Issuer = strings.TrimSuffix(cfg.Issuer, "/")
	if err := cfg.validate(); err != nil {
		return "", cfg, err
	}
	return listen, cfg, nil
}

// validate checks what the flags cannot.
func (c Config) validate() error {
	if u, err := url.Parse(c.Issuer); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("issuer %q is not an http(s) URL", c.Issuer)
	}
	if c.ClientID == "" {
		return errors.New("a client id is required: --client-id or DEMO_API_CLIENT_ID")
	}
	if c.ClientSecret == "" {
		return errors.New("a client secret is required: set DEMO_API_CLIENT_SECRET (or --client-secret)")
	}
	if c.Cache < 0 {
		return fmt.Errorf("cache %s is negative (0 disables the cache)", c.Cache)
	}
	if c.StartupTimeout < 0 {
		return fmt.Errorf("startup timeout %s is negative", c.StartupTimeout)
	}
	return nil
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

func envDuration(getenv func(string) string, name string, def time.Duration) (time.Duration, error) {
	v := getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a duration like 5s", name, v)
	}
	return d, nil
}
