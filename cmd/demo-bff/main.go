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
//	--resource                  DEMO_BFF_RESOURCE                  (none): RFC 8707 resource to ask tokens for; the API's URL for demo-api --verify jwt
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
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/authz/authz/internal/demo"
	"github.com/authz/authz/internal/demo/bff"
)

func main() { os.Exit(demo.Main("demo-bff", run)) }

// run reads the configuration, discovers the provider and serves until ctx
// is done, then shuts down gracefully.
var run = demo.Command(parseFlags, start)

// start builds the BFF, which waits for the issuer's discovery document.
// Without a redirect URI, it uses the one a browser on this machine
// reaches its address with.
func start(ctx context.Context, cfg bff.Config, at demo.Listening) (http.Handler, error) {
	if cfg.RedirectURI == "" {
		cfg.RedirectURI = "http://" + localOrigin(at.Addr.String()) + "/callback"
	}
	h, err := bff.NewServer(ctx, cfg, at.Logger)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(at.Stdout, "demo-bff listening on http://%s; open %s\n", at.Addr, origin(cfg.RedirectURI))
	at.Logger.Info("listening", "addr", at.Addr.String(), "issuer", cfg.Issuer, "redirect_uri", cfg.RedirectURI, "api", cfg.APIURL)
	return h, nil
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
// them. An empty RedirectURI is derived from the listen address by start.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (listen string, cfg bff.Config, err error) {
	env := demo.Env(getenv)
	startup, err := env.Duration("DEMO_BFF_STARTUP_TIMEOUT", bff.DefaultStartupTimeout)
	if err != nil {
		return "", cfg, err
	}
	var scope string
	fs := demo.NewFlags("demo-bff", env, stderr)
	fs.StringVar(&listen, "listen", env.Or("DEMO_BFF_LISTEN", "127.0.0.1:3000"), "address to listen on (env DEMO_BFF_LISTEN)")
	fs.StringVar(&cfg.ClientID, "client-id", env.Or("DEMO_BFF_CLIENT_ID", "demo-bff"), "client id (env DEMO_BFF_CLIENT_ID)")
	fs.StringVar(&cfg.ClientSecret, "client-secret", env("DEMO_BFF_CLIENT_SECRET"), "client secret (env DEMO_BFF_CLIENT_SECRET; prefer it: flags show in ps)")
	fs.StringVar(&cfg.RedirectURI, "redirect-uri", env("DEMO_BFF_REDIRECT_URI"), "registered redirect URI (env DEMO_BFF_REDIRECT_URI; default http://localhost:<listen port>/callback)")
	fs.StringVar(&cfg.PostLogoutRedirectURI, "post-logout-redirect-uri", env("DEMO_BFF_POST_LOGOUT_REDIRECT_URI"), "registered post-logout redirect URI (env DEMO_BFF_POST_LOGOUT_REDIRECT_URI; default the redirect URI's origin + /)")
	fs.StringVar(&cfg.APIURL, "api", env.Or("DEMO_API_URL", "http://localhost:4000"), "base URL of the contacts API (env DEMO_API_URL)")
	fs.StringVar(&cfg.Resource, "resource", env("DEMO_BFF_RESOURCE"), "RFC 8707 resource to ask access tokens for, such as the API's URL for demo-api --verify jwt (env DEMO_BFF_RESOURCE)")
	fs.StringVar(&scope, "scope", env.Or("DEMO_BFF_SCOPE", bff.DefaultScope), "scopes to ask for (env DEMO_BFF_SCOPE)")
	fs.DurationVar(&cfg.StartupTimeout, "startup-timeout", startup, "how long to wait for the issuer at start-up (env DEMO_BFF_STARTUP_TIMEOUT)")
	if err := fs.Parse(args); err != nil {
		return "", cfg, err
	}
	cfg.Issuer = fs.Issuer
	cfg.APIURL = strings.TrimSuffix(cfg.APIURL, "/")
	cfg.Scopes = strings.Fields(scope)
	if cfg.ClientSecret, err = fs.ClientSecret(cfg.ClientSecret, cfg.ClientID); err != nil {
		return "", cfg, err
	}
	if cfg.HTTPClient, err = fs.HTTPClient(); err != nil {
		return "", cfg, err
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
