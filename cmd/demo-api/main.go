// Command demo-api is the demo resource server for authz: a small
// "contacts API" that accepts the access tokens authz issues, checking each
// with token introspection. The API itself is package internal/demo/api,
// which documents its answers and its cache; "authz dev --demo" runs it in
// the same process as the provider.
//
// # Configuration
//
// Flags, each with an environment variable as its fallback:
//
//	--listen           DEMO_API_LISTEN           127.0.0.1:4000
//	--issuer           AUTHZ_ISSUER              http://localhost:8080
//	--client-id        DEMO_API_CLIENT_ID        demo-api
//	--client-secret    DEMO_API_CLIENT_SECRET    (required, or --credentials; prefer the variable, flags show in ps)
//	--credentials      DEMO_CREDENTIALS          a file authz dev writes (.data/demo.json) to read the secret from
//	--cache            DEMO_API_CACHE            5s (0 disables)
//	--startup-timeout  DEMO_API_STARTUP_TIMEOUT  30s: how long to wait for the issuer's discovery document
//	--issuer-addr      DEMO_ISSUER_ADDR          host:port to connect to for the issuer (default: its own)
//
// --issuer-addr is for an issuer whose host name means another machine
// where the API runs: in docker compose, browsers reach authz at
// http://localhost:8080 but the API's container reaches it at authz:8080.
// Requests keep the issuer's URL; only the connection goes elsewhere.
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
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/authz/authz/internal/demo"
	"github.com/authz/authz/internal/demo/api"
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
	h, err := api.NewHandler(ctx, cfg, logger)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for the issuer
		}
		return err
	}
	fmt.Fprintf(stdout, "demo-api listening on http://%s\n", ln.Addr())
	logger.Info("listening", "addr", ln.Addr().String(), "issuer", cfg.Issuer, "cache", cfg.Cache.String())
	return demo.Serve(ctx, ln, h, logger)
}

// parseFlags reads the flags, falling back to the environment, and checks
// them.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (listen string, cfg api.Config, err error) {
	fs := flag.NewFlagSet("demo-api", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cache, err := envDuration(getenv, "DEMO_API_CACHE", api.DefaultCache)
	if err != nil {
		return "", cfg, err
	}
	startup, err := envDuration(getenv, "DEMO_API_STARTUP_TIMEOUT", api.DefaultStartupTimeout)
	if err != nil {
		return "", cfg, err
	}
	fs.StringVar(&listen, "listen", envOr(getenv, "DEMO_API_LISTEN", "127.0.0.1:4000"), "address to listen on (env DEMO_API_LISTEN)")
	fs.StringVar(&cfg.Issuer, "issuer", envOr(getenv, "AUTHZ_ISSUER", "http://localhost:8080"), "the authorization server's issuer URL (env AUTHZ_ISSUER)")
	fs.StringVar(&cfg.ClientID, "client-id", envOr(getenv, "DEMO_API_CLIENT_ID", "demo-api"), "this API's client id, for introspection (env DEMO_API_CLIENT_ID)")
	fs.StringVar(&cfg.ClientSecret, "client-secret", getenv("DEMO_API_CLIENT_SECRET"), "this API's client secret (env DEMO_API_CLIENT_SECRET; prefer it: flags show in ps)")
	credentials := fs.String("credentials", getenv("DEMO_CREDENTIALS"), "read the client secret from this `file` that authz dev writes, e.g. .data/demo.json (env DEMO_CREDENTIALS)")
	fs.DurationVar(&cfg.Cache, "cache", cache, "how long an active introspection result is cached, never past the token's exp; 0 disables (env DEMO_API_CACHE)")
	fs.DurationVar(&cfg.StartupTimeout, "startup-timeout", startup, "how long to wait for the issuer at start-up (env DEMO_API_STARTUP_TIMEOUT)")
	issuerAddr := fs.String("issuer-addr", getenv("DEMO_ISSUER_ADDR"), "host:port to connect to for the issuer, when its host name means another machine here, as localhost in a container (env DEMO_ISSUER_ADDR)")
	if err := fs.Parse(args); err != nil {
		return "", cfg, err
	}
	if fs.NArg() > 0 {
		return "", cfg, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	cfg.Issuer = strings.TrimSuffix(cfg.Issuer, "/")
	if cfg.ClientSecret == "" && *credentials != "" {
		if cfg.ClientSecret, err = demo.ClientSecret(*credentials, cfg.ClientID); err != nil {
			return "", cfg, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return "", cfg, err
	}
	if *issuerAddr != "" {
		if cfg.HTTPClient, err = demo.HTTPClient(cfg.Issuer, *issuerAddr); err != nil {
			return "", cfg, err
		}
	}
	return listen, cfg, nil
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
