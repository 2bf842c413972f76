// Package bff is the demo web app for authz: a backend-for-frontend (a
// confidential OAuth 2.0 client) with a "Get contacts" button. It runs as
// cmd/demo-bff, and inside "authz dev --demo".
//
// Signing in sends the browser to the authorization server's
// /oauth2/authorize with state, nonce and PKCE (S256). The state, nonce and
// code verifier stay in the BFF's memory, bound to a random pre-login
// cookie, and the state is checked when the browser comes back to the
// redirect URI. The BFF exchanges the code with its client secret
// (client_secret_basic), verifies the ID token (signature, issuer,
// audience, expiry, nonce, at_hash) and keeps every token on the server:
// the browser only gets a random session id in an HttpOnly, SameSite=Lax
// cookie. "Get contacts" calls the contacts API (package
// internal/demo/api) with the access token, refreshing it first when it
// has expired. "Sign out" ends the BFF session, revokes the refresh token
// and sends the browser to the provider's end_session_endpoint
// (RP-initiated logout) with id_token_hint, so the provider's session ends
// too.
//
// Sessions live in memory, in a map guarded by a mutex: they are lost when
// the process stops and are not shared between replicas. That is fine for a
// demo; a production BFF keeps them in a shared store. A session ends 12
// hours after sign-in, at sign-out, or when its refresh token stops working.
//
// The pages have stable element ids for browser tests: the "Get contacts"
// button is #get-contacts, "Sign out" #sign-out, the contacts table
// #contacts, an error message #error, a notice (signed out, access not
// allowed) #notice, the signed-in name #who. Signed out, "Get contacts" is
// the one way to sign in: its form is #sign-in.
package bff

import (
	"bytes"
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Defaults for Config.
const (
	DefaultScope          = "openid profile email offline_access contacts"
	DefaultStartupTimeout = 30 * time.Second
)

// Cookie names. Each holds a random value only, but flashCookie, which
// names one of a fixed set of notices.
const (
	sessionCookie = "demo_bff_session" // the signed-in session's id
	loginCookie   = "demo_bff_login"   // the sign-in in progress
	logoutCookie  = "demo_bff_logout"  // the state sent with RP-initiated logout
	flashCookie   = "demo_bff_flash"   // a notice for the next page: flashDenied
)

// flashDenied is flashCookie's value after the user denied access on the
// consent page.
const flashDenied = "denied"

// maxEntries bounds sessions and sign-ins in progress each, so that a
// flood of requests cannot exhaust memory.
const maxEntries = 100_000

// Config is the BFF's configuration.
type Config struct {
	// Issuer is the authorization server's issuer URL.
	Issuer string
	// ClientID and ClientSecret are the BFF's client credentials
	// (client_secret_basic).
	ClientID     string
	ClientSecret string
	// RedirectURI is the registered redirect URI; the BFF serves its path.
	// Its origin is where the pages live.
	RedirectURI string
	// PostLogoutRedirectURI is the registered post_logout_redirect_uri;
	// empty means the redirect URI's origin + "/".
	PostLogoutRedirectURI string
	// APIURL is the contacts API's base URL; the BFF calls APIURL/contacts.
	APIURL string
	// Resource, when set, is sent as RFC 8707's resource at sign-in, code
	// exchange and refresh, so that the access token is for that API only
	// (its aud). The contacts API that verifies JWT access tokens itself
	// needs it: its own URL.
	Resource string
	// Scopes are asked for at sign-in.
	Scopes []string
	// StartupTimeout is how long NewServer waits for the issuer's discovery
	// document; 0 means DefaultStartupTimeout.
	StartupTimeout time.Duration
	// HTTPClient talks to the authorization server and the API; nil means
	// a client with a 10s timeout.
	HTTPClient *http.Client
	// Now is the clock for sessions and ID token expiry; nil means time.Now.
	Now func() time.Time
}

// Server is the BFF, an http.Handler.
type Server struct {
	cfg           Config
	log           *slog.Logger
	client        *http.Client
	oauth         *oauth2.Config
	verifier      *oidc.IDTokenVerifier
	endSessionURL string
	revocationURL string
	origin        string // scheme://host of the redirect URI
	host          string // its host
	secure        bool   // cookies are Secure (https)
	sessions      *store[*session]
	logins        *store[*pendingLogin]
	crossOrigin   *http.CrossOriginProtection
	callbackPath  string // the redirect URI's path
	pages         *template.Template
	mux           *http.ServeMux
}

// Validate checks the configuration; NewServer does too.
func (c Config) Validate() error {
	for _, u := range []struct{ name, value string }{
		{"issuer", c.Issuer}, {"redirect URI", c.RedirectURI}, {"API URL", c.APIURL},
	} {
		if !isHTTPURL(u.value) {
			return fmt.Errorf("%s %q is not an http(s) URL", u.name, u.value)
		}
	}
	if c.Resource != "" {
		if u, err := url.Parse(c.Resource); err != nil || !u.IsAbs() || u.Fragment != "" {
			return fmt.Errorf("resource %q is not an absolute URI without a fragment (RFC 8707)", c.Resource)
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

//go:embed page.html style.css favicon.svg
var assets embed.FS

// initial is the first letter of name, upper case, for avatars.
func initial(name string) string {
	for _, r := range strings.TrimSpace(name) {
		return strings.ToUpper(string(r))
	}
	return "?"
}

// NewServer discovers the provider (waiting up to cfg.StartupTimeout for
// it to come up) and returns the BFF.
func NewServer(ctx context.Context, cfg Config, logger *slog.Logger) (*Server, error) {
	if cfg.PostLogoutRedirectURI == "" && isHTTPURL(cfg.RedirectURI) {
		u, _ := url.Parse(cfg.RedirectURI)
		cfg.PostLogoutRedirectURI = u.Scheme + "://" + u.Host + "/"
	}
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
	redirect, _ := url.Parse(cfg.RedirectURI)
	switch p := redirect.EscapedPath(); {
	case p == "" || p == "/" || strings.ContainsAny(p, "{}"):
		return nil, fmt.Errorf("redirect URI %q needs a path of its own, such as /callback", cfg.RedirectURI)
	case slices.Contains([]string{"/login", "/contacts", "/logout", "/style.css", "/favicon.svg", "/healthz"}, p):
		return nil, fmt.Errorf("redirect URI %q: the BFF serves %s itself", cfg.RedirectURI, p)
	}
	pages, err := template.New("page.html").Funcs(template.FuncMap{"initial": initial}).ParseFS(assets, "page.html")
	if err != nil {
		return nil, err
	}
	provider, err := discover(ctx, cfg.HTTPClient, cfg.Issuer, cfg.StartupTimeout, logger)
	if err != nil {
		return nil, err
	}
	var meta struct {
		EndSession string `json:"end_session_endpoint"`
		Revocation string `json:"revocation_endpoint"`
	}
	if err := provider.Claims(&meta); err != nil {
		return nil, fmt.Errorf("discovery document: %w", err)
	}
	endpoint := provider.Endpoint()
	endpoint.AuthStyle = oauth2.AuthStyleInHeader // client_secret_basic
	s := &Server{
		cfg:    cfg,
		log:    logger,
		client: cfg.HTTPClient,
		oauth: &oauth2.Config{
			ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret,
			Endpoint: endpoint, RedirectURL: cfg.RedirectURI, Scopes: cfg.Scopes,
		},
		verifier:      provider.Verifier(&oidc.Config{ClientID: cfg.ClientID, Now: cfg.Now}),
		endSessionURL: meta.EndSession,
		revocationURL: meta.Revocation,
		origin:        redirect.Scheme + "://" + redirect.Host,
		host:          redirect.Host,
		secure:        redirect.Scheme == "https",
		sessions:      newStore[*session](cfg.Now, maxEntries),
		logins:        newStore[*pendingLogin](cfg.Now, maxEntries),
		crossOrigin:   http.NewCrossOriginProtection(),
		callbackPath:  redirect.EscapedPath(),
		pages:         pages,
		mux:           http.NewServeMux(),
	}
	s.mux.HandleFunc("GET /{$}", s.home)
	s.mux.HandleFunc("GET /login", s.login)
	s.mux.HandleFunc("GET "+redirect.EscapedPath(), s.callback)
	s.mux.HandleFunc("GET /contacts", s.contacts)
	s.mux.HandleFunc("POST /logout", s.logout)
	s.mux.HandleFunc("GET /style.css", s.asset("style.css", "text/css; charset=utf-8"))
	s.mux.HandleFunc("GET /favicon.svg", s.asset("favicon.svg", "image/svg+xml"))
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	return s, nil
}

// ServeHTTP sets the security headers, keeps browsers on the redirect
// URI's host and logs the request (its path only: a callback's query holds
// the code).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	if (r.Method == http.MethodGet || r.Method == http.MethodHead) && r.URL.Path != "/healthz" && !strings.EqualFold(r.Host, s.host) {
		// Cookies belong to a host: a sign-in started on 127.0.0.1 could
		// not be finished on the callback at localhost.
		http.Redirect(rec, r, s.origin+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	} else {
		s.mux.ServeHTTP(rec, r)
	}
	s.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", rec.status, "duration", time.Since(start).Round(time.Microsecond).String())
}

// home serves the start page. After RP-initiated logout the provider sends
// the browser here with the state we gave it; after a denied consent the
// callback sends it here with flashCookie set.
func (s *Server) home(w http.ResponseWriter, r *http.Request) {
	sess, _ := s.session(r)
	var data pageData
	if state := r.URL.Query().Get("state"); state != "" {
		if c, err := r.Cookie(logoutCookie); err == nil && equal(c.Value, state) {
			data.Title = "Signed out"
			data.Notice = &notice{Kind: "ok", Title: "You have signed out.",
				Text: "Your session in this app has ended, and authz signed you out too."}
		}
		s.clearCookie(w, logoutCookie)
	}
	if c, err := r.Cookie(flashCookie); err == nil {
		if c.Value == flashDenied {
			data.Title = "Access not allowed"
			data.Notice = &notice{Kind: "warn", Title: "You didn't allow access.",
				Text: "Contacts demo needs your permission to read your contacts from the Contacts API. Nothing was shared. To try again, choose Allow when authz asks."}
			data.Action = "Try again"
		}
		s.clearCookie(w, flashCookie)
	}
	s.render(w, http.StatusOK, sess, data)
}

// asset serves an embedded file.
func (s *Server) asset(name, contentType string) http.HandlerFunc {
	body, _ := assets.ReadFile(name)
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Cache-Control", "public, max-age=3600")
		_, _ = w.Write(body)
	}
}

// session returns the browser's live session and its id, or nil.
func (s *Server) session(r *http.Request) (*session, string) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, ""
	}
	sess, ok := s.sessions.get(c.Value)
	if !ok {
		return nil, ""
	}
	return sess, c.Value
}

// pageData fills page.html. It shows the error page when Error is set,
// else the contacts when Contacts is, else the home page.
type pageData struct {
	Title    string // the <title> before " · Contacts demo", and the error page's heading
	Who      string // the signed-in user's name; empty when signed out
	CSRF     string
	Notice   *notice
	Error    string
	Action   string // the label of the "Get contacts" button
	Contacts *contactsDoc
}

// notice is a message above the page: Kind is "ok" or "warn".
type notice struct{ Kind, Title, Text string }

func (s *Server) render(w http.ResponseWriter, status int, sess *session, data pageData) {
	if sess != nil {
		data.Who, data.CSRF = sess.name, sess.csrf
	}
	switch {
	case data.Error != "":
		data.Action = "Try again"
	case data.Contacts != nil:
		data.Title, data.Action = "Your contacts", "Refresh"
	case data.Action == "":
		data.Action = "Get contacts"
	}
	var buf bytes.Buffer
	if err := s.pages.ExecuteTemplate(&buf, "page.html", data); err != nil {
		s.log.Error("render", "err", err)
		http.Error(w, "Internal Server Error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fail shows message on the page. err, the cause, is logged, never shown.
//
// A denial on the consent page is the user's choice, not a failure: it
// sends the browser home, where a notice explains it and offers to try
// again. Left on the callback URL, a reload would say something else (the
// sign-in is used up).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, message string, err error) {
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	attrs := []any{"status", status}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	s.log.Log(r.Context(), level, message, attrs...)
	sess, _ := s.session(r)
	if status == http.StatusForbidden && r.URL.EscapedPath() == s.callbackPath && r.URL.Query().Get("error") == "access_denied" {
		s.setCookie(w, flashCookie, flashDenied, time.Minute)
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	title := "Something went wrong"
	switch r.URL.EscapedPath() {
	case s.callbackPath, "/login":
		title = "Sign-in failed"
	case "/contacts":
		title = "Couldn't get your contacts"
	case "/logout":
		title = "Sign-out failed"
	}
	s.render(w, status, sess, pageData{Title: title, Error: message})
}

func (s *Server) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: int(maxAge / time.Second),
		HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode,
	})
}

func (s *Server) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Path: "/", MaxAge: -1, HttpOnly: true, Secure: s.secure, SameSite: http.SameSiteLaxMode})
}

// clientContext makes x/oauth2 and go-oidc use our HTTP client.
func (s *Server) clientContext(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, s.client)
}

// equal compares secrets in constant time.
func equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
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
