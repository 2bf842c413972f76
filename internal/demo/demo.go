// Package demo is what runs the demo apps (packages bff and api below it)
// in their commands (cmd/demo-bff, cmd/demo-api) and in "authz dev --demo":
// serving one until shutdown, and the HTTP client they reach the
// authorization server with. For the commands it also holds what they
// share around that: the flags that mean the same in each, with their
// environment fallbacks (Flags, Env), and the start-up from main to
// shutdown (Main, Command).
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// ShutdownTimeout bounds how long in-flight requests may take to finish
// once shutdown began.
const ShutdownTimeout = 10 * time.Second

// Serve serves h on ln until ctx is done, then lets in-flight requests
// finish (for at most ShutdownTimeout). It closes ln.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, logger *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// HTTPClient is the client a demo app talks to the authorization server
// and the API with: requests time out after 10 seconds. When issuerAddr is
// set, connections meant for the issuer's host and port go to issuerAddr
// instead. That is for an issuer whose name means another machine where
// the app runs: in docker compose, the browser's http://localhost:8080 is
// authz:8080 to the demo containers. The requests themselves are
// unchanged (URL, Host header).
func HTTPClient(issuer, issuerAddr string) (*http.Client, error) {
	if issuerAddr == "" {
		return &http.Client{Timeout: 10 * time.Second}, nil
	}
	if _, _, err := net.SplitHostPort(issuerAddr); err != nil {
		return nil, fmt.Errorf("issuer address %q is not host:port", issuerAddr)
	}
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("issuer %q is not a URL", issuer)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	from := net.JoinHostPort(u.Hostname(), port)
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == from {
			addr = issuerAddr
		}
		return dialer.DialContext(ctx, network, addr)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: t}, nil
}

// ClientSecret reads the secret of client id from a credentials file that
// "authz dev" writes (.data/demo.json; "authz dev --seed-only" writes it
// for docker compose): {"client_secrets": {"demo-bff": "...", ...}}.
func ClientSecret(path, id string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("credentials: %w", err)
	}
	var creds struct {
		ClientSecrets map[string]string `json:"client_secrets"`
	}
	if err := json.Unmarshal(b, &creds); err != nil {
		return "", fmt.Errorf("credentials %s: %w", path, err)
	}
	secret := creds.ClientSecrets[id]
	if secret == "" {
		return "", fmt.Errorf("credentials %s: no secret for client %q", path, id)
	}
	return secret, nil
}
