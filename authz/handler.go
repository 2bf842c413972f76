// Package authz is the HTTP face of the authorization server: the fosite
// provider wiring, the authorize flow with its login and consent pages, the
// token, introspection and revocation endpoints, and the middleware around
// them. New returns the whole thing as one http.Handler.
package authz

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"time"

	"github.com/gorilla/mux"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"

	"github.com/authz/authz/storage"
)

// Store is everything the HTTP layer needs of storage: fosite's interfaces
// (which *storage.Store pins itself) and our own users, sessions and consents.
type Store interface {
	fosite.Storage
	ClientStore
	DeleteClient(ctx context.Context, id string) error
	BeginTX(ctx context.Context) (context.Context, error)
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
	RevokeAccessToken(ctx context.Context, requestID string) error
	RevokeRefreshToken(ctx context.Context, requestID string) error
	GetAuthorizeCodeSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error)
	InvalidateAuthorizeCodeSession(ctx context.Context, signature string) error
	PrefetchCode(ctx context.Context, signature, code string) error
	PrefetchToken(ctx context.Context, accessSignature, refreshSignature string) error
	LookupForIntrospection(ctx context.Context, accessSignature, refreshSignature string, accessOnly bool) (*storage.AccessTokenView, error)
	ClaimPAR(ctx context.Context, requestURI, clientID, browser string, holdUntil time.Time) (url.Values, error)
	ConsumePAR(ctx context.Context, requestURI, browser string) error

	Authenticate(ctx context.Context, username, password string) (*storage.User, error)
	User(ctx context.Context, id string) (*storage.User, error)
	SessionUser(ctx context.Context, cookie string) (*storage.User, *storage.LoginSession, error)
	DeleteLoginSession(ctx context.Context, cookie string) error
	SaveConsent(ctx context.Context, userID, clientID string, scopes []string, ttl time.Duration) error
	HasConsent(ctx context.Context, userID, clientID string, scopes []string) (bool, error)
	CountAttempt(ctx context.Context, key string, p storage.ThrottlePolicy) (storage.Attempt, error)
	UncountAttempt(ctx context.Context, key string, windowStart time.Time) error
	ResetThrottle(ctx context.Context, key string) (bool, error)
	StartLoginSession(ctx context.Context, userID string, ttl time.Duration, previous string) (string, *storage.LoginSession, error)
	Ping(ctx context.Context) error
}

var _ Store = (*storage.Store)(nil)

// Handler serves every endpoint of the authorization server.
type Handler struct {
	cfg      Config
	store    Store
	provider *fosite.Fosite
	strategy oauth2.CoreStrategy
	keys     *keyManager
	jwks     *jwksFetcher
	signer   *keySigner
	pages    *pages
	scopes   *scopeCatalogue // the operator's scope descriptions (scopes.go)
	log      *slog.Logger
	base     string // the issuer's path, under which every route lives
	metrics  *Metrics
	subjects *subjects // the sub each client sees (pairwise.go)

	sessionCookie, csrfCookie string
	crossOrigin               *http.CrossOriginProtection
	http.Handler
}

// New checks cfg, parses the pages and composes the provider. It fails at
// start-up, not at the first request, when anything is missing.
func New(cfg Config, store *storage.Store, logger *slog.Logger) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if !storage.Instrumented(store.Pool()) {
		return nil, errors.New("the database pool was not made with storage.PoolConfig: database failures could not be told from client errors")
	}
	issuer, _ := url.Parse(cfg.Issuer) // Validate parsed it
	p, err := loadPages(cfg.TemplatesDir, issuer.Path)
	if err != nil {
		return nil, fmt.Errorf("load pages: %w", err)
	}
	p.logger = logger
	if err := p.setBrand(&cfg); err != nil {
		return nil, err
	}
	keys := newKeyManager(store, &cfg, logger)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := keys.ensure(ctx); err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	jwks := newJWKSFetcher(&cfg)
	salt, err := store.PairwiseSalt(ctx)
	if err != nil {
		return nil, fmt.Errorf("pairwise subjects: %w", err)
	}
	h := &Handler{
		cfg:    cfg,
		store:  store,
		keys:   keys,
		jwks:   jwks,
		signer: &keySigner{keys: keys},
		pages:  p,
		log:    logger,
		base:   issuer.Path,

		subjects: &subjects{salt: salt},
	}
	h.metrics = newMetrics(store.Pool(), keys, h.cfg.now)
	h.scopes = newScopeCatalogue(store, h.cfg.now, logger)
	// Client secret checks share the password checks' per-address slots.
	h.provider, h.strategy = newProvider(&h.cfg, newClientStore(&h.cfg, store, logger), keys, jwks, h.hashShare, h.subjects)
	h.sessionCookie, h.csrfCookie = cookieNames(cfg.secureCookies(), h.base)
	h.crossOrigin = http.NewCrossOriginProtection()
	h.Handler = h.routes()
	return h, nil
}

func (h *Handler) routes() http.Handler {
	r := mux.NewRouter()
	sub := r.PathPrefix(h.base + "/").Subrouter()
	if h.base == "" {
		sub = r
	}
	browser := h.crossOrigin

	// Pages a person uses in a browser: cross-origin form posts refused.
	sub.Handle("/oauth2/authorize", browser.Handler(http.HandlerFunc(h.authorize))).Methods(http.MethodGet, http.MethodPost)
	// The device flow's verification page (RFC 8628 3.3).
	sub.Handle("/device", browser.Handler(http.HandlerFunc(h.device))).Methods(http.MethodGet, http.MethodPost)
	// Logout takes cross-site POSTs from relying parties (RP-initiated
	// logout); it checks the origin itself for our own confirmation form.
	sub.HandleFunc("/oauth2/logout", h.logout).Methods(http.MethodGet, http.MethodPost)
	sub.PathPrefix("/static/").Handler(http.StripPrefix(h.base+"/static/", h.pages.staticHandler()))
	// The issuer URL itself: what this server is (and the demo in dev mode).
	sub.HandleFunc("/", h.home).Methods(http.MethodGet, http.MethodHead)

	// Endpoints machines call. Those a browser app (a SPA) calls too allow
	// any origin: they use no cookies, so a response is only readable by a
	// page that already holds the code, token or verifier it sent.
	sub.HandleFunc("/oauth2/introspect", h.introspect).Methods(http.MethodPost)
	for path, handler := range map[string]http.HandlerFunc{
		"/oauth2/token":                           h.token,
		"/oauth2/device/auth":                     h.deviceAuthorization,
		"/oauth2/revoke":                          h.revoke,
		"/oauth2/par":                             h.par,
		"/userinfo":                               h.userinfo,
		"/.well-known/openid-configuration":       h.discovery,
		"/.well-known/oauth-authorization-server": h.discovery,
		"/.well-known/jwks.json":                  h.keys.serveJWKS,
	} {
		methods := []string{http.MethodPost}
		switch path {
		case "/userinfo":
			methods = []string{http.MethodGet, http.MethodPost}
		case "/.well-known/openid-configuration", "/.well-known/oauth-authorization-server", "/.well-known/jwks.json":
			methods = []string{http.MethodGet}
		}
		sub.Handle(path, allowAnyOrigin(handler)).Methods(append(methods, http.MethodOptions)...)
	}

	// Dynamic client registration (RFC 7591) and management (RFC 7592):
	// bearer tokens, no cookies, so any origin may call them.
	if h.cfg.Registration == RegistrationToken || h.cfg.Registration == RegistrationOpen {
		fetchSectors := sectorFetching(&h.cfg)
		sub.Handle("/oauth2/register", allowAnyOrigin(fetchSectors(http.HandlerFunc(h.register)))).Methods(http.MethodPost, http.MethodOptions)
		sub.Handle("/oauth2/register/{client_id}", allowAnyOrigin(fetchSectors(http.HandlerFunc(h.registration)))).
			Methods(http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodOptions)
	}

	sub.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	}).Methods(http.MethodGet, http.MethodHead)
	sub.HandleFunc("/readyz", h.ready).Methods(http.MethodGet, http.MethodHead)

	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h.pages.renderError(w, http.StatusNotFound, errorPage{Title: "Page not found", Message: "There is nothing at this address."})
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusMethodNotAllowed)
		_, _ = w.Write([]byte("method not allowed\n"))
	})

	h.metrics.tagRoutes(r, h.base)

	// Outermost first, in the order a request meets them.
	issuer, _ := url.Parse(h.cfg.Issuer) // Validate parsed it
	return chain(r, h.recoverPanics, accessLog(h.log, "request", h.metrics, NewAuditor(h.log)), noteClientAddr(h.clientAddr),
		refuseForeignTarget(issuer.Host), h.securityHeaders,
		guardDatabase(h.cfg.RequestTimeout, h.unavailable))
}

func (h *Handler) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := h.store.Ping(ctx); err != nil {
		h.log.Error("readiness check failed", "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("database unavailable\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// allowAnyOrigin answers CORS preflights and lets any origin read the
// response, without credentials (cookies are never sent or honoured).
func allowAnyOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		if r.Method == http.MethodOptions {
			h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, DPoP")
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", "WWW-Authenticate")
		next.ServeHTTP(w, r)
	})
}

// chain wraps h so that the first middleware is the outermost.
func chain(h http.Handler, mws ...func(http.Handler) http.Handler) http.Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

func (h *Handler) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				h.log.Error("panic serving request", "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				h.pages.renderError(w, http.StatusInternalServerError, errorPage{
					Title: "Something went wrong", Message: "The server hit an unexpected problem. Please try again.", Code: "server_error"})
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// statusRecorder remembers the status a handler wrote, for the access log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// newRequestID is a random id for one request's log line.
func newRequestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// securityHeaders: pages cannot be framed, load nothing from elsewhere and
// leak no URL (with its code or state) in Referer.
func (h *Handler) securityHeaders(next http.Handler) http.Handler {
	hsts := h.cfg.secureCookies()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' https:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		if hsts {
			hd.Set("Strict-Transport-Security", "max-age=31536000")
		}
		next.ServeHTTP(w, r)
	})
}
