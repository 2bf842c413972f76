package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gorilla/mux"

	"github.com/authz/authz/storage"
)

// The scope catalogue: operators describe their own scopes once (a name, a
// description, whether the consent page lists it, whether discovery
// advertises it), through the CLI (authz scopes) or the admin API
// (/admin/scopes). The consent page shows the description, and
// discovery's scopes_supported lists the built-in scopes and the
// catalogue's. The catalogue only describes: it does not limit which
// scopes a client may register or request.

// Limits of a catalogue entry; migrations/011_scopes.sql checks the same.
const (
	MaxScopeNameLength        = 128
	MaxScopeDescriptionLength = 200
)

// ScopeStore is what managing the catalogue needs of storage.
type ScopeStore interface {
	SetScope(ctx context.Context, name string, up storage.ScopeUpdate) (*storage.Scope, bool, error)
	Scope(ctx context.Context, name string) (*storage.Scope, error)
	ListScopes(ctx context.Context, after string, limit int) ([]*storage.Scope, error)
	DeleteScope(ctx context.Context, name string) error
}

var _ ScopeStore = (*storage.Store)(nil)

// InvalidScopeError says what is wrong with a catalogue entry, in one line.
type InvalidScopeError struct{ Message string }

func (e *InvalidScopeError) Error() string { return e.Message }

func invalidScope(format string, args ...any) error {
	return &InvalidScopeError{Message: fmt.Sprintf(format, args...)}
}

// ValidateScopeName checks that name is a scope-token of RFC 6749 3.3:
// printable ASCII without space, double quote or backslash.
func ValidateScopeName(name string) error {
	if name == "" {
		return invalidScope("a scope name is required")
	}
	if len(name) > MaxScopeNameLength {
		return invalidScope("scope name is %d characters long; at most %d are allowed", len(name), MaxScopeNameLength)
	}
	if !validScopeToken(name) {
		return invalidScope("scope name %q may hold only printable ASCII characters other than space, double quote and backslash (RFC 6749 3.3)", name)
	}
	return nil
}

// validateScopeDescription checks what the consent page will show.
func validateScopeDescription(d string) error {
	switch {
	case strings.TrimSpace(d) == "":
		return invalidScope("a description is required: it is what the consent page shows for the scope")
	case !utf8.ValidString(d):
		return invalidScope("the description must be valid UTF-8")
	case utf8.RuneCountInString(d) > MaxScopeDescriptionLength:
		return invalidScope("the description is %d characters long; at most %d are allowed", utf8.RuneCountInString(d), MaxScopeDescriptionLength)
	case strings.ContainsFunc(d, unicode.IsControl):
		return invalidScope("the description must not contain control characters (line breaks included)")
	}
	return nil
}

// ScopeChange is what SetScope changes; nil fields keep their current
// value, or take their default (true) in a new scope.
type ScopeChange struct {
	Description   *string
	ShowOnConsent *bool
	Discoverable  *bool
}

// Validate returns an *InvalidScopeError naming the first problem with
// name or the description, if one is given.
func (ch ScopeChange) Validate(name string) error {
	if err := ValidateScopeName(name); err != nil {
		return err
	}
	if ch.Description != nil {
		return validateScopeDescription(strings.TrimSpace(*ch.Description))
	}
	return nil
}

// SetScope validates and writes a catalogue entry, and says whether it
// was created. A new scope needs a description: without one, a name not
// in the catalogue is storage.ErrNotFound.
func SetScope(ctx context.Context, store ScopeStore, name string, ch ScopeChange) (*storage.Scope, bool, error) {
	if err := ch.Validate(name); err != nil {
		return nil, false, err
	}
	if ch.Description != nil {
		d := strings.TrimSpace(*ch.Description)
		ch.Description = &d
	}
	return store.SetScope(ctx, name, storage.ScopeUpdate{
		Description: ch.Description, ShowOnConsent: ch.ShowOnConsent, Discoverable: ch.Discoverable,
	})
}

// Admin API: GET /admin/scopes, GET, PUT and DELETE /admin/scopes/{name}.

// maxScopeBodyLen bounds a PUT body: a description and two flags.
const maxScopeBodyLen = 4 << 10

// scopeRoutes adds the catalogue's routes to the admin API.
func (a *admin) scopeRoutes(r *mux.Router) {
	r.Handle("/admin/scopes", adminMethods{http.MethodGet: a.listScopes})
	r.Handle("/admin/scopes/{name}", adminMethods{
		http.MethodGet: a.getScope, http.MethodPut: a.putScope, http.MethodDelete: a.deleteScope,
	})
}

// scopeFail answers err, with an invalid entry as 400 invalid_request.
func (a *admin) scopeFail(w http.ResponseWriter, r *http.Request, err error) {
	var ie *InvalidScopeError
	if errors.As(err, &ie) {
		err = badRequest("%s", ie.Message)
	}
	a.fail(w, r, err)
}

func (a *admin) listScopes(w http.ResponseWriter, r *http.Request) {
	after, limit, err := adminPage(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	scs, err := a.store.ListScopes(r.Context(), after, limit+1)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newAdminList(scs, limit, func(s *storage.Scope) string { return s.Name },
		func(s *storage.Scope) *storage.Scope { return s }))
}

func (a *admin) getScope(w http.ResponseWriter, r *http.Request) {
	name := adminPathVar(r, "name")
	if err := adminNoQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	sc, err := a.store.Scope(r.Context(), name)
	if err != nil {
		a.fail(w, r, scopeOrNotFound(err, name))
		return
	}
	writeJSON(w, http.StatusOK, sc)
}

// scopeBody is a PUT's body. It replaces the entry: a flag left out takes
// its default, true. name, when given, must be the path's.
type scopeBody struct {
	Name          *string `json:"name"`
	Description   *string `json:"description"`
	ShowOnConsent *bool   `json:"show_on_consent"`
	Discoverable  *bool   `json:"discoverable"`
}

// putScope creates (201) or replaces (200) a catalogue entry.
func (a *admin) putScope(w http.ResponseWriter, r *http.Request) {
	name := adminPathVar(r, "name")
	if err := adminNoQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	var in scopeBody
	if err := decodeJSONBody(w, r, &in, maxScopeBodyLen, "invalid_request"); err != nil {
		a.fail(w, r, err)
		return
	}
	if in.Name != nil && *in.Name != name {
		a.fail(w, r, badRequest("name %q differs from the scope in the path, %q; rename by deleting and creating", *in.Name, name))
		return
	}
	if in.Description == nil {
		a.fail(w, r, badRequest("description is required: it is what the consent page shows for the scope"))
		return
	}
	yes := true
	ch := ScopeChange{Description: in.Description, ShowOnConsent: &yes, Discoverable: &yes}
	if in.ShowOnConsent != nil {
		ch.ShowOnConsent = in.ShowOnConsent
	}
	if in.Discoverable != nil {
		ch.Discoverable = in.Discoverable
	}
	sc, created, err := SetScope(r.Context(), a.store, name, ch)
	if err != nil {
		a.scopeFail(w, r, err)
		return
	}
	status, event := http.StatusOK, EventScopeUpdated
	if created {
		status, event = http.StatusCreated, EventScopeCreated
		w.Header().Set("Location", "/admin/scopes/"+url.PathEscape(name))
	}
	auditScope(r.Context(), event, name, "admin")
	writeJSON(w, status, sc)
}

func (a *admin) deleteScope(w http.ResponseWriter, r *http.Request) {
	name := adminPathVar(r, "name")
	if err := adminNoQuery(r); err != nil {
		a.fail(w, r, err)
		return
	}
	if err := a.store.DeleteScope(r.Context(), name); err != nil {
		a.fail(w, r, scopeOrNotFound(err, name))
		return
	}
	auditScope(r.Context(), EventScopeDeleted, name, "admin")
	w.WriteHeader(http.StatusNoContent)
}

func scopeOrNotFound(err error, name string) error {
	if errors.Is(err, storage.ErrNotFound) {
		return &apiError{Status: http.StatusNotFound, Code: "not_found", Description: fmt.Sprintf("no scope %q in the catalogue", name)}
	}
	return err
}

// auditScope notes a change to the catalogue, made through source.
func auditScope(ctx context.Context, event, name, source string) {
	audit(ctx, AuditEvent{Event: event, Outcome: OutcomeSuccess,
		Attrs: []slog.Attr{slog.String("source", source), slog.String("scope", name)}})
}

// The catalogue in memory, for the consent page and discovery.

// scopeCacheTTL is how stale a server's copy of the catalogue may be: a
// change made through the CLI or the admin API reaches every replica's
// consent page within it, and discovery within it plus discovery's own
// Cache-Control max-age for clients that cache the document.
const scopeCacheTTL = 30 * time.Second

// scopeRetryInterval is how long after a failed read the copy in memory
// is served without trying again; scopeReadTimeout bounds a read that
// memory could cover.
const (
	scopeRetryInterval = 5 * time.Second
	scopeReadTimeout   = 2 * time.Second
)

// scopeCatalogue reads the catalogue at most every scopeCacheTTL, and
// serves the copy it read last while the database cannot be read: a
// description a little out of date is better than no consent page.
type scopeCatalogue struct {
	store interface {
		ListScopes(ctx context.Context, after string, limit int) ([]*storage.Scope, error)
	}
	now func() time.Time
	log *slog.Logger

	// reading makes reads take turns; a caller with a copy in memory does
	// not wait for another's read.
	reading sync.Mutex

	mu       sync.Mutex
	set      *scopeSet // nil until a read succeeds
	failedAt time.Time // when the last read failed; zero after a good one
}

// scopeSet is the catalogue as read at loadedAt. It is not changed once made.
type scopeSet struct {
	loadedAt     time.Time
	byName       map[string]*storage.Scope
	discoverable []string // names, sorted
}

func newScopeCatalogue(store *storage.Store, now func() time.Time, log *slog.Logger) *scopeCatalogue {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &scopeCatalogue{store: store, now: now, log: log}
}

// get returns the catalogue, read again when the copy in memory is older
// than scopeCacheTTL. It fails only when no read ever succeeded.
func (c *scopeCatalogue) get(ctx context.Context) (*scopeSet, error) {
	if c == nil {
		return &scopeSet{}, nil // a Handler made without New: built-in scopes only
	}
	c.mu.Lock()
	set, due := c.set, c.dueLocked(c.now())
	c.mu.Unlock()
	if !due {
		return set, nil
	}
	if set == nil {
		c.reading.Lock()
	} else if !c.reading.TryLock() {
		return set, nil
	}
	defer c.reading.Unlock()
	now := c.now()
	c.mu.Lock()
	set, due = c.set, c.dueLocked(now)
	c.mu.Unlock()
	if !due {
		return set, nil // read by the caller this one waited for
	}
	return c.read(ctx, now, set)
}

func (c *scopeCatalogue) dueLocked(now time.Time) bool {
	switch {
	case c.set == nil:
		return true
	case !c.failedAt.IsZero() && now.Sub(c.failedAt) < scopeRetryInterval:
		return false
	}
	return now.Sub(c.set.loadedAt) >= scopeCacheTTL || now.Before(c.set.loadedAt)
}

// read reads the whole catalogue. When a copy is in memory, the read is
// not the request's: its failure is covered, so it is neither recorded
// against the request nor allowed to take long.
func (c *scopeCatalogue) read(ctx context.Context, now time.Time, prev *scopeSet) (*scopeSet, error) {
	rctx := ctx
	if prev != nil {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(storage.WithoutFaultRecording(ctx), scopeReadTimeout)
		defer cancel()
	}
	set := &scopeSet{loadedAt: now, byName: map[string]*storage.Scope{}}
	const page = 500
	for after := ""; ; {
		rows, err := c.store.ListScopes(rctx, after, page)
		if err != nil {
			return c.readFailed(ctx, now, prev, fmt.Errorf("read the scope catalogue: %w", err))
		}
		for _, sc := range rows {
			set.byName[sc.Name] = sc
			if sc.Discoverable {
				set.discoverable = append(set.discoverable, sc.Name)
			}
		}
		if len(rows) < page {
			break
		}
		after = rows[len(rows)-1].Name
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.failedAt.IsZero() {
		c.log.Info("read the scope catalogue again", "failed_at", c.failedAt.Format(time.RFC3339))
	}
	c.set, c.failedAt = set, time.Time{}
	return set, nil
}

// readFailed answers from memory when it can, and logs the first failure
// of a run of them.
func (c *scopeCatalogue) readFailed(ctx context.Context, now time.Time, prev *scopeSet, err error) (*scopeSet, error) {
	if prev == nil {
		return nil, err
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return prev, nil // the caller went away: no news of the database
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failedAt.IsZero() {
		c.log.Warn("cannot read the scope catalogue; serving the copy read before", "err", err,
			"read_at", prev.loadedAt.Format(time.RFC3339))
	}
	c.failedAt = now
	return prev, nil
}

// describe is describeScopesIn over this set; a nil set knows only the
// built-in scopes.
func (s *scopeSet) describe(scopes []string) []scopeView {
	if s == nil {
		return describeScopes(scopes)
	}
	return describeScopesIn(s.byName, scopes)
}

// supported is discovery's scopes_supported: the built-in scopes, then the
// catalogue's discoverable ones.
func (s *scopeSet) supported() []string {
	out := slices.Clone(supportedScopes)
	for _, name := range s.discoverable {
		if !slices.Contains(supportedScopes, name) {
			out = append(out, name)
		}
	}
	return out
}

// consentScopes describes the requested scopes for the consent page.
func (h *Handler) consentScopes(ctx context.Context, requested []string) ([]scopeView, error) {
	set, err := h.scopes.get(ctx)
	if err != nil {
		return nil, err
	}
	return set.describe(requested), nil
}

// scopesFailed answers a consent page that could not describe its scopes:
// the catalogue was never read. The person is not shown a page that may
// misdescribe what they allow.
func (h *Handler) scopesFailed(w http.ResponseWriter, r *http.Request, err error) {
	failed(r.Context(), err)
	if errors.Is(err, storage.ErrUnavailable) {
		h.unavailable(w, r)
		return
	}
	h.pages.renderError(w, http.StatusInternalServerError, errorPage{
		Title: "Something went wrong", Message: "The server hit an unexpected problem. Please try again.", Code: "server_error"})
}

// writeCatalogueError answers discovery when the catalogue was never read:
// 503 when the database could not be reached, else 500.
func writeCatalogueError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, storage.ErrUnavailable) {
		writeUnavailable(w, r)
		return
	}
	writeJSON(w, http.StatusInternalServerError, map[string]string{
		"error": "server_error", "error_description": "The server hit an unexpected problem."})
}
