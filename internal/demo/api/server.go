// Package api is the demo resource server for authz: a small "contacts
// API" that accepts the access tokens authz issues. It runs as
// cmd/demo-api, and inside "authz dev --demo".
//
// GET /contacts needs an access token (Authorization: Bearer, RFC 6750),
// which the API checks in one of two ways (Config.Verify):
//
//   - introspect (the default): for each request it asks the authorization
//     server about the token with token introspection (RFC 7662),
//     authenticating as its own client (client_secret_basic);
//   - jwt: it verifies an RFC 9068 JWT access token itself against the
//     issuer's JWKS: a compact JWS with typ at+jwt (so an ID token is
//     refused), alg RS256, PS256, ES256 or EdDSA fitting the key, a valid
//     signature, iss the issuer, aud containing Config.Resource (the API's
//     own URL, which the client asks for with RFC 8707's resource), exp not
//     past (JWTLeeway). It never asks the authorization server about a
//     token, so a revoked token keeps working until its exp.
//
// It answers
//
//   - 401 with WWW-Authenticate: Bearer when there is no token, or the token
//     is not active (unknown, expired, revoked) or is not an access token
//     for this API;
//   - 400 invalid_request when the Authorization header is malformed;
//   - 403 insufficient_scope when the token is active but was not granted
//     the "contacts" scope, or does not stand for a user;
//   - 200 with a JSON document otherwise: the token's sub and username and
//     three made-up contacts derived deterministically from the sub;
//   - 502 when the authorization server cannot be asked (introspect), 503
//     when its JWKS cannot be fetched (jwt).
//
// # Caching
//
// An active introspection result is cached for Config.Cache (5s by
// default), and never past the token's exp. A token revoked at the
// authorization server therefore keeps working here for up to that long; a
// Cache of 0 turns the cache off and every request is introspected.
// Inactive results are never cached. The cache is keyed by the SHA-256 of
// the token: the raw token is neither kept nor logged.
//
// In jwt mode the JWKS is fetched when first needed and kept for its
// Cache-Control max-age (between 30s and 1h; 5 minutes without one). A
// token whose kid the JWKS does not have fetches it again, at most once
// every 30 seconds: keys rotate.
//
// The API's client is one that may use the client_credentials grant
// (authz dev seeds it as demo-api); the API uses it only to authenticate
// at the introspection endpoint, which it finds in the issuer's
// /.well-known/openid-configuration at start-up (jwt mode finds jwks_uri
// there, and needs no client).
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults for Config.
const (
	DefaultCache          = 5 * time.Second
	DefaultStartupTimeout = 30 * time.Second
)

// requiredScope is the scope a token needs to read contacts.
const requiredScope = "contacts"

// How the API checks tokens: Config.Verify.
const (
	VerifyIntrospect = "introspect" // token introspection (RFC 7662), the default
	VerifyJWT        = "jwt"        // JWT access tokens (RFC 9068) against the JWKS
)

// Config is the API's configuration.
type Config struct {
	// Issuer is the authorization server's issuer URL; its discovery
	// document names the introspection endpoint and the JWKS.
	Issuer string
	// Verify is VerifyIntrospect ("" too) or VerifyJWT.
	Verify string
	// Resource is the API's own resource URL (RFC 8707), which a JWT
	// access token's aud must contain; needed with VerifyJWT only.
	Resource string
	// ClientID and ClientSecret authenticate the API at the introspection
	// endpoint (client_secret_basic); not needed with VerifyJWT.
	ClientID     string
	ClientSecret string
	// Cache is how long an active introspection result is reused, never
	// past the token's exp. 0 introspects every request.
	Cache time.Duration
	// StartupTimeout is how long NewHandler waits for the issuer's
	// discovery document; 0 means DefaultStartupTimeout.
	StartupTimeout time.Duration
	// HTTPClient talks to the authorization server; nil means a client
	// with a 10s timeout.
	HTTPClient *http.Client
	// Now is the clock for the cache; nil means time.Now.
	Now func() time.Time
}

// Validate checks the configuration; NewHandler does too.
func (c Config) Validate() error {
	if u, err := url.Parse(c.Issuer); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("issuer %q is not an http(s) URL", c.Issuer)
	}
	switch c.Verify {
	case "", VerifyIntrospect:
		if c.ClientID == "" {
			return errors.New("a client id is required: --client-id or DEMO_API_CLIENT_ID")
		}
		if c.ClientSecret == "" {
			return errors.New("a client secret is required: set DEMO_API_CLIENT_SECRET (or --client-secret)")
		}
	case VerifyJWT:
		if u, err := url.Parse(c.Resource); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" {
			return fmt.Errorf("resource %q is not an http(s) URL without a fragment: the API's own URL, which JWT access tokens' aud must contain (--resource or DEMO_API_RESOURCE)", c.Resource)
		}
	default:
		return fmt.Errorf("verify %q: want %s or %s", c.Verify, VerifyIntrospect, VerifyJWT)
	}
	if c.Cache < 0 {
		return fmt.Errorf("cache %s is negative (0 disables the cache)", c.Cache)
	}
	if c.StartupTimeout < 0 {
		return fmt.Errorf("startup timeout %s is negative", c.StartupTimeout)
	}
	return nil
}

// Server is the contacts API, an http.Handler.
type Server struct {
	log        *slog.Logger
	introspect *introspector // nil in jwt mode
	jwt        *jwtVerifier  // nil in introspect mode
	mux        *http.ServeMux
}

// NewHandler discovers the introspection endpoint or, in jwt mode, the
// JWKS (waiting up to cfg.StartupTimeout for the issuer to come up) and
// returns the API.
func NewHandler(ctx context.Context, cfg Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.StartupTimeout == 0 {
		cfg.StartupTimeout = DefaultStartupTimeout
	}
	member := "introspection_endpoint"
	if cfg.Verify == VerifyJWT {
		member = "jwks_uri"
	}
	endpoint, err := discover(ctx, cfg.HTTPClient, cfg.Issuer, member, cfg.StartupTimeout, logger)
	if err != nil {
		return nil, err
	}
	s := &Server{log: logger, mux: http.NewServeMux()}
	if cfg.Verify == VerifyJWT {
		s.jwt = &jwtVerifier{issuer: cfg.Issuer, resource: cfg.Resource, keys: newKeySet(endpoint, cfg.HTTPClient, cfg.Now), now: cfg.Now}
	} else {
		s.introspect = newIntrospector(endpoint, cfg)
	}
	s.mux.HandleFunc("GET /contacts", s.contacts)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	return s, nil
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	s.mux.ServeHTTP(rec, r)
	s.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", rec.status, "duration", time.Since(start).Round(time.Microsecond).String())
}

// contactsResponse is the body of a successful GET /contacts.
type contactsResponse struct {
	Sub      string    `json:"sub"`
	Username string    `json:"username,omitempty"`
	Contacts []contact `json:"contacts"`
}

// contacts serves GET /contacts.
func (s *Server) contacts(w http.ResponseWriter, r *http.Request) {
	token, problem := bearerToken(r)
	switch problem {
	case "":
	case "missing":
		// RFC 6750 3.1: no error code when the request has no credentials.
		writeBearerError(w, http.StatusUnauthorized, "", "A bearer access token is required.")
		return
	default:
		writeBearerError(w, http.StatusBadRequest, "invalid_request", problem)
		return
	}
	g, err := s.check(r.Context(), token)
	var refused *invalidTokenError
	switch {
	case errors.As(err, &refused):
		s.log.Info("token refused", "reason", refused.reason)
		writeBearerError(w, http.StatusUnauthorized, "invalid_token", "The access token is not active.")
		return
	case errors.Is(err, errJWKSUnavailable):
		// The token may be fine: neither 401 nor 200.
		s.log.Error("JWT verification failed", "err", err)
		w.Header().Set("Retry-After", strconv.Itoa(int(jwksRetry/time.Second)))
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{
			"error": "temporarily_unavailable", "error_description": "The authorization server's keys could not be fetched to check the token."})
		return
	case err != nil:
		s.log.Error("introspection failed", "err", err)
		writeJSON(w, http.StatusBadGateway, map[string]string{
			"error": "temporarily_unavailable", "error_description": "The authorization server could not be asked about the token."})
		return
	}
	if !slices.Contains(strings.Fields(g.scope), requiredScope) {
		writeBearerError(w, http.StatusForbidden, "insufficient_scope", "The access token was not granted the contacts scope.")
		return
	}
	if !g.user {
		writeBearerError(w, http.StatusForbidden, "insufficient_scope", "The access token does not stand for a user.")
		return
	}
	writeJSON(w, http.StatusOK, contactsResponse{Sub: g.sub, Username: g.username, Contacts: contactsFor(g.sub)})
}

// check checks a token by introspection or as a JWT. An
// *invalidTokenError means the token is refused; any other error that it
// could not be checked.
func (s *Server) check(ctx context.Context, token string) (grant, error) {
	if s.jwt != nil {
		return s.jwt.verify(ctx, token)
	}
	info, err := s.introspect.introspect(ctx, token)
	if err != nil {
		return grant{}, err
	}
	if !info.isAccessToken() {
		return grant{}, invalid("not an active access token at introspection")
	}
	return grant{sub: info.Sub, username: info.Username, scope: info.Scope, user: info.Sub != ""}, nil
}

// bearerToken reads the access token from the Authorization header
// (RFC 6750 2.1). problem is "" for a token, "missing" when the request
// carries no bearer credentials, or else says what is malformed.
func bearerToken(r *http.Request) (token, problem string) {
	values := r.Header.Values("Authorization")
	if len(values) == 0 {
		return "", "missing"
	}
	if len(values) > 1 {
		return "", "The request has more than one Authorization header."
	}
	scheme, rest, _ := strings.Cut(values[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", "missing"
	}
	token = strings.TrimLeft(rest, " ")
	if !isB64Token(token) {
		return "", "The bearer token is malformed."
	}
	return token, ""
}

// isB64Token reports whether s is RFC 6750's b64token:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for _, c := range []byte(body) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-._~+/", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// writeBearerError answers with an RFC 6750 3 challenge. code and
// description are fixed strings of ours, never client input.
func writeBearerError(w http.ResponseWriter, status int, code, description string) {
	challenge := `Bearer realm="contacts"`
	body := map[string]string{"error_description": description}
	if code != "" {
		challenge += fmt.Sprintf(`, error=%q, error_description=%q`, code, description)
		body["error"] = code
	}
	if code == "insufficient_scope" {
		challenge += `, scope="` + requiredScope + `"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
