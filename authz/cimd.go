package authz

// Clients identified by a URL (OAuth Client ID Metadata Documents,
// draft-ietf-oauth-client-id-metadata-document). With
// AUTHZ_CLIENT_ID_METADATA=true, a client_id that is an https URL names a
// JSON document at that URL holding the client's metadata: the app needs
// no registration with this server. The document is fetched with the
// jwks_uri rules (public addresses only, no redirects, a time and size
// limit), checked like a self-registration, and cached per its
// Cache-Control within bounds.
//
// Codes, tokens and consents reference clients (id), so a fetched client
// is kept as a clients row marked metadata_document, written again
// whenever its document changes (migrations/016). Everything after the
// lookup (the token endpoint, introspection, revocation) then works as
// for any client. A row the operator created under a URL id wins: it is
// used as it is and nothing is fetched.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/handler/pkce"
	fositestorage "github.com/ory/fosite/storage"

	"github.com/authz/authz/storage"
)

const (
	// maxMetadataDocumentBytes is the most read of a metadata document:
	// room for a few inline public keys, not for megabytes.
	maxMetadataDocumentBytes = 16 << 10
	// Bounds on how long a fetched document is used: its Cache-Control
	// max-age within them, the least when it gives none.
	minMetadataDocumentTTL = 5 * time.Minute
	maxMetadataDocumentTTL = 24 * time.Hour
	// metadataDocumentFailureTTL is how long a failed fetch is remembered,
	// so a broken document's server is not asked by every request.
	metadataDocumentFailureTTL = 30 * time.Second
	// maxMetadataDocuments bounds the cache: the documents of that many
	// URLs at most are kept.
	maxMetadataDocuments = 1000
	// maxMetadataDocumentFetches is how many fetches may run at once.
	maxMetadataDocumentFetches = 16
)

// metadataOnlyFields are members a document may not have: secrets (a
// document is public) and what only the operator may set.
var metadataOnlyFields = []string{
	"skip_consent", "audience", "access_token_lifespan", "refresh_token_lifespan", "id_token_lifespan",
	"registration_access_token", "registration_client_uri",
}

// documentGrantTypes are the grants a client identified by a URL may use.
var documentGrantTypes = []string{"authorization_code", "refresh_token"}

// clientStore is the storage fosite is composed with: the store, whose
// client lookup also knows clients identified by a URL. Embedding keeps
// every storage interface fosite's handlers assert.
type clientStore struct {
	*storage.Store
	docs *metadataDocuments // nil: AUTHZ_CLIENT_ID_METADATA is off
	log  *slog.Logger
}

// What fosite's handlers assert of their storage (unchecked, at start-up),
// pinned: embedding the store keeps them.
var (
	_ fosite.Storage                       = (*clientStore)(nil)
	_ oauth2.CoreStorage                   = (*clientStore)(nil)
	_ oauth2.TokenRevocationStorage        = (*clientStore)(nil)
	_ oauth2.ClientCredentialsGrantStorage = (*clientStore)(nil)
	_ pkce.PKCERequestStorage              = (*clientStore)(nil)
	_ openid.OpenIDConnectRequestStorage   = (*clientStore)(nil)
	_ fosite.PARStorage                    = (*clientStore)(nil)
	_ fositestorage.Transactional          = (*clientStore)(nil)
)

func newClientStore(cfg *Config, store *storage.Store, log *slog.Logger) *clientStore {
	s := &clientStore{Store: store, log: log}
	if cfg.ClientIDMetadata {
		s.docs = newMetadataDocuments(cfg, log)
	}
	return s
}

// GetClient is the store's client, unless id is the URL of a metadata
// document: then the client that document describes, kept in the store.
func (s *clientStore) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	got, err := s.Store.GetClient(ctx, id)
	var stored *storage.Client
	switch {
	case err == nil:
		stored, _ = got.(*storage.Client)
		if stored == nil || !stored.MetadataDocument {
			return got, nil // the operator's client wins
		}
	case !errors.Is(err, fosite.ErrNotFound):
		return nil, err
	}
	if s.docs == nil || !strings.HasPrefix(id, "https://") {
		return nil, fosite.ErrNotFound
	}
	doc, err := s.docs.get(ctx, id)
	if err != nil {
		return nil, err
	}
	if stored != nil && sameDocument(stored, doc) {
		return stored, nil
	}
	kept, err := s.UpsertMetadataDocumentClient(ctx, doc)
	if errors.Is(err, storage.ErrAlreadyExists) {
		// The operator created this id meanwhile: theirs wins.
		return s.Store.GetClient(ctx, id)
	}
	if err != nil {
		return nil, err
	}
	s.log.Info("client metadata document stored", "client_id", clip(id))
	return kept, nil
}

// sameDocument reports whether the stored row already says what doc says.
func sameDocument(stored, doc *storage.Client) bool {
	return stored.Name == doc.Name && slices.Equal(stored.RedirectURIs, doc.RedirectURIs) &&
		slices.Equal(stored.GrantTypes, doc.GrantTypes) && slices.Equal(stored.ResponseTypes, doc.ResponseTypes) &&
		slices.Equal(stored.Scopes, doc.Scopes) && stored.TokenEndpointAuthMethod == doc.TokenEndpointAuthMethod &&
		stored.Public == doc.Public && stored.JWKSURI == doc.JWKSURI && sameJSON(stored.JWKS, doc.JWKS) &&
		slices.Equal(stored.PostLogoutRedirectURIs, doc.PostLogoutRedirectURIs) &&
		stored.LogoURI == doc.LogoURI && stored.ClientURI == doc.ClientURI &&
		slices.Equal(stored.Contacts, doc.Contacts) && stored.TokenEndpointAuthSigningAlg == doc.TokenEndpointAuthSigningAlg &&
		stored.ApplicationType == doc.ApplicationType && stored.TOSURI == doc.TOSURI && stored.PolicyURI == doc.PolicyURI &&
		stored.SoftwareID == doc.SoftwareID && stored.SoftwareVersion == doc.SoftwareVersion &&
		stored.DefaultMaxAge == doc.DefaultMaxAge && stored.RequireAuthTime == doc.RequireAuthTime &&
		slices.Equal(stored.DefaultACRValues, doc.DefaultACRValues) && stored.UserinfoSignedResponseAlg == doc.UserinfoSignedResponseAlg &&
		stored.FrontchannelLogoutURI == doc.FrontchannelLogoutURI && stored.FrontchannelLogoutSessionRequired == doc.FrontchannelLogoutSessionRequired &&
		stored.BackchannelLogoutURI == doc.BackchannelLogoutURI && stored.BackchannelLogoutSessionRequired == doc.BackchannelLogoutSessionRequired &&
		stored.InitiateLoginURI == doc.InitiateLoginURI
}

// sameJSON compares JSON by value: PostgreSQL's jsonb does not keep the
// document's spacing or member order.
func sameJSON(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// metadataDocuments fetches and caches metadata documents, one fetch per
// URL at a time.
type metadataDocuments struct {
	client *http.Client
	now    func() time.Time
	scopes []string // what a document may ask for: AUTHZ_REGISTRATION_SCOPES
	slots  chan struct{}
	log    *slog.Logger

	mu      sync.Mutex
	entries map[string]*documentEntry
}

// documentEntry is what is known of one URL: a validated client until
// expires, or why the last fetch failed.
type documentEntry struct {
	client  *storage.Client
	err     error
	expires time.Time
	call    *documentCall // the fetch under way, if any
}

// documentCall is one fetch, awaited by every request that wants it.
type documentCall struct {
	done   chan struct{}
	client *storage.Client
	err    error
}

// newMetadataDocuments fetches with the jwks_uri rules (newFetchClient).
func newMetadataDocuments(cfg *Config, log *slog.Logger) *metadataDocuments {
	return &metadataDocuments{
		client: newFetchClient(cfg), now: cfg.now, scopes: cfg.RegistrationScopes, log: log,
		slots: make(chan struct{}, maxMetadataDocumentFetches), entries: map[string]*documentEntry{},
	}
}

// documentError is the answer to a client_id whose document cannot be
// used: an unknown client, with why.
func documentError(format string, args ...any) *fosite.RFC6749Error {
	return fosite.ErrInvalidClient.WithHintf("The client_id is a URL whose client metadata document cannot be used: "+format, args...)
}

// get returns the client the document at id describes, from the cache
// while it is fresh.
func (d *metadataDocuments) get(ctx context.Context, id string) (*storage.Client, error) {
	if err := checkClientIDURL(id); err != nil {
		return nil, err
	}
	d.mu.Lock()
	now := d.now()
	e := d.entries[id]
	if e != nil && e.call == nil && now.Before(e.expires) {
		c, err := e.client, e.err
		d.mu.Unlock()
		return c, err
	}
	if e == nil {
		d.makeRoom(now)
		e = &documentEntry{}
		d.entries[id] = e
	}
	c := e.call
	if c == nil {
		select {
		case d.slots <- struct{}{}:
		default:
			d.mu.Unlock()
			return nil, documentError("too many client metadata documents are being fetched; try again shortly.")
		}
		c = &documentCall{done: make(chan struct{})}
		e.call = c
		// The fetch outlives a request that gives up, so the others
		// waiting for it get its result; jwksFetchTimeout bounds it.
		go d.run(context.WithoutCancel(ctx), id, e, c)
	}
	d.mu.Unlock()
	select {
	case <-c.done:
		return c.client, c.err
	case <-ctx.Done():
		return nil, documentError("the request ended while the document was being fetched.")
	}
}

// run performs the fetch c and records its result in e.
func (d *metadataDocuments) run(ctx context.Context, id string, e *documentEntry, c *documentCall) {
	client, ttl, err := d.fetch(ctx, id)
	<-d.slots
	if err != nil {
		ttl = metadataDocumentFailureTTL
		// The client's fault, answered as an unknown client; logged so an
		// operator can tell its developer why.
		rfc := fosite.ErrorToRFC6749Error(err)
		attrs := []any{"client_id", clip(id), "reason", rfc.HintField}
		if rfc.Cause() != nil {
			attrs = append(attrs, "error", rfc.Cause())
		}
		d.log.Info("client metadata document refused", attrs...)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	c.client, c.err = client, err
	e.client, e.err, e.expires, e.call = client, err, d.now().Add(ttl), nil
	close(c.done)
}

// makeRoom keeps the cache under maxMetadataDocuments: expired entries
// go first, then any idle one. d.mu is held.
func (d *metadataDocuments) makeRoom(now time.Time) {
	if len(d.entries) < maxMetadataDocuments {
		return
	}
	for id, e := range d.entries {
		if e.call == nil && !now.Before(e.expires) {
			delete(d.entries, id)
		}
	}
	for id, e := range d.entries {
		if len(d.entries) < maxMetadataDocuments {
			return
		}
		if e.call == nil {
			delete(d.entries, id)
		}
	}
}

// fetch GETs the document and checks it; it returns the client and how
// long it may be used.
func (d *metadataDocuments) fetch(ctx context.Context, id string) (*storage.Client, time.Duration, error) {
	raw, header, err := fetchDocument(ctx, d.client, id, maxMetadataDocumentBytes)
	if err != nil {
		err = fmt.Errorf("fetch client metadata document: %w", err)
		return nil, 0, documentError("it could not be fetched.").WithWrap(err).WithDebug(err.Error())
	}
	c, err := documentClient(id, raw, d.scopes)
	if err != nil {
		return nil, 0, err
	}
	return c, documentTTL(header.Get("Cache-Control")), nil
}

// documentTTL is the max-age of a Cache-Control header, within
// [minMetadataDocumentTTL, maxMetadataDocumentTTL]; the least without one.
func documentTTL(cacheControl string) time.Duration {
	ttl := minMetadataDocumentTTL
	for _, dir := range strings.Split(cacheControl, ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(dir), "=")
		if !strings.EqualFold(name, "max-age") {
			continue
		}
		if secs, err := strconv.ParseInt(strings.Trim(value, `"`), 10, 64); err == nil && secs > 0 {
			ttl = time.Duration(min(secs, int64(maxMetadataDocumentTTL/time.Second))) * time.Second
		}
	}
	return min(max(ttl, minMetadataDocumentTTL), maxMetadataDocumentTTL)
}

// checkClientIDURL accepts a client_id URL the draft allows: https, a
// host, a path, no credentials, query or fragment, no dot segments.
func checkClientIDURL(id string) error {
	u, err := url.Parse(id)
	switch {
	case err != nil || u.Scheme != "https" || u.Host == "" || u.Opaque != "":
		return documentError("it must be an https URL.")
	case u.User != nil:
		return documentError("it must not hold credentials.")
	case u.RawQuery != "" || u.ForceQuery || strings.Contains(id, "?"):
		return documentError("it must not have a query.")
	case u.Fragment != "" || strings.Contains(id, "#"):
		return documentError("it must not have a fragment.")
	case u.Path == "" || u.Path == "/":
		return documentError("it must have a path.")
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return documentError("its path must not have . or .. segments.")
		}
	}
	return nil
}

// documentClient checks a fetched document as a self-registration would
// be checked, and returns the client it describes.
func documentClient(id string, raw []byte, allowedScopes []string) (*storage.Client, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil || members == nil {
		return nil, documentError("it is not a JSON object.")
	}
	for name := range members {
		if strings.HasPrefix(name, "client_secret") {
			return nil, documentError("it has %s; a document is public and holds no secret.", name)
		}
		if slices.Contains(metadataOnlyFields, name) {
			return nil, documentError("it has %s, which only this server's operator may set.", name)
		}
	}
	if _, ok := members["software_statement"]; ok {
		return nil, documentError("it has a software_statement; the document itself, served from its client_id URL, is what vouches for the client.")
	}
	if err := refuseUnsupportedMetadata(members); err != nil {
		return nil, documentError("%s.", err.Error())
	}
	var m ClientMetadata
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, documentError("it is not valid client metadata: %v.", err)
	}
	if m.SubjectType != "" && m.SubjectType != "public" {
		return nil, documentError("subject_type %q is not available to a client identified by a URL; leave it out.", m.SubjectType)
	}
	m.SectorIdentifierURI = ""
	if m.ClientID != id {
		return nil, documentError("its client_id is not the URL it was fetched from.")
	}
	if m.TokenEndpointAuthMethod != "none" && m.TokenEndpointAuthMethod != "private_key_jwt" {
		return nil, documentError("its token_endpoint_auth_method must be none or private_key_jwt.")
	}
	if m.AccessTokenStrategy != "" && m.AccessTokenStrategy != "opaque" {
		return nil, documentError("access_token_strategy %q can be set only by this server's operator.", m.AccessTokenStrategy)
	}
	m.RequirePushedAuthorizationRequests, m.IDTokenSignedResponseAlg = false, ""
	noScope := strings.TrimSpace(m.Scope) == ""
	m.Normalize()
	if noScope {
		m.Scope = strings.Join(allowedScopes, " ")
	}
	for _, g := range m.GrantTypes {
		if !slices.Contains(documentGrantTypes, g) {
			return nil, documentError("grant type %q cannot be used by a client identified by a URL (allowed: %s).", g, strings.Join(documentGrantTypes, ", "))
		}
	}
	if err := m.Validate(); err != nil {
		return nil, documentError("%s.", err.Error())
	}
	if claimed := m.claimedHTTPSRedirects(); len(claimed) > 0 {
		return nil, documentError("redirect URI %q: a native app's https redirect URI to another host must be a claimed https URI (RFC 8252 7.2), which only this server's operator can vouch for.", claimed[0])
	}
	for _, s := range strings.Fields(m.Scope) {
		if !slices.Contains(allowedScopes, s) {
			return nil, documentError("scope %q may not be used (allowed: %s).", s, strings.Join(allowedScopes, " "))
		}
	}
	c := m.storageClient()
	c.MetadataDocument = true
	return c, nil
}

// identifiedBy is what the consent page says of a client no operator
// registered: its client_id URL; "" for every other client.
func identifiedBy(c *storage.Client) string {
	if !c.MetadataDocument {
		return ""
	}
	return c.ID
}

// prefetchDocument looks up the client a token, revocation, device or PAR
// request names by a URL before the endpoint opens its transaction, so a
// slow document server holds no database connection: fosite's lookup
// inside the transaction is then answered from the cache. Its failures
// are left for that lookup to report.
func (h *Handler) prefetchDocument(ctx context.Context, form url.Values) {
	cs, ok := h.provider.Store.(*clientStore)
	if !ok || cs.docs == nil {
		return
	}
	id := form.Get("client_id")
	if id == "" && form.Get("client_assertion_type") == clientAssertionType {
		id = assertionSubject(form.Get("client_assertion"))
	}
	if strings.HasPrefix(id, "https://") {
		_, _ = cs.GetClient(ctx, id)
	}
}
