package authz

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gorilla/mux"

	"github.com/authz/authz/storage"
)

// Pagination of the admin API's lists.
const (
	adminDefaultLimit = 100
	adminMaxLimit     = 500
	maxUserBodyLen    = 16 << 10
)

// adminStore is what the admin API needs of storage.
type adminStore interface {
	ClientStore
	UserStore
	ListClients(ctx context.Context, after string, limit int) ([]*storage.Client, error)
	DeleteClient(ctx context.Context, id string) error
	ListUsers(ctx context.Context, after string, limit int) ([]*storage.User, error)
	DeleteUser(ctx context.Context, id string) error
	DeleteUserLoginSessions(ctx context.Context, userID string) (int64, error)
	WithdrawConsents(ctx context.Context, userID, clientID string) (int64, error)
	UnlockUser(ctx context.Context, username string) (bool, error)
	ScopeStore
}

var _ adminStore = (*storage.Store)(nil)

// admin serves the admin API: clients and users as JSON, for operators.
type admin struct {
	cfg         Config
	store       adminStore
	log         *slog.Logger
	tokenDigest [sha256.Size]byte // of cfg.AdminToken
	noToken     bool              // dev mode: no token, loopback Host only
	crossOrigin *http.CrossOriginProtection
	metrics     *Metrics // nil: requests not counted (WithMetrics)
}

// NewAdmin returns the admin API, to be served on its own listener
// (cfg.AdminListen). Every request needs "Authorization: Bearer
// cfg.AdminToken"; only with cfg.AdminWithoutToken (dev mode, on a loopback
// address) may the token be empty, and then requests must name a loopback
// Host, so that a web page cannot reach the API through DNS rebinding.
// With WithMetrics it serves /metrics too, and with cfg.Pprof the
// profiles under /debug/pprof/ (see extras).
func NewAdmin(cfg Config, store *storage.Store, logger *slog.Logger, opts ...AdminOption) (http.Handler, error) {
	if cfg.AdminToken == "" && !cfg.AdminWithoutToken {
		return nil, errors.New("the admin API needs AUTHZ_ADMIN_TOKEN (generate one with: openssl rand -base64 48)")
	}
	if cfg.AdminToken != "" && len(cfg.AdminToken) < MinSecretLength {
		return nil, fmt.Errorf("AUTHZ_ADMIN_TOKEN is %d bytes; it must be at least %d (generate one with: openssl rand -base64 48)", len(cfg.AdminToken), MinSecretLength)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &admin{
		cfg:         cfg,
		store:       store,
		log:         logger,
		tokenDigest: sha256.Sum256([]byte(cfg.AdminToken)),
		noToken:     cfg.AdminToken == "",
		crossOrigin: http.NewCrossOriginProtection(),
	}
	for _, o := range opts {
		o(a)
	}
	// A pairwise client's sector_identifier_uri is fetched with the
	// configured HTTP client, as jwks_uri documents are (pairwise.go).
	api := chain(a.routes(), guardDatabase(cfg.RequestTimeout, writeUnavailable), sectorFetching(&a.cfg))
	// The log comes first, so that a request whose panic was recovered
	// has its line too.
	return chain(a.extras(api), accessLog(a.log, "admin request", a.metrics, NewAuditor(a.log)), a.auditAdminRequests,
		a.recoverPanics, a.authenticate), nil
}

// adminMethods routes one path by method, answering others with 405 and
// an Allow header.
type adminMethods map[string]http.HandlerFunc

func (m adminMethods) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h, ok := m[r.Method]; ok {
		h(w, r)
		return
	}
	allow := make([]string, 0, len(m))
	for method := range m {
		allow = append(allow, method)
	}
	slices.Sort(allow)
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeJSON(w, http.StatusMethodNotAllowed, map[string]string{
		"error": "method_not_allowed", "error_description": fmt.Sprintf("%s is not allowed here (allowed: %s)", r.Method, strings.Join(allow, ", ")),
	})
}

func (a *admin) routes() http.Handler {
	r := mux.NewRouter()
	// Client ids may hold any printable character, "/" included: match on
	// the escaped path and unescape the variables (adminPathVar). Unclean paths
	// are not redirected: they are not ours.
	r.UseEncodedPath()
	r.SkipClean(true)
	r.Handle("/admin/clients", adminMethods{http.MethodGet: a.listClients, http.MethodPost: a.createClient})
	r.Handle("/admin/clients/{id}", adminMethods{
		http.MethodGet: a.getClient, http.MethodPut: a.putClient, http.MethodPatch: a.patchClient, http.MethodDelete: a.deleteClient,
	})
	r.Handle("/admin/clients/{id}/secret", adminMethods{http.MethodPost: a.rotateSecret})
	r.Handle("/admin/users", adminMethods{http.MethodGet: a.listUsers, http.MethodPost: a.createUser})
	r.Handle("/admin/users/{id}", adminMethods{http.MethodGet: a.getUser, http.MethodPatch: a.patchUser, http.MethodDelete: a.deleteUser})
	r.Handle("/admin/users/{id}/sessions", adminMethods{http.MethodDelete: a.deleteSessions})
	r.Handle("/admin/users/{id}/consents", adminMethods{http.MethodDelete: a.withdrawConsents})
	r.Handle("/admin/users/{id}/unlock", adminMethods{http.MethodPost: a.unlockUser})
	a.scopeRoutes(r)
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeAPIError(w, r, a.log, &apiError{Status: http.StatusNotFound, Code: "not_found", Description: "there is no admin endpoint at " + r.URL.EscapedPath()})
	})
	r.Use(noteAdminRoute)
	a.metrics.tagRoutes(r, "")
	return r
}

// authenticate lets through requests with the admin token; in dev mode
// without a token, those naming a loopback Host. Browsers' cross-origin
// writes are refused either way: nothing legitimate sends them. A scrape
// of /metrics needs no token (Prometheus has none to send), but in dev
// mode still a loopback Host.
func (a *admin) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if a.servesMetrics() && r.URL.Path == metricsPath && !a.noToken {
			next.ServeHTTP(w, r)
			return
		}
		if a.noToken {
			if !adminLoopbackHost(r.Host) {
				writeAPIError(w, r, a.log, &apiError{Status: http.StatusForbidden, Code: "forbidden",
					Description: "without an admin token the admin API answers only requests to localhost, 127.0.0.1 or [::1]"})
				return
			}
		} else {
			token, sent := adminBearerToken(r)
			got := sha256.Sum256([]byte(token))
			if !sent || subtle.ConstantTimeCompare(got[:], a.tokenDigest[:]) != 1 {
				challenge := `Bearer realm="authz-admin"`
				desc := "the admin API needs Authorization: Bearer <AUTHZ_ADMIN_TOKEN>"
				if sent {
					challenge += `, error="invalid_token"`
					desc = "the admin token is not valid"
				}
				w.Header().Set("WWW-Authenticate", challenge)
				writeAPIError(w, r, a.log, &apiError{Status: http.StatusUnauthorized, Code: "invalid_token", Description: desc})
				return
			}
		}
		if err := a.crossOrigin.Check(r); err != nil {
			writeAPIError(w, r, a.log, &apiError{Status: http.StatusForbidden, Code: "forbidden", Description: "cross-origin requests from browsers are refused"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// adminBearerToken returns the token of an Authorization: Bearer header and
// whether one was sent.
func adminBearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// adminLoopbackHost reports whether a Host header names this machine.
func adminLoopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return strings.EqualFold(host, "localhost") || host == "127.0.0.1" || host == "::1"
}

func (a *admin) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				a.log.Error("panic serving admin request", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error", "error_description": "The server hit an unexpected problem."})
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// fail answers with err, mapped onto the admin API's error codes.
func (a *admin) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ue *InvalidUserError
	switch {
	case errors.As(err, &ue):
		err = badRequest("%s", ue.Message)
	case errors.Is(err, ErrClientExists), errors.Is(err, ErrUsernameTaken):
		err = &apiError{Status: http.StatusConflict, Code: "conflict", Description: err.Error()}
	case errors.Is(err, ErrNoSecret):
		err = badRequest("%s", err)
	}
	writeAPIError(w, r, a.log, err)
}

func adminNotFound(what, id string) *apiError {
	return &apiError{Status: http.StatusNotFound, Code: "not_found", Description: fmt.Sprintf("no %s with id %q", what, id)}
}

// adminOrNotFound turns storage's not-found into a 404 naming what was
// looked for.
func adminOrNotFound(err error, what, id string) error {
	if errors.Is(err, storage.ErrNotFound) {
		return adminNotFound(what, id)
	}
	return err
}

// adminPathVar returns the path variable name, unescaped.
func adminPathVar(r *http.Request, name string) string {
	v := mux.Vars(r)[name]
	if u, err := url.PathUnescape(v); err == nil {
		return u
	}
	return v
}

// adminQuery returns the request's query parameters after checking that
// it has only those allowed, each at most once.
func adminQuery(r *http.Request, allowed ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("the query string is malformed: %v", err)
	}
	for k, v := range q {
		if !slices.Contains(allowed, k) {
			if len(allowed) == 0 {
				return nil, badRequest("unknown query parameter %q (this endpoint takes none)", k)
			}
			return nil, badRequest("unknown query parameter %q (allowed: %s)", k, strings.Join(allowed, ", "))
		}
		if len(v) > 1 {
			return nil, badRequest("query parameter %q is given more than once", k)
		}
	}
	return q, nil
}

// adminPage reads limit and cursor; the cursor is the base64url of the
// last key of the previous page.
func adminPage(r *http.Request) (after string, limit int, err error) {
	q, err := adminQuery(r, "limit", "cursor")
	if err != nil {
		return "", 0, err
	}
	limit = adminDefaultLimit
	if v := q.Get("limit"); v != "" || q.Has("limit") {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > adminMaxLimit {
			return "", 0, badRequest("limit must be an integer from 1 to %d", adminMaxLimit)
		}
		limit = n
	}
	if c := q.Get("cursor"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		// What no username or client id holds (NUL, invalid UTF-8) would
		// only make PostgreSQL fail.
		if err != nil || len(b) == 0 || !utf8.Valid(b) || bytes.IndexByte(b, 0) >= 0 {
			return "", 0, badRequest("cursor is not one this API returned")
		}
		after = string(b)
	}
	return after, limit, nil
}

// adminList is a page of a list: {"items": [...], "next_cursor": "..."}.
type adminList[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// newAdminList presents rows fetched with limit+1: the extra row only says
// that there is a next page.
func newAdminList[R, T any](rows []R, limit int, key func(R) string, present func(R) T) adminList[T] {
	p := adminList[T]{Items: make([]T, 0, min(len(rows), limit))}
	if len(rows) > limit {
		rows = rows[:limit]
		p.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(key(rows[limit-1])))
	}
	for _, row := range rows {
		p.Items = append(p.Items, present(row))
	}
	return p
}

// adminNoQuery refuses query parameters on an endpoint that takes none.
func adminNoQuery(r *http.Request) error {
	_, err := adminQuery(r)
	return err
}

// Clients.

func (a *admin) listClients(w http.ResponseWriter, r *http.Request) {
	after, limit, err := adminPage(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	cs, err := a.store.ListClients(r.Context(), after, limit+1)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newAdminList(cs, limit, func(c *storage.Client) string { return c.ID }, ClientMetadataOf))
}

func (a *admin) createClient(w http.ResponseWriter, r *http.Request) {
	var m ClientMetadata
	if err := adminNoQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.decodeClientMetadata(w, r, &m); err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := CreateClient(r.Context(), a.store, m)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	auditClient(r.Context(), EventClientCreated, out.ClientID, "admin")
	w.Header().Set("Location", "/admin/clients/"+url.PathEscape(out.ClientID))
	writeJSON(w, http.StatusCreated, out)
}

func (a *admin) getClient(w http.ResponseWriter, r *http.Request) {
	id := adminPathVar(r, "id")
	if err := adminNoQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	c, err := a.store.Client(r.Context(), id)
	if err != nil {
		a.fail(w, r, adminOrNotFound(err, "client", id))
		return
	}
	writeJSON(w, http.StatusOK, ClientMetadataOf(c))
}

func (a *admin) putClient(w http.ResponseWriter, r *http.Request) {
	id := adminPathVar(r, "id")
	var m ClientMetadata
	if err := adminNoQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.decodeClientMetadata(w, r, &m); err != nil {
		a.fail(w, r, err)
		return
	}
	out, err := UpdateClient(r.Context(), a.store, id, m)
	if err != nil {
		a.fail(w, r, adminOrNotFound(err, "client", id))
		return
	}
	auditClient(r.Context(), EventClientUpdated, id, "admin")
	writeJSON(w, http.StatusOK, out)
}

// patchClient applies a JSON Merge Patch (RFC 7386) to the client's
// metadata: members given replace the current ones, null removes one (it
// takes its default), and the result is validated as a whole, as by PUT.
func (a *admin) patchClient(w http.ResponseWriter, r *http.Request) {
	id := adminPathVar(r, "id")
	if err := adminNoQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	patch, err := readMergePatch(w, r, maxClientMetadataLen, "invalid_client_metadata")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	// A sector_identifier_uri is fetched now, from the client as it is,
	// not while the transaction below holds its row.
	ctx := r.Context()
	if cur, err := a.store.Client(ctx, id); err == nil {
		if doc, err := toJSONObject(ClientMetadataOf(cur)); err == nil {
			var m ClientMetadata
			_, newStatement := patch["software_statement"]
			if a.decodePatchedMetadata(applyMergePatch(doc, patch), newStatement, &m) == nil {
				if ctx, err = presolveSector(ctx, id, m); err != nil {
					a.fail(w, r, err)
					return
				}
			}
		}
	}
	var out ClientMetadata
	err = a.store.InTx(ctx, func(ctx context.Context) error {
		// Locked until the update commits: concurrent patches apply one
		// after the other instead of losing one.
		cur, err := a.store.ClientForUpdate(ctx, id)
		if err != nil {
			return err
		}
		doc, err := toJSONObject(ClientMetadataOf(cur))
		if err != nil {
			return err
		}
		var m ClientMetadata
		_, newStatement := patch["software_statement"]
		if err := a.decodePatchedMetadata(applyMergePatch(doc, patch), newStatement, &m); err != nil {
			return err
		}
		out, err = UpdateClient(ctx, a.store, id, m)
		return err
	})
	if err != nil {
		a.fail(w, r, adminOrNotFound(err, "client", id))
		return
	}
	auditClient(r.Context(), EventClientUpdated, id, "admin")
	writeJSON(w, http.StatusOK, out)
}

func (a *admin) deleteClient(w http.ResponseWriter, r *http.Request) {
	id := adminPathVar(r, "id")
	if err := adminNoQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.store.DeleteClient(r.Context(), id); err != nil {
		a.fail(w, r, adminOrNotFound(err, "client", id))
		return
	}
	auditClient(r.Context(), EventClientDeleted, id, "admin")
	w.WriteHeader(http.StatusNoContent)
}

// rotateSecret gives a client a new secret, returned this once. The body
// is optional: {"client_secret": "...", "grace_period": seconds}.
func (a *admin) rotateSecret(w http.ResponseWriter, r *http.Request) {
	id := adminPathVar(r, "id")
	if err := adminNoQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	var req struct {
		ClientSecret string `json:"client_secret"`
		GracePeriod  *int64 `json:"grace_period"`
	}
	if r.Header.Get("Content-Type") == "" {
		// No Content-Type: only an empty body, which asks for the defaults.
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxClientMetadataLen))
		if err != nil || len(bytes.TrimSpace(b)) > 0 {
			a.fail(w, r, &apiError{Status: http.StatusUnsupportedMediaType, Code: "invalid_request",
				Description: "send no body, or a JSON object with Content-Type: application/json"})
			return
		}
	} else if err := decodeJSONBody(w, r, &req, maxClientMetadataLen, "invalid_request"); err != nil {
		a.fail(w, r, err)
		return
	}
	grace := a.cfg.ClientSecretGrace
	if req.GracePeriod != nil {
		const maxGrace = 365 * 24 * 60 * 60
		if *req.GracePeriod < 0 || *req.GracePeriod > maxGrace {
			a.fail(w, r, badRequest("grace_period must be a number of seconds from 0 to %d", maxGrace))
			return
		}
		grace = time.Duration(*req.GracePeriod) * time.Second
	}
	out, err := RotateClientSecret(r.Context(), a.store, id, req.ClientSecret, grace, a.cfg.now())
	if err != nil {
		a.fail(w, r, adminOrNotFound(err, "client", id))
		return
	}
	auditClient(r.Context(), EventClientSecretRotate, id, "admin", slog.Int64("grace_period_seconds", int64(grace/time.Second)))
	writeJSON(w, http.StatusOK, out)
}

// Users.

func (a *admin) listUsers(w http.ResponseWriter, r *http.Request) {
	after, limit, err := adminPage(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	us, err := a.store.ListUsers(r.Context(), after, limit+1)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newAdminList(us, limit, func(u *storage.User) string { return u.Username },
		func(u *storage.User) *storage.User { return u }))
}

func (a *admin) createUser(w http.ResponseWriter, r *http.Request) {
	var in NewUser
	if err := adminNoQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := decodeJSONBody(w, r, &in, maxUserBodyLen, "invalid_request"); err != nil {
		a.fail(w, r, err)
		return
	}
	u, err := CreateUser(r.Context(), a.store, in)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	auditUser(r.Context(), EventUserCreated, u.ID, "admin")
	w.Header().Set("Location", "/admin/users/"+url.PathEscape(u.ID))
	writeJSON(w, http.StatusCreated, u)
}

func (a *admin) getUser(w http.ResponseWriter, r *http.Request) {
	id := adminPathVar(r, "id")
	if err := adminNoQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	u, err := a.store.User(r.Context(), id)
	if err != nil {
		a.fail(w, r, adminOrNotFound(err, "user", id))
		return
	}
	writeJSON(w, http.StatusOK, u)
}

// patchUser changes the members given: password, email, email_verified,
// name, disabled. Following JSON Merge Patch, null removes email or name;
// the others cannot be null.
func (a *admin) patchUser(w http.ResponseWriter, r *http.Request) {
	id := adminPathVar(r, "id")
	if err := adminNoQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	patch, err := readMergePatch(w, r, maxUserBodyLen, "invalid_request")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	for k, v := range patch {
		if v != nil {
			continue
		}
		if k != "email" && k != "name" {
			a.fail(w, r, badRequest("field %q cannot be null (only email and name can be removed)", k))
			return
		}
		patch[k] = ""
	}
	var ch UserChange
	if err := decodeJSONObject(patch, &ch, "invalid_request"); err != nil {
		a.fail(w, r, err)
		return
	}
	u, err := UpdateUser(r.Context(), a.store, id, ch)
	if err != nil {
		a.fail(w, r, adminOrNotFound(err, "user", id))
		return
	}
	auditUser(r.Context(), EventUserUpdated, id, "admin", slog.String("fields", strings.Join(slices.Sorted(maps.Keys(patch)), " ")))
	writeJSON(w, http.StatusOK, u)
}

func (a *admin) deleteUser(w http.ResponseWriter, r *http.Request) {
	id := adminPathVar(r, "id")
	if err := adminNoQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.store.DeleteUser(r.Context(), id); err != nil {
		a.fail(w, r, adminOrNotFound(err, "user", id))
		return
	}
	auditUser(r.Context(), EventUserDeleted, id, "admin")
	w.WriteHeader(http.StatusNoContent)
}

// deleteSessions logs a user out everywhere. Their tokens stay: withdraw
// consents or disable the user to end those too.
func (a *admin) deleteSessions(w http.ResponseWriter, r *http.Request) {
	id := adminPathVar(r, "id")
	if err := adminNoQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	if _, err := a.store.User(r.Context(), id); err != nil {
		a.fail(w, r, adminOrNotFound(err, "user", id))
		return
	}
	if _, err := a.store.DeleteUserLoginSessions(r.Context(), id); err != nil {
		a.fail(w, r, err)
		return
	}
	auditUser(r.Context(), EventUserLoggedOut, id, "admin")
	w.WriteHeader(http.StatusNoContent)
}

// unlockUser lets a user whose username is locked or delayed by failed
// sign-ins (authz/throttle.go) sign in again at once. Unlocking a user who
// is not locked is not an error.
func (a *admin) unlockUser(w http.ResponseWriter, r *http.Request) {
	id := adminPathVar(r, "id")
	if err := adminNoQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	u, err := a.store.User(r.Context(), id)
	if err != nil {
		a.fail(w, r, adminOrNotFound(err, "user", id))
		return
	}
	if _, err := a.store.UnlockUser(r.Context(), u.Username); err != nil {
		a.fail(w, r, err)
		return
	}
	a.log.Info("user unlocked", "user_id", u.ID)
	auditUser(r.Context(), EventUserUnlocked, u.ID, "admin")
	w.WriteHeader(http.StatusNoContent)
}

// withdrawConsents forgets what the user allowed one client (?client_id=)
// or every client, and revokes the tokens those clients hold for the user.
func (a *admin) withdrawConsents(w http.ResponseWriter, r *http.Request) {
	id := adminPathVar(r, "id")
	q, err := adminQuery(r, "client_id")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	clientID := q.Get("client_id")
	if q.Has("client_id") && clientID == "" {
		a.fail(w, r, badRequest("client_id is empty; leave it out to withdraw every consent"))
		return
	}
	if _, err := a.store.User(r.Context(), id); err != nil {
		a.fail(w, r, adminOrNotFound(err, "user", id))
		return
	}
	if clientID != "" {
		if _, err := a.store.Client(r.Context(), clientID); err != nil {
			a.fail(w, r, adminOrNotFound(err, "client", clientID))
			return
		}
	}
	n, err := a.store.WithdrawConsents(r.Context(), id, clientID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	audit(r.Context(), AuditEvent{Event: EventConsentWithdrawn, Outcome: OutcomeSuccess, ClientID: clientID, Subject: id,
		Attrs: []slog.Attr{slog.String("source", "admin"), slog.Int64("withdrawn", n)}})
	w.WriteHeader(http.StatusNoContent)
}

// JSON Merge Patch (RFC 7386).

// readMergePatch reads a merge patch: a JSON object sent as
// application/merge-patch+json or application/json.
func readMergePatch(w http.ResponseWriter, r *http.Request, limit int64, fieldCode string) (map[string]any, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "application/merge-patch+json" && mt != "application/json") {
		return nil, &apiError{Status: http.StatusUnsupportedMediaType, Code: "invalid_request",
			Description: "the request body must be a JSON merge patch, sent with Content-Type: application/merge-patch+json or application/json"}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.UseNumber()
	var patch map[string]any
	if err := dec.Decode(&patch); err != nil {
		return nil, jsonDecodeError(err, fieldCode)
	}
	if patch == nil {
		return nil, badRequest("the request body must be a JSON object, not null")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, jsonDecodeError(err, fieldCode)
		}
		return nil, badRequest("the request body has data after the JSON object")
	}
	return patch, nil
}

// applyMergePatch applies patch to target (RFC 7386 section 2) and returns it.
func applyMergePatch(target, patch map[string]any) map[string]any {
	if target == nil {
		target = map[string]any{}
	}
	for k, v := range patch {
		switch v := v.(type) {
		case nil:
			delete(target, k)
		case map[string]any:
			sub, _ := target[k].(map[string]any)
			target[k] = applyMergePatch(sub, v)
		default:
			target[k] = v
		}
	}
	return target
}

// toJSONObject turns v into a generic JSON object.
func toJSONObject(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	return m, dec.Decode(&m)
}

// decodeJSONObject decodes a generic JSON object into v as decodeJSONBody
// would: unknown fields and wrong types are errors with fieldCode.
func decodeJSONObject(doc map[string]any, v any, fieldCode string) error {
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonDecodeError(err, fieldCode)
	}
	return nil
}
