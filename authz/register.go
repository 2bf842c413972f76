package authz

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gorilla/mux"

	"github.com/authz/authz/storage"
)

// Dynamic client registration (RFC 7591) and its management protocol
// (RFC 7592).
//
// Metadata names fall in three kinds. Those we understand (every field of
// ClientMetadata) are validated and stored. Registered names asking for
// what we do not do (request_uris, id_token_encrypted_response_alg, ...;
// see unsupportedMetadata) are refused with invalid_client_metadata naming
// the field: a client relying on them is better told at registration than
// surprised in production. Names we do not know at all, and
// language-tagged variants such as client_name#ja-Jpan-JP, are ignored as
// RFC 7591 2 requires, so that clients sending newer metadata still
// register; the response lists only what was stored (RFC 7591 3.2.1), so
// the client can see what was dropped. The admin API stays strict: an
// operator's unknown name is a typo.
//
// A software_statement (RFC 7591 2.3) is verified against the keys the
// operator trusts and its claims take precedence over the plain JSON
// ones; the merged metadata then meets the same policy as any other
// request.
//
// A self-registered client cannot give itself what only an operator may:
// its own client_id or client_secret, skip_consent, an audience, custom
// token lifespans, scopes beyond AUTHZ_REGISTRATION_SCOPES, JWT access
// tokens unless AUTHZ_REGISTRATION_JWT_ACCESS_TOKENS allows them, the
// implicit flow unless AUTHZ_REGISTRATION_IMPLICIT does and, under the open
// policy, the client_credentials grant.

// registrationRequest is the body of POST /oauth2/register and PUT
// /oauth2/register/{client_id}: the metadata, and the fields only an
// operator may set once more, raw, so that their presence is seen whatever
// the value.
type registrationRequest struct {
	metadata ClientMetadata
	operator struct {
		SkipConsent          json.RawMessage `json:"skip_consent"`
		Audience             json.RawMessage `json:"audience"`
		AccessTokenLifespan  json.RawMessage `json:"access_token_lifespan"`
		RefreshTokenLifespan json.RawMessage `json:"refresh_token_lifespan"`
		IDTokenLifespan      json.RawMessage `json:"id_token_lifespan"`
	}
}

// decodeRegistration reads a registration request: its software statement
// merged in, unsupported registered names refused, unknown ones ignored,
// and values of the wrong type invalid_client_metadata.
func (h *Handler) decodeRegistration(w http.ResponseWriter, r *http.Request) (*registrationRequest, error) {
	members, err := decodeMetadataMembers(w, r)
	if err != nil {
		return nil, err
	}
	if err := applySoftwareStatement(members, h.cfg.SoftwareStatementKeys, h.cfg.now()); err != nil {
		return nil, err
	}
	if err := refuseUnsupportedMetadata(members); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(members)
	if err != nil {
		return nil, err
	}
	var q registrationRequest
	if err := json.Unmarshal(raw, &q.metadata); err != nil {
		return nil, jsonDecodeError(err, "invalid_client_metadata")
	}
	if err := json.Unmarshal(raw, &q.operator); err != nil {
		return nil, jsonDecodeError(err, "invalid_client_metadata")
	}
	return &q, nil
}

// invalidToken is the 401 for a missing or wrong initial or registration
// access token; writeAPIError adds the WWW-Authenticate challenge.
func invalidToken(description string) error {
	return &apiError{Status: http.StatusUnauthorized, Code: "invalid_token", Description: description}
}

// bearerToken returns the token of an "Authorization: Bearer" header, or "".
// (fosite.AccessTokenFromRequest would also parse a form body; ours is JSON.)
func bearerToken(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// initialTokenValid reports whether token is one of the configured initial
// access tokens. Digests are compared, in constant time, with every token.
func (h *Handler) initialTokenValid(token string) bool {
	if token == "" {
		return false
	}
	got := sha256.Sum256([]byte(token))
	match := 0
	for _, t := range h.cfg.RegistrationTokens {
		want := sha256.Sum256([]byte(t))
		match |= subtle.ConstantTimeCompare(got[:], want[:])
	}
	return match == 1
}

// register serves POST /oauth2/register (RFC 7591 3): 201 with the new
// client's metadata, its secret when it has one (shown this once) and the
// registration access token that manages it (stored only as a hash).
func (h *Handler) register(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Registration == RegistrationToken && !h.initialTokenValid(bearerToken(r)) {
		h.log.Debug("registration refused: no valid initial access token")
		writeAPIError(w, r, h.log, invalidToken("A valid initial access token is required (Authorization: Bearer)."))
		return
	}
	q, err := h.decodeRegistration(w, r)
	if err != nil {
		writeAPIError(w, r, h.log, err)
		return
	}
	if q.metadata.ClientID != "" {
		writeAPIError(w, r, h.log, invalidMetadata("client_id is assigned by the server; leave it out"))
		return
	}
	if q.metadata.ClientSecret != "" {
		writeAPIError(w, r, h.log, invalidMetadata("client_secret is generated by the server; leave it out"))
		return
	}
	m, err := h.checkRegistration(q, nil)
	if err != nil {
		writeAPIError(w, r, h.log, err)
		return
	}
	token, err := storage.GenerateSecret()
	if err != nil {
		writeAPIError(w, r, h.log, err)
		return
	}
	out, err := createClient(r.Context(), h.store, m, storage.HashToken(token))
	if err != nil {
		writeAPIError(w, r, h.log, err)
		return
	}
	h.log.Info("client registered", "client_id", out.ClientID, "auth_method", out.TokenEndpointAuthMethod)
	auditClient(r.Context(), EventClientCreated, out.ClientID, "registration")
	writeJSON(w, http.StatusCreated, h.registrationResponse(out, token))
}

// registration serves GET, PUT and DELETE /oauth2/register/{client_id}
// (RFC 7592), authenticated by the client's registration access token.
func (h *Handler) registration(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["client_id"]
	token := bearerToken(r)
	c, err := h.registeredClient(r.Context(), h.store.Client, id, token)
	if err != nil {
		writeAPIError(w, r, h.log, err)
		return
	}
	switch r.Method {
	case http.MethodGet:
		writeJSON(w, http.StatusOK, h.registrationResponse(ClientMetadataOf(c), token))
	case http.MethodPut:
		h.updateRegistration(w, r, c, token)
	case http.MethodDelete:
		if err := h.store.DeleteClient(r.Context(), c.ID); err != nil {
			if errors.Is(err, storage.ErrNotFound) { // deleted meanwhile
				err = invalidToken("The registration access token is not valid for this client.")
			}
			writeAPIError(w, r, h.log, err)
			return
		}
		h.log.Info("client deregistered", "client_id", c.ID)
		auditClient(r.Context(), EventClientDeleted, c.ID, "registration")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, PUT, DELETE")
		writeAPIError(w, r, h.log, &apiError{Status: http.StatusMethodNotAllowed, Code: "invalid_request", Description: "use GET, PUT or DELETE"})
	}
}

// registeredClient returns client id, read with lookup, if token is its
// registration access token. An unknown client, one an operator created
// (it has no token) and a wrong token get the same 401, so the endpoint
// does not tell which clients exist.
func (h *Handler) registeredClient(ctx context.Context, lookup func(context.Context, string) (*storage.Client, error), id, token string) (*storage.Client, error) {
	refused := invalidToken("The registration access token is not valid for this client.")
	if token == "" {
		return nil, refused
	}
	c, err := lookup(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, refused
	}
	if err != nil {
		return nil, err
	}
	if c.RegistrationTokenHash == "" ||
		subtle.ConstantTimeCompare([]byte(storage.HashToken(token)), []byte(c.RegistrationTokenHash)) != 1 {
		return nil, refused
	}
	return c, nil
}

// updateRegistration replaces client c's metadata (RFC 7592 2.2). The body
// must name the client; a client_secret in it must be the client's own. The
// row is locked and the token checked again, so that a concurrent DELETE or
// operator change is not lost. The registration access token is kept.
func (h *Handler) updateRegistration(w http.ResponseWriter, r *http.Request, c *storage.Client, token string) {
	ctx := r.Context()
	q, err := h.decodeRegistration(w, r)
	if err != nil {
		writeAPIError(w, r, h.log, err)
		return
	}
	if q.metadata.ClientID != c.ID {
		writeAPIError(w, r, h.log, invalidMetadata("client_id must be included and be %q, the client this URL manages", c.ID))
		return
	}
	if q.metadata.ClientSecret != "" {
		ok, err := secretMatches(ctx, c, q.metadata.ClientSecret)
		if err != nil {
			writeAPIError(w, r, h.log, err)
			return
		}
		if !ok {
			writeAPIError(w, r, h.log, invalidMetadata("client_secret does not match the client's secret; it cannot be changed here"))
			return
		}
		q.metadata.ClientSecret = "" // checked; UpdateClient keeps the stored one
	}
	// A sector_identifier_uri is fetched now, from the client as read
	// above, not while the transaction below holds its row.
	if m, err := h.checkRegistration(q, c); err == nil {
		if ctx, err = presolveSector(ctx, c.ID, m); err != nil {
			writeAPIError(w, r, h.log, err)
			return
		}
	}
	var out ClientMetadata
	err = h.store.InTx(ctx, func(ctx context.Context) error {
		cur, err := h.registeredClient(ctx, h.store.ClientForUpdate, c.ID, token)
		if err != nil {
			return err
		}
		m, err := h.checkRegistration(q, cur)
		if err != nil {
			return err
		}
		out, err = UpdateClient(ctx, h.store, cur.ID, m)
		return err
	})
	if err != nil {
		writeAPIError(w, r, h.log, err)
		return
	}
	h.log.Info("client registration updated", "client_id", out.ClientID)
	auditClient(ctx, EventClientUpdated, out.ClientID, "registration")
	writeJSON(w, http.StatusOK, h.registrationResponse(out, token))
}

// secretMatches reports whether secret is client c's current secret or a
// rotated one still in its grace period.
func secretMatches(ctx context.Context, c *storage.Client, secret string) (bool, error) {
	hashes := append([][]byte{c.GetHashedSecret()}, c.GetRotatedHashes()...)
	for _, hash := range hashes {
		if len(hash) == 0 {
			continue
		}
		err := storage.CompareSecretContext(ctx, string(hash), secret)
		if err == nil {
			return true, nil
		}
		if errors.Is(err, storage.ErrBusy) || ctx.Err() != nil {
			return false, err
		}
	}
	return false, nil
}

// checkRegistration turns a request into the metadata to store, applying
// the registration policy. cur is the client being updated, nil for a new
// one: what an operator gave it (skip_consent, audience, lifespans, extra
// scopes or grants) it keeps and may echo, but cannot change or add to.
// client_id and client_secret are the callers' to check.
func (h *Handler) checkRegistration(q *registrationRequest, cur *storage.Client) (ClientMetadata, error) {
	var have ClientMetadata // what a new client has: the defaults
	if cur != nil {
		have = ClientMetadataOf(cur)
	}
	if err := q.checkOperatorFields(have); err != nil {
		return ClientMetadata{}, err
	}
	m := q.metadata
	m.SkipConsent, m.Audience = have.SkipConsent, have.Audience
	m.AccessTokenLifespan, m.RefreshTokenLifespan, m.IDTokenLifespan = have.AccessTokenLifespan, have.RefreshTokenLifespan, have.IDTokenLifespan
	m.clearReadOnly()

	// With no scope asked for, a sign-in client gets what the policy
	// allows, not Normalize's default, which the policy may not include.
	noScope := strings.TrimSpace(m.Scope) == ""
	m.Normalize()
	if noScope && m.Scope != "" {
		m.Scope = strings.Join(h.cfg.RegistrationScopes, " ")
	}
	if err := m.Validate(); err != nil {
		return ClientMetadata{}, err
	}
	if cur != nil && m.SubjectType != have.SubjectType {
		// Either way every user's sub would change; and a switch to
		// public would hand the client its users' ids, which they never
		// consented to give it.
		return ClientMetadata{}, invalidMetadata("subject_type cannot be changed here (it is %s): that would change the sub of every user the client knows; ask the operator", have.SubjectType)
	}
	for _, u := range m.claimedHTTPSRedirects() {
		if !slices.Contains(have.RedirectURIs, u) && !slices.Contains(have.PostLogoutRedirectURIs, u) {
			return ClientMetadata{}, invalidRedirect("redirect URI %q: a native app's https redirect URI to another host must be a claimed https URI (RFC 8252 7.2), which only the operator can vouch for; ask the operator to register it, or use a loopback (http://127.0.0.1/...) or private-use scheme redirect URI", u)
		}
	}

	if slices.Contains(m.GrantTypes, "implicit") && !slices.Contains(have.GrantTypes, "implicit") && !h.cfg.RegistrationImplicit {
		return ClientMetadata{}, invalidMetadata("grant type implicit cannot be registered here (the operator allows it with AUTHZ_REGISTRATION_IMPLICIT=true): RFC 9700 deprecates it; use the authorization code flow with PKCE")
	}
	if slices.Contains(m.GrantTypes, deviceCodeGrant) && !slices.Contains(have.GrantTypes, deviceCodeGrant) && !h.cfg.RegistrationDevice {
		return ClientMetadata{}, invalidMetadata("grant type %s cannot be registered here (the operator allows it with AUTHZ_REGISTRATION_DEVICE=true): its confirmation page shows the client's own name to people who follow its links", deviceCodeGrant)
	}
	if m.AccessTokenStrategy == "jwt" && have.AccessTokenStrategy != "jwt" && !h.cfg.RegistrationJWTAccessTokens {
		return ClientMetadata{}, invalidMetadata("access_token_strategy jwt cannot be registered here (the operator allows it with AUTHZ_REGISTRATION_JWT_ACCESS_TOKENS=true): such tokens are accepted offline until they expire, revoked or not")
	}
	if h.cfg.Registration == RegistrationOpen && slices.Contains(m.GrantTypes, "client_credentials") &&
		!slices.Contains(have.GrantTypes, "client_credentials") {
		return ClientMetadata{}, invalidMetadata("grant type client_credentials cannot be registered without an initial access token: under open registration anyone could mint machine tokens")
	}
	held := strings.Fields(have.Scope)
	for _, s := range strings.Fields(m.Scope) {
		if !slices.Contains(h.cfg.RegistrationScopes, s) && !slices.Contains(held, s) {
			return ClientMetadata{}, invalidMetadata("scope %q may not be registered (allowed: %s)", s, strings.Join(h.cfg.RegistrationScopes, " "))
		}
	}
	return m, nil
}

// checkOperatorFields refuses a field only an operator may set unless its
// value is what the client already has (the default for a new client):
// RFC 7592 2.2 asks a client to send back everything it read, so echoing
// is fine, changing is not.
func (q *registrationRequest) checkOperatorFields(have ClientMetadata) error {
	fields := []struct {
		name string
		raw  json.RawMessage
		same bool
	}{
		{"skip_consent", q.operator.SkipConsent, rawEquals(q.operator.SkipConsent, have.SkipConsent)},
		{"audience", q.operator.Audience, rawEqualsSlice(q.operator.Audience, have.Audience)},
		{"access_token_lifespan", q.operator.AccessTokenLifespan, rawEquals(q.operator.AccessTokenLifespan, have.AccessTokenLifespan)},
		{"refresh_token_lifespan", q.operator.RefreshTokenLifespan, rawEquals(q.operator.RefreshTokenLifespan, have.RefreshTokenLifespan)},
		{"id_token_lifespan", q.operator.IDTokenLifespan, rawEquals(q.operator.IDTokenLifespan, have.IDTokenLifespan)},
	}
	for _, f := range fields {
		if f.raw != nil && !f.same {
			return invalidMetadata("%s can be set only by the server's operator", f.name)
		}
	}
	return nil
}

// rawEquals reports whether raw is JSON for want (null counts as the zero
// value).
func rawEquals[T comparable](raw json.RawMessage, want T) bool {
	var v T
	return json.Unmarshal(raw, &v) == nil && v == want
}

func rawEqualsSlice(raw json.RawMessage, want []string) bool {
	var v []string
	return json.Unmarshal(raw, &v) == nil && slices.Equal(v, want)
}

// registrationResponse adds to m where and with which token the client
// manages its registration.
func (h *Handler) registrationResponse(m ClientMetadata, token string) ClientMetadata {
	m.RegistrationAccessToken = token
	m.RegistrationClientURI = h.cfg.Issuer + "/oauth2/register/" + url.PathEscape(m.ClientID)
	return m
}
