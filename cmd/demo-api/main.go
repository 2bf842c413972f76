// Command demo-api is the demo resource server for authz: a small
// "contacts API" that accepts the access tokens authz issues, checking each
// with token introspection or, with --verify jwt, verifying JWT access
// tokens (RFC 9068) itself against authz's JWKS. The API itself is package
// internal/demo/api, which documents its answers, what it checks and its
// caches; "authz dev --demo" runs it in the same process as the provider.
//
// # Configuration
//
// Flags, each with an environment variable as its fallback:
//
//	--listen           DEMO_API_LISTEN           127.0.0.1:4000
//	--issuer           AUTHZ_ISSUER              http://localhost:8080
//	--verify           DEMO_API_VERIFY           introspect, or jwt: verify JWT access tokens locally
//	--resource         DEMO_API_RESOURCE         http://localhost:4000: with jwt, the URL tokens' aud must contain
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
// /.well-known/openid-configuration at start-up. With --verify jwt it needs
// no client: it reads jwks_uri there instead, and the web app's client must
// get JWT access tokens for --resource (access_token_strategy jwt, that URL
// in its audience, and resource=that URL in its requests).
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/authz/authz/internal/demo"
	"github.com/authz/authz/internal/demo/api"
)

func main() { os.Exit(demo.Main("demo-api", run)) }

// run reads the configuration, discovers the introspection endpoint and
// serves until ctx is done, then shuts down gracefully.
var run = demo.Command(parseFlags, start)

// start builds the API, which waits for the issuer's discovery document.
func start(ctx context.Context, cfg api.Config, at demo.Listening) (http.Handler, error) {
	h, err := api.NewHandler(ctx, cfg, at.Logger)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(at.Stdout, "demo-api listening on http://%s\n", at.Addr)
	if cfg.Verify == api.VerifyJWT {
		at.Logger.Info("listening", "addr", at.Addr.String(), "issuer", cfg.Issuer, "verify", cfg.Verify, "resource", cfg.Resource)
	} else {
		at.Logger.Info("listening", "addr", at.Addr.String(), "issuer", cfg.Issuer, "verify", cfg.Verify, "cache", cfg.Cache.String())
	}
	return h, nil
}

// parseFlags reads the flags, falling back to the environment, and checks
// them.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (listen string, cfg api.Config, err error) {
	env := demo.Env(getenv)
	cache, err := env.Duration("DEMO_API_CACHE", api.DefaultCache)
	if err != nil {
		return "", cfg, err
	}
	startup, err := env.Duration("DEMO_API_STARTUP_TIMEOUT", api.DefaultStartupTimeout)
	if err != nil {
		return "", cfg, err
	}
	fs := demo.NewFlags("demo-api", env, stderr)
	fs.StringVar(&listen, "listen", env.Or("DEMO_API_LISTEN", "127.0.0.1:4000"), "address to listen on (env DEMO_API_LISTEN)")
	fs.StringVar(&cfg.ClientID, "client-id", env.Or("DEMO_API_CLIENT_ID", "demo-api"), "this API's client id, for introspection (env DEMO_API_CLIENT_ID)")
	fs.StringVar(&cfg.ClientSecret, "client-secret", env("DEMO_API_CLIENT_SECRET"), "this API's client secret (env DEMO_API_CLIENT_SECRET; prefer it: flags show in ps)")
	fs.DurationVar(&cfg.Cache, "cache", cache, "how long an active introspection result is cached, never past the token's exp; 0 disables (env DEMO_API_CACHE)")
	fs.DurationVar(&cfg.StartupTimeout, "startup-timeout", startup, "how long to wait for the issuer at start-up (env DEMO_API_STARTUP_TIMEOUT)")
	fs.StringVar(&cfg.Verify, "verify", env.Or("DEMO_API_VERIFY", api.VerifyIntrospect), "how to check tokens: introspect, or jwt to verify JWT access tokens locally against the JWKS (env DEMO_API_VERIFY)")
	fs.StringVar(&cfg.Resource, "resource", env.Or("DEMO_API_RESOURCE", "http://localhost:4000"), "with --verify jwt, this API's URL, which tokens' aud must contain (env DEMO_API_RESOURCE)")
	if err := fs.Parse(args); err != nil {
		return "", cfg, err
	}
	cfg.Issuer = fs.Issuer
	if cfg.Verify == api.VerifyJWT {
		cfg.ClientID, cfg.ClientSecret = "", "" // no introspection
	} else {
		cfg.Resource = ""
		if cfg.ClientSecret, err = fs.ClientSecret(cfg.ClientSecret, cfg.ClientID); err != nil {
			return "", cfg, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return "", cfg, err
	}
	if cfg.HTTPClient, err = fs.HTTPClient(); err != nil {
		return "", cfg, err
	}
	return listen, cfg, nil
}
