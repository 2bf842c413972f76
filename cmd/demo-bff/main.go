// Command demo-bff is the demo web app for authz: a backend-for-frontend
// (a confidential OAuth 2.0 client) with a "Get contacts" button.
//
// Signing in sends the browser to the authorization server's
// /oauth2/authorize with state, nonce and PKCE (S256). The state, nonce and
// code verifier stay in the BFF's memory, bound to a random pre-login
// cookie, and the state is checked when the browser comes back to the
// redirect URI. The BFF exchanges the code with its client secret
// (client_secret_basic), verifies the ID token (signature, issuer,
// audience, expiry, nonce, at_hash) and keeps every token on the server:
// the browser only gets a random session id in an HttpOnly, SameSite=Lax
// cookie. "Get contacts" calls the contacts API (cmd/demo-api) with the
// access token, refreshing it first when it has expired. "Sign out" ends
// the BFF session, revokes the refresh token and sends the browser to the
// provider's end_session_endpoint (RP-initiated logout) with id_token_hint,
// so the provider's session ends too.
//
// Sessions live in memory, in a map guarded by a mutex: they are lost when
// the process stops and are not shared between replicas. That is fine for a
// demo; a production BFF keeps them in a shared store. A session ends 12
// hours after sign-in, at sign-out, or when its refresh token stops working.
//
// # Configuration
//
// Flags, each with an environment variable as its fallback:
//
//	--listen                    DEMO_BFF_LISTEN                    127.0.0.1:3000
//	--issuer                    AUTHZ_ISSUER                       http://localhost:8080
//	--client-id                 DEMO_BFF_CLIENT_ID                 demo-bff
//	--client-secret             DEMO_BFF_CLIENT_SECRET             (required; prefer the variable, flags show in ps)
//	--redirect-uri              DEMO_BFF_REDIRECT_URI              http://localhost:<listen port>/callback
//	--post-logout-redirect-uri  DEMO_BFF_POST_LOGOUT_REDIRECT_URI  the redirect URI's origin + "/"
//	--api                       DEMO_API_URL                       http://localhost:4000
//	--scope                     DEMO_BFF_SCOPE                     openid profile email offline_access contacts
//	--startup-timeout           DEMO_BFF_STARTUP_TIMEOUT           30s: how long to wait for the issuer's discovery document
//
// authz dev registers the matching client: demo-bff, client_secret_basic,
// redirect URI http://localhost:3000/callback, post-logout redirect URI
// http://localhost:3000/. Open http://localhost:3000 (not 127.0.0.1: the
// BFF sends browsers to the redirect URI's host so that its cookies come
// back with the callback).
//
// The pages have stable element ids for browser tests: the "Get contacts"
// button is #get-contacts, "Sign out" #sign-out, "Sign in" #sign-in, the
// contacts table #contacts, an error message #error, the signed-in name
// #who.
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
		fmt.Fprintf(os.Stderr, "demo-bff: %v\n", err)
		os.Exit(1)
	}
}

// shutdownTimeout bounds how long in-flight requests may take to finish
// once a signal arrived.
const shutdownTimeout = 10 * time.Second

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
	h, err := NewServer(ctx, cfg, logger)
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
	fmt.Fprintf(stdout, "demo-bff listening on http://%s; open %s\n", ln.Addr(), h.origin)
	logger.Info("listening", "addr", ln.Addr().String(), "issuer", cfg.Issuer, "redirect_uri", h.cfg.RedirectURI, "api", cfg.APIURL)
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
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (listen string, cfg Config, err error) {
	fs := flag.NewFlagSet("demo-bff", flag.ContinueOnError)
	fs.SetOutput(stderr)
	startup := DefaultStartupTimeout
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
	fs.StringVar(&cfg.RedirectURI, "redirect-uri", getenv("DEMO_BFF_REDIRECT_URI"), "registered redirect URI (env DEMO_BFF_REDIRECT_URI; default http://localhost:<listen port>/callback)")
	fs.StringVar(&cfg.PostLogoutRedirectURI, "post-logout-redirect-uri", getenv("DEMO_BFF_POST_LOGOUT_REDIRECT_URI"), "registered post-logout redirect URI (env DEMO_BFF_POST_LOGOUT_REDIRECT_URI; default the redirect URI's origin + /)")
	fs.StringVar(&cfg.APIURL, "api", envOr(getenv, "DEMO_API_URL", "http://localhost:4000"), "base URL of the contacts API (env DEMO_API_URL)")
	fs.StringVar(&scope, "scope", envOr(getenv, "DEMO_BFF_SCOPE", DefaultScope), "scopes to ask for (env DEMO_BFF_SCOPE)")
	fs.DurationVar(&cfg.StartupTimeout, "startup-timeout", startup, "how long to wait for the issuer at start-up (env DEMO_BFF_STARTUP_TIMEOUT)")
	if err := fs.Parse(args); err != nil {
		return "", cfg, err
	}
	if fs.NArg() > 0 {
		return "", cfg, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	cfg.Issuer = strings.TrimSuffix(cfg.Issuer, "/")
	cfg.APIURL = strings.TrimSuffix(cfg.APIURL, "/")
	cfg.Scopes = strings.Fields(scope)
	check := cfg
	if check.RedirectURI == "" {
		check.RedirectURI = "http://localhost/callback" // derived later
	}
	if err := check.validate(); err != nil {
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

// validate checks what the flags cannot.
func (c Config) validate() error {
	for _, u := range []struct{ name, value string }{
		{"issuer", c.Issuer}, {"redirect URI", c.RedirectURI}, {"API URL", c.APIURL},
	} {
		if !isHTTPURL(u.value) {
			return fmt.Errorf("%s %q is not an http(s) URL", u.name, u.value)
		}
	}
	if c.PostLogoutRedirectURI != "" && !isHTTPURL(c.PostLogoutRedirectURI) {
		return fmt.Errorf("post-logout redirect URI %q is not an http(s) URL", c.PostLogoutRedirectURI)
	}
	if c.ClientID == "" {
		return errors.New("a client id is required: --client-id or DEMO_BFF_CLIENT_ID")
	}
	if c.ClientSecret == "" {
		return errors.New("a client secret is required: set DEMO_BFF_CLIENT_SECRET (or --client-secret)")
	}
	if len(c.Scopes) == 0 {
		return errors.New("no scopes to ask for")
	}
	if c.StartupTimeout < 0 {
		return fmt.Errorf("startup timeout %s is negative", c.StartupTimeout)
	}
	return nil
}

func isHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
