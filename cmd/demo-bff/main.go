// Command demo-bff is the demo web app for authz: a backend-for-frontend
// (a confidential OAuth 2.0 client) with a "Get contacts" button that
// calls the contacts API (cmd/demo-api). The app itself is package
// internal/demo/bff, which documents how it signs people in and keeps
// their tokens; "authz dev --demo" runs it in the same process as the
// provider.
//
// # Configuration
//
// Flags, each with an environment variable as its fallback:
//
//	--listen                    DEMO_BFF_LISTEN                    127.0.0.1:3000
//	--issuer                    AUTHZ_ISSUER                       http://localhost:8080
//	--client-id                 DEMO_BFF_CLIENT_ID                 demo-bff
//	--client-secret             DEMO_BFF_CLIENT_SECRET             (required, or --credentials; prefer the variable, flags show in ps)
//	--credentials               DEMO_CREDENTIALS                   a file authz dev writes (.data/demo.json) to read the secret from
//	--redirect-uri              DEMO_BFF_REDIRECT_URI              http://localhost:<listen port>/callback
//	--post-logout-redirect-uri  DEMO_BFF_POST_LOGOUT_REDIRECT_URI  the redirect URI's origin + "/"
//	--api                       DEMO_API_URL                       http://localhost:4000
//	--scope                     DEMO_BFF_SCOPE                     openid profile email offline_access contacts
//	--startup-timeout           DEMO_BFF_STARTUP_TIMEOUT           30s: how long to wait for the issuer's discovery document
//	--issuer-addr               DEMO_ISSUER_ADDR                   host:port to connect to for the issuer (default: its own)
//
// --issuer-addr is for an issuer whose host name means another machine
// where the BFF runs: in docker compose, browsers reach authz at
// http://localhost:8080 but the BFF's container reaches it at authz:8080.
// Requests keep the issuer's URL; only the connection goes elsewhere.
//
// authz dev registers the matching client: demo-bff, client_secret_basic,
// redirect URI http://localhost:3000/callback, post-logout redirect URI
// http://localhost:3000/. Open http://localhost:3000 (not 127.0.0.1: the
// BFF sends browsers to the redirect URI's host so that its cookies come
// back with the callback). "authz dev --demo" does all of this for you.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/authz/authz/internal/demo"
	"github.com/authz/authz/internal/demo/bff"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintf(os.Stderr, "demo-bff: %v\n", err)
		os.Exit(1)
	}
}

// run reads the configuration, discovers the provider and serves until ctx
// is done, then shuts down gracefully.
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
	if cfg.RedirectURI == "" {
		cfg.RedirectURI = "http://" + localOrigin(ln.Addr().String()) + "/callback"
	}
	h, err := bff.NewServer(ctx, cfg, logger)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while waiting for the issuer
		}
		return err
	}
	fmt.Fprintf(stdout, "demo-bff listening on http://%s; open %s\n", ln.Addr(), origin(cfg.RedirectURI))
	logger.Info("listening", "addr", ln.Addr().String(), "issuer", cfg.Issuer, "redirect_uri", cfg.RedirectURI, "api", cfg.APIURL)
	return demo.Serve(ctx, ln, h, logger)
}

// origin is scheme://host of an http(s) URL: where the BFF's pages are.
func origin(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	return u.Scheme + "://" + u.Host
}

// localOrigin turns a listen address into the host:port a browser on this
// machine uses: localhost for loopback and unspecified addresses, which is
// what the redirect URI is registered with.
func localOrigin(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || host == "localhost" || ip != nil && (ip.IsLoopback() || ip.IsUnspecified()) {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// parseFlags reads the flags, falling back to the environment, and checks
// them. An empty RedirectURI is derived from the listen address by run.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (listen string, cfg bff.Config, err error) {
	fs := flag.NewFlagSet("demo-bff", flag.ContinueOnError)
	fs.SetOutput(stderr)
	startup := bff.DefaultStartupTimeout
	if v := getenv("DEMO_BFF_STARTUP_TIMEOUT"); v != "" {
		if startup, err = time.ParseDuration(v); err != nil {
			return "", cfg, fmt.Errorf("DEMO_BFF_STARTUP_TIMEOUT: %q is not a duration like 30s", v)
		}
	}
	var scope string
	fs.StringVar(&listen, "listen", envOr(getenv, "DEMO_BFF_LISTEN", "127.0.0.1:3000"), "address to listen on (env DEMO_BFF_LISTEN)")
	fs.StringVar(&cfg.Issuer, "issuer", envOr(getenv, "AUTHZ_ISSUER", "http://localhost:8080"), "the authorization server's issuer URL (env AUTHZ_ISSUER)")
	fs.StringVar(&cfg.ClientID, "client-id", envOr(getenv, "DEMO_BFF_CLIENT_ID", "demo-bff"), "client id (env DEMO_BFF_CLIENT_ID)")
	fs.StringVar(&cfg.ClientSecret, "client-secret", getenv("DEMO_BFF_CLIENT_SECRET"), "client secret (env DEMO_BFF_CLIENT_SECRET; prefer it: flags show in ps)")
	credentials := fs.String("credentials", getenv("DEMO_CREDENTIALS"), "read the client secret from this `file` that authz dev writes, e.g. .data/demo.json (env DEMO_CREDENTIALS)")
	fs.StringVar(&cfg.RedirectURI, "redirect-uri", getenv("DEMO_BFF_REDIRECT_URI"), "registered redirect URI (env DEMO_BFF_REDIRECT_URI; default http://localhost:<listen port>/callback)")
	fs.StringVar(&cfg.PostLogoutRedirectURI, "post-logout-redirect-uri", getenv("DEMO_BFF_POST_LOGOUT_REDIRECT_URI"), "registered post-logout redirect URI (env DEMO_BFF_POST_LOGOUT_REDIRECT_URI; default the redirect URI's origin + /)")
	fs.StringVar(&cfg.APIURL, "api", envOr(getenv, "DEMO_API_URL", "http://localhost:4000"), "base URL of the contacts API (env DEMO_API_URL)")
	fs.StringVar(&scope, "scope", envOr(getenv, "DEMO_BFF_SCOPE", bff.DefaultScope), "scopes to ask for (env DEMO_BFF_SCOPE)")
	fs.DurationVar(&cfg.StartupTimeout, "startup-timeout", startup, "how long to wait for the issuer at start-up (env DEMO_BFF_STARTUP_TIMEOUT)")
	issuerAddr := fs.String("issuer-addr", getenv("DEMO_ISSUER_ADDR"), "host:port to connect to for the issuer, when its host name means another machine here, as localhost in a container (env DEMO_ISSUER_ADDR)")
	if err := fs.Parse(args); err != nil {
		return "", cfg, err
	}
	if fs.NArg() > 0 {
		return "", cfg, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	cfg.Issuer = strings.TrimSuffix(cfg.Issuer, "/")
	cfg.APIURL = strings.TrimSuffix(cfg.APIURL, "/")
	cfg.Scopes = strings.Fields(scope)
	if cfg.ClientSecret == "" && *credentials != "" {
		if cfg.ClientSecret, err = demo.ClientSecret(*credentials, cfg.ClientID); err != nil {
			return "", cfg, err
		}
	}
	if *issuerAddr != "" {
		if cfg.HTTPClient, err = demo.HTTPClient(cfg.Issuer, *issuerAddr); err != nil {
			return "", cfg, err
		}
	}
	check := cfg
	if check.RedirectURI == "" {
		check.RedirectURI = "http://localhost/callback" // derived later
	}
	if err := check.Validate(); err != nil {
		return "", cfg, err
	}
	return listen, cfg, nil
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}
