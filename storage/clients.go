package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	josev3 "github.com/go-jose/go-jose/v3"
	"github.com/jackc/pgx/v5"
	"github.com/ory/fosite"
)

// Client is a registered relying party. It implements the fosite client
// interfaces, so fosite reads registration metadata straight from it.
type Client struct {
	ID                      string    `db:"id"`
	SecretHash              string    `db:"secret_hash"`
	Name                    string    `db:"name"`
	RedirectURIs            []string  `db:"redirect_uris"`
	GrantTypes              []string  `db:"grant_types"`
	ResponseTypes           []string  `db:"response_types"`
	Scopes                  []string  `db:"scopes"`
	Audience                []string  `db:"audience"`
	TokenEndpointAuthMethod string    `db:"token_endpoint_auth_method"`
	Public                  bool      `db:"public"`
	SkipConsent             bool      `db:"skip_consent"`
	JWKS                    []byte    `db:"jwks"`
	JWKSURI                 string    `db:"jwks_uri"`
	PostLogoutRedirectURIs  []string  `db:"post_logout_redirect_uris"`
	LogoURI                 string    `db:"logo_uri"`
	ClientURI               string    `db:"client_uri"`
	Contacts                []string  `db:"contacts"`
	CreatedAt               time.Time `db:"created_at"`
	UpdatedAt               time.Time `db:"updated_at"`

	// RotatedSecretHash is the previous secret's hash, still accepted until
	// RotatedSecretExpiresAt.
	RotatedSecretHash      string     `db:"rotated_secret_hash"`
	RotatedSecretExpiresAt *time.Time `db:"rotated_secret_expires_at"`
	// RegistrationTokenHash is the SHA-256 (HashToken) of the RFC 7592
	// registration access token; empty for clients an operator created.
	RegistrationTokenHash string `db:"registration_token_hash"`
	// TokenEndpointAuthSigningAlg is the JWS algorithm private_key_jwt
	// assertions must use; empty means RS256.
	TokenEndpointAuthSigningAlg string `db:"token_endpoint_auth_signing_alg"`
	// Lifespans in seconds of what is issued to this client; 0 means the
	// server's default.
	AccessTokenLifespan  int `db:"access_token_lifespan"`
	RefreshTokenLifespan int `db:"refresh_token_lifespan"`
	IDTokenLifespan      int `db:"id_token_lifespan"`
	// AccessTokenStrategy is "opaque" or "jwt" (RFC 9068).
	AccessTokenStrategy string `db:"access_token_strategy"`
	// IDTokenSignedResponseAlg is the JWS algorithm of the client's ID
	// tokens and JWT access tokens; empty means RS256.
	IDTokenSignedResponseAlg string `db:"id_token_signed_response_alg"`
	// RequirePushedAuthorizationRequests refuses the client's authorize
	// requests that do not come through POST /oauth2/par (RFC 9126 6).
	RequirePushedAuthorizationRequests bool `db:"require_pushed_authorization_requests"`
	// MetadataDocument marks a client identified by a URL, whose row is
	// kept from the document at that URL (UpsertMetadataDocumentClient),
	// not registered by the operator.
	MetadataDocument bool `db:"metadata_document"`

	// Registration metadata of OpenID Connect Dynamic Client Registration
	// 1.0 (migration 017). ApplicationType is "web" or "native" and decides
	// the redirect URI rules.
	ApplicationType   string   `db:"application_type"`
	TOSURI            string   `db:"tos_uri"`
	PolicyURI         string   `db:"policy_uri"`
	SoftwareID        string   `db:"software_id"`
	SoftwareVersion   string   `db:"software_version"`
	SoftwareStatement string   `db:"software_statement"`
	DefaultMaxAge     int      `db:"default_max_age"` // seconds; 0: none
	RequireAuthTime   bool     `db:"require_auth_time"`
	DefaultACRValues  []string `db:"default_acr_values"`
	// SubjectType is "public" or "pairwise" (OpenID Connect Core 8);
	// Sector is the host pairwise subjects are computed for.
	SubjectType                       string `db:"subject_type"`
	SectorIdentifierURI               string `db:"sector_identifier_uri"`
	Sector                            string `db:"sector"`
	UserinfoSignedResponseAlg         string `db:"userinfo_signed_response_alg"`
	FrontchannelLogoutURI             string `db:"frontchannel_logout_uri"`
	FrontchannelLogoutSessionRequired bool   `db:"frontchannel_logout_session_required"`
	BackchannelLogoutURI              string `db:"backchannel_logout_uri"`
	BackchannelLogoutSessionRequired  bool   `db:"backchannel_logout_session_required"`
	InitiateLoginURI                  string `db:"initiate_login_uri"`
}

var (
	_ fosite.Client              = (*Client)(nil)
	_ fosite.OpenIDConnectClient = (*Client)(nil)
	_ fosite.ResponseModeClient  = (*Client)(nil)

	_ fosite.ClientWithSecretRotation       = (*Client)(nil)
	_ fosite.ClientWithCustomTokenLifespans = (*Client)(nil)
)

// GetRotatedHashes returns the previous secret's hash while its grace
// period lasts, so apps can move to a new secret without downtime.
func (c *Client) GetRotatedHashes() [][]byte {
	if c.RotatedSecretHash == "" || c.RotatedSecretExpiresAt == nil || !time.Now().Before(*c.RotatedSecretExpiresAt) {
		return nil
	}
	return [][]byte{[]byte(c.RotatedSecretHash)}
}

// GetEffectiveLifespan applies the client's own lifespans, whatever the
// grant. Authorization codes always get the server's.
func (c *Client) GetEffectiveLifespan(gt fosite.GrantType, tt fosite.TokenType, fallback time.Duration) time.Duration {
	d := c.lifespan(tt, fallback)
	// A token handed over in a URL fragment (the implicit flow) lands in
	// the browser's history and any script on the page: it lives briefly,
	// whatever the client's settings.
	if gt == fosite.GrantTypeImplicit && tt == fosite.AccessToken && d > ImplicitAccessTokenLifespan {
		d = ImplicitAccessTokenLifespan
	}
	return d
}

// ImplicitAccessTokenLifespan is the longest an access token issued by the
// implicit flow lives.
const ImplicitAccessTokenLifespan = 10 * time.Minute

func (c *Client) lifespan(tt fosite.TokenType, fallback time.Duration) time.Duration {
	secs := 0
	switch tt {
	case fosite.AccessToken:
		secs = c.AccessTokenLifespan
	case fosite.RefreshToken:
		secs = c.RefreshTokenLifespan
	case fosite.IDToken:
		secs = c.IDTokenLifespan
	}
	if secs > 0 {
		return time.Duration(secs) * time.Second
	}
	return fallback
}

// GetResponseModes: codes come back in the query, whether the client says
// response_mode=query or nothing; the implicit flow's tokens in the
// fragment, for clients registered for it.
func (c *Client) GetResponseModes() []fosite.ResponseModeType {
	if slices.Contains(c.GrantTypes, "implicit") {
		return []fosite.ResponseModeType{fosite.ResponseModeDefault, fosite.ResponseModeQuery, fosite.ResponseModeFragment}
	}
	return []fosite.ResponseModeType{fosite.ResponseModeDefault, fosite.ResponseModeQuery}
}

func (c *Client) GetID() string             { return c.ID }
func (c *Client) GetHashedSecret() []byte   { return []byte(c.SecretHash) }
func (c *Client) GetRedirectURIs() []string { return c.RedirectURIs }
func (c *Client) GetGrantTypes() fosite.Arguments {
	return fosite.Arguments(c.GrantTypes)
}
func (c *Client) GetResponseTypes() fosite.Arguments {
	return fosite.Arguments(c.ResponseTypes)
}
func (c *Client) GetScopes() fosite.Arguments              { return fosite.Arguments(c.Scopes) }
func (c *Client) IsPublic() bool                           { return c.Public }
func (c *Client) GetAudience() fosite.Arguments            { return fosite.Arguments(c.Audience) }
func (c *Client) GetRequestURIs() []string                 { return nil }
func (c *Client) GetJSONWebKeysURI() string                { return c.JWKSURI }
func (c *Client) GetRequestObjectSigningAlgorithm() string { return "" }
func (c *Client) GetTokenEndpointAuthMethod() string       { return c.TokenEndpointAuthMethod }
func (c *Client) GetTokenEndpointAuthSigningAlgorithm() string {
	if c.TokenEndpointAuthSigningAlg == "" {
		return "RS256"
	}
	return c.TokenEndpointAuthSigningAlg
}

// GetJSONWebKeys returns the client's registered key set in the go-jose v3
// form fosite consumes, or nil when it has none.
func (c *Client) GetJSONWebKeys() *josev3.JSONWebKeySet {
	if len(c.JWKS) == 0 {
		return nil
	}
	set, err := SigningKeySet(c.JWKS)
	if err != nil {
		return nil
	}
	return set
}

// SigningKeySet parses a client's JWKS for fosite, which only considers
// keys marked "use": "sig". A key without "use" may sign too (RFC 7517
// 4.2), so it is marked; encryption keys are left out.
func SigningKeySet(raw []byte) (*josev3.JSONWebKeySet, error) {
	var set josev3.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, err
	}
	keys := set.Keys[:0]
	for _, k := range set.Keys {
		switch k.Use {
		case "":
			k.Use = "sig"
		case "sig":
		default:
			continue
		}
		keys = append(keys, k)
	}
	set.Keys = keys
	return &set, nil
}

// clientRow is the client part of a row read together with a request.
type clientRow = Client

func (c *clientRow) client() (*Client, error) {
	cl := *c
	cl.normalize()
	return &cl, nil
}

// normalize puts times read from the database in UTC: pgx scans them in
// the machine's zone.
func (c *Client) normalize() {
	c.CreatedAt = c.CreatedAt.UTC()
	c.UpdatedAt = c.UpdatedAt.UTC()
	if c.RotatedSecretExpiresAt != nil {
		t := c.RotatedSecretExpiresAt.UTC()
		c.RotatedSecretExpiresAt = &t
	}
}

var clientColumnNames = []string{
	"id", "secret_hash", "name", "redirect_uris", "grant_types", "response_types", "scopes",
	"audience", "token_endpoint_auth_method", "public", "skip_consent", "jwks", "jwks_uri",
	"post_logout_redirect_uris", "logo_uri", "client_uri", "contacts", "created_at", "updated_at",
	"rotated_secret_hash", "rotated_secret_expires_at", "registration_token_hash",
	"token_endpoint_auth_signing_alg", "access_token_lifespan", "refresh_token_lifespan", "id_token_lifespan",
	"access_token_strategy", "id_token_signed_response_alg", "require_pushed_authorization_requests",
	"metadata_document",
	"application_type", "tos_uri", "policy_uri", "software_id", "software_version", "software_statement",
	"default_max_age", "require_auth_time", "default_acr_values", "subject_type", "sector_identifier_uri",
	"sector", "userinfo_signed_response_alg", "frontchannel_logout_uri", "frontchannel_logout_session_required",
	"backchannel_logout_uri", "backchannel_logout_session_required", "initiate_login_uri",
}

// writableClientColumns are the columns CreateClient and UpdateClient set,
// in the order of clientArgs: all but id (the key), created_at,
// updated_at and metadata_document, which only the store sets.
var writableClientColumns = []string{
	"secret_hash", "name", "redirect_uris", "grant_types", "response_types", "scopes",
	"audience", "token_endpoint_auth_method", "public", "skip_consent", "jwks", "jwks_uri",
	"post_logout_redirect_uris", "logo_uri", "client_uri", "contacts",
	"rotated_secret_hash", "rotated_secret_expires_at", "registration_token_hash",
	"token_endpoint_auth_signing_alg", "access_token_lifespan", "refresh_token_lifespan", "id_token_lifespan",
	"access_token_strategy", "id_token_signed_response_alg", "require_pushed_authorization_requests",
	"application_type", "tos_uri", "policy_uri", "software_id", "software_version", "software_statement",
	"default_max_age", "require_auth_time", "default_acr_values", "subject_type", "sector_identifier_uri",
	"sector", "userinfo_signed_response_alg", "frontchannel_logout_uri", "frontchannel_logout_session_required",
	"backchannel_logout_uri", "backchannel_logout_session_required", "initiate_login_uri",
}

// clientColumns lists the client columns, qualified by alias when given.
func clientColumns(alias string) string {
	if alias == "" {
		return strings.Join(clientColumnNames, ", ")
	}
	return alias + "." + strings.Join(clientColumnNames, ", "+alias+".")
}

func clientArgs(c *Client) []any {
	return []any{
		c.ID, c.SecretHash, c.Name, nonNilStrings(c.RedirectURIs), nonNilStrings(c.GrantTypes),
		nonNilStrings(c.ResponseTypes), nonNilStrings(c.Scopes), nonNilStrings(c.Audience),
		c.TokenEndpointAuthMethod, c.Public, c.SkipConsent, jsonArg(c.JWKS), c.JWKSURI,
		nonNilStrings(c.PostLogoutRedirectURIs), c.LogoURI, c.ClientURI, nonNilStrings(c.Contacts),
		c.RotatedSecretHash, c.RotatedSecretExpiresAt, c.RegistrationTokenHash,
		c.TokenEndpointAuthSigningAlg, c.AccessTokenLifespan, c.RefreshTokenLifespan, c.IDTokenLifespan,
		accessTokenStrategy(c.AccessTokenStrategy), c.IDTokenSignedResponseAlg, c.RequirePushedAuthorizationRequests,
		orDefault(c.ApplicationType, "web"), c.TOSURI, c.PolicyURI, c.SoftwareID, c.SoftwareVersion, c.SoftwareStatement,
		c.DefaultMaxAge, c.RequireAuthTime, nonNilStrings(c.DefaultACRValues), orDefault(c.SubjectType, "public"),
		c.SectorIdentifierURI, c.Sector, c.UserinfoSignedResponseAlg, c.FrontchannelLogoutURI,
		c.FrontchannelLogoutSessionRequired, c.BackchannelLogoutURI, c.BackchannelLogoutSessionRequired,
		c.InitiateLoginURI,
	}
}

// orDefault is s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// clientWriteSQL builds the INSERT (create) or UPDATE statement over the
// writable columns, with $1 the id and clientArgs' values after it.
func clientWriteSQL(create bool) string {
	var b strings.Builder
	if create {
		b.WriteString("INSERT INTO clients (id")
		for _, c := range writableClientColumns {
			b.WriteString(", " + c)
		}
		b.WriteString(") VALUES ($1")
		for i, c := range writableClientColumns {
			b.WriteString(fmt.Sprintf(", $%d%s", i+2, jsonbCast(c)))
		}
		b.WriteString(")")
	} else {
		b.WriteString("UPDATE clients SET ")
		for i, c := range writableClientColumns {
			b.WriteString(fmt.Sprintf("%s = $%d%s, ", c, i+2, jsonbCast(c)))
		}
		b.WriteString("updated_at = now() WHERE id = $1")
	}
	b.WriteString(" RETURNING " + clientColumns(""))
	return b.String()
}

func jsonbCast(column string) string {
	if column == "jwks" {
		return "::jsonb"
	}
	return ""
}

var (
	createClientSQL = clientWriteSQL(true)
	updateClientSQL = clientWriteSQL(false)
)

// accessTokenStrategy is what is stored for s: "opaque" when unset.
func accessTokenStrategy(s string) string {
	if s == "" {
		return "opaque"
	}
	return s
}

// CreateClient stores a new client. The caller has validated its metadata
// and put a hash (never the secret) in SecretHash. An existing id is
// ErrAlreadyExists.
func (s *Store) CreateClient(ctx context.Context, c *Client) error {
	defer s.clientChanged(ctx, c.ID)()
	rows, err := s.db(ctx).Query(ctx, createClientSQL, clientArgs(c)...)
	if err != nil {
		return translate("create client", err)
	}
	stored, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Client])
	if err != nil {
		return translate("create client", err)
	}
	stored.normalize()
	*c = stored
	return nil
}

// UpdateClient replaces everything stored of a client: its metadata, secret
// hashes and registration token hash. Read it with ClientForUpdate in the
// same transaction to change only part of it.
func (s *Store) UpdateClient(ctx context.Context, c *Client) error {
	defer s.clientChanged(ctx, c.ID)()
	rows, err := s.db(ctx).Query(ctx, updateClientSQL, clientArgs(c)...)
	if err != nil {
		return translate("update client", err)
	}
	stored, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Client])
	if err != nil {
		return translate("update client", err)
	}
	stored.normalize()
	*c = stored
	return nil
}

// UpsertMetadataDocumentClient stores a client fetched from its client_id
// URL, marked metadata_document, or refreshes the row kept of it. A row
// the operator created under that id is never touched: that is
// ErrAlreadyExists. Secrets, lifespans, consent skipping and registration
// tokens are not the document's to set and stay empty.
func (s *Store) UpsertMetadataDocumentClient(ctx context.Context, c *Client) (*Client, error) {
	defer s.clientChanged(ctx, c.ID)()
	rows, err := s.db(ctx).Query(ctx, upsertDocumentClientSQL,
		c.ID, c.Name, nonNilStrings(c.RedirectURIs), nonNilStrings(c.GrantTypes), nonNilStrings(c.ResponseTypes),
		nonNilStrings(c.Scopes), c.TokenEndpointAuthMethod, c.Public, jsonArg(c.JWKS), c.JWKSURI,
		nonNilStrings(c.PostLogoutRedirectURIs), c.LogoURI, c.ClientURI, nonNilStrings(c.Contacts),
		c.TokenEndpointAuthSigningAlg, orDefault(c.ApplicationType, "web"), c.TOSURI, c.PolicyURI,
		c.SoftwareID, c.SoftwareVersion, c.DefaultMaxAge, c.RequireAuthTime, nonNilStrings(c.DefaultACRValues),
		c.UserinfoSignedResponseAlg, c.FrontchannelLogoutURI, c.FrontchannelLogoutSessionRequired,
		c.BackchannelLogoutURI, c.BackchannelLogoutSessionRequired, c.InitiateLoginURI)
	if err != nil {
		return nil, translate("store metadata document client", err)
	}
	stored, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Client])
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("store metadata document client: %w", ErrAlreadyExists)
	}
	if err != nil {
		return nil, translate("store metadata document client", err)
	}
	stored.normalize()
	return stored, nil
}

// documentColumns are what a client metadata document sets, in the order
// of UpsertMetadataDocumentClient's arguments after the id.
var documentColumns = []string{
	"name", "redirect_uris", "grant_types", "response_types", "scopes",
	"token_endpoint_auth_method", "public", "jwks", "jwks_uri", "post_logout_redirect_uris",
	"logo_uri", "client_uri", "contacts", "token_endpoint_auth_signing_alg",
	"application_type", "tos_uri", "policy_uri", "software_id", "software_version",
	"default_max_age", "require_auth_time", "default_acr_values", "userinfo_signed_response_alg",
	"frontchannel_logout_uri", "frontchannel_logout_session_required",
	"backchannel_logout_uri", "backchannel_logout_session_required", "initiate_login_uri",
}

// upsertDocumentClientSQL inserts or refreshes a document's client. What
// is not the document's to set (secrets, lifespans, consent skipping, an
// audience, registration tokens, a software statement, pairwise subjects)
// is reset to its default on every refresh.
var upsertDocumentClientSQL = func() string {
	var b strings.Builder
	b.WriteString("INSERT INTO clients (id, metadata_document")
	for _, c := range documentColumns {
		b.WriteString(", " + c)
	}
	b.WriteString(") VALUES ($1, true")
	for i, c := range documentColumns {
		fmt.Fprintf(&b, ", $%d%s", i+2, jsonbCast(c))
	}
	b.WriteString(") ON CONFLICT (id) DO UPDATE SET ")
	for _, c := range documentColumns {
		fmt.Fprintf(&b, "%s = EXCLUDED.%s, ", c, c)
	}
	b.WriteString(`secret_hash = '', rotated_secret_hash = '', rotated_secret_expires_at = NULL,
		registration_token_hash = '', audience = '{}', skip_consent = false,
		access_token_lifespan = 0, refresh_token_lifespan = 0, id_token_lifespan = 0,
		software_statement = '', subject_type = 'public', sector_identifier_uri = '', sector = '',
		updated_at = now()
		WHERE clients.metadata_document
		RETURNING ` + clientColumns(""))
	return b.String()
}()

// Client returns one client by id, or ErrNotFound.
func (s *Store) Client(ctx context.Context, id string) (*Client, error) {
	return s.oneClient(ctx, `SELECT `+clientColumns("")+` FROM clients WHERE id = $1`, id)
}

// ClientForUpdate is Client, locking the row until the transaction in ctx
// ends, so that a read-modify-write of a client does not lose a concurrent
// change (a secret rotation, say).
func (s *Store) ClientForUpdate(ctx context.Context, id string) (*Client, error) {
	return s.oneClient(ctx, `SELECT `+clientColumns("")+` FROM clients WHERE id = $1 FOR UPDATE`, id)
}

func (s *Store) oneClient(ctx context.Context, sql string, args ...any) (*Client, error) {
	rows, err := s.db(ctx).Query(ctx, sql, args...)
	if err != nil {
		return nil, translate("get client", err)
	}
	c, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[Client])
	if err != nil {
		return nil, translate("get client", err)
	}
	c.normalize()
	return c, nil
}

// RotateClientSecret makes hash the client's secret hash. The previous
// secret stays valid until keepOldUntil; nil ends it at once. Only one
// previous secret is kept: rotating twice drops the oldest.
func (s *Store) RotateClientSecret(ctx context.Context, id, hash string, keepOldUntil *time.Time) (*Client, error) {
	if keepOldUntil != nil {
		t := keepOldUntil.UTC()
		keepOldUntil = &t
	}
	defer s.clientChanged(ctx, id)()
	return s.oneClient(ctx, `
		UPDATE clients SET secret_hash = $2,
			rotated_secret_hash = CASE WHEN $3::timestamptz IS NULL THEN '' ELSE secret_hash END,
			rotated_secret_expires_at = $3, updated_at = now()
		WHERE id = $1
		RETURNING `+clientColumns(""), id, hash, keepOldUntil)
}

// ListClients returns up to limit clients ordered by id, starting after the
// id given (empty for the first page).
func (s *Store) ListClients(ctx context.Context, after string, limit int) ([]*Client, error) {
	rows, err := s.db(ctx).Query(ctx, `SELECT `+clientColumns("")+` FROM clients
		WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
	if err != nil {
		return nil, translate("list clients", err)
	}
	cs, err := pgx.CollectRows(rows, pgx.RowToAddrOfStructByName[Client])
	for _, c := range cs {
		c.normalize()
	}
	return cs, translate("list clients", err)
}

// DeleteClient removes a client and, by cascade, everything issued to it.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	defer s.clientChanged(ctx, id)()
	tag, err := s.db(ctx).Exec(ctx, `DELETE FROM clients WHERE id = $1`, id)
	if err != nil {
		return translate("delete client", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("delete client: %w", ErrNotFound)
	}
	return nil
}

type assertionClientKey struct{}

// WithAssertionClient names the client whose assertion's jti the store is
// asked about. jtis are kept per client, so one client cannot use up the
// jtis of another; without a client in ctx they share one namespace.
func WithAssertionClient(ctx context.Context, clientID string) context.Context {
	return context.WithValue(ctx, assertionClientKey{}, clientID)
}

// jtiKey is what client_assertion_jtis holds for a jti: the SHA-256 of the
// client id and the jti, so a row has a fixed size whatever the jti.
func jtiKey(ctx context.Context, jti string) string {
	client, _ := ctx.Value(assertionClientKey{}).(string)
	return hashKey(client + "\x00" + jti)
}

// ClientAssertionJWTValid reports fosite.ErrJTIKnown when a client assertion
// with this jti was seen and has not expired yet.
func (s *Store) ClientAssertionJWTValid(ctx context.Context, jti string) error {
	var known bool
	err := s.db(ctx).QueryRow(ctx,
		`SELECT EXISTS (SELECT 1 FROM client_assertion_jtis WHERE jti = $1 AND expires_at > $2)`,
		jtiKey(ctx, jti), s.now().UTC()).Scan(&known)
	if err != nil {
		return translate("check assertion jti", err)
	}
	if known {
		return fosite.ErrJTIKnown
	}
	return nil
}

// SetClientAssertionJWT records a jti until exp. A jti already recorded and
// still valid is fosite.ErrJTIKnown; an expired record is replaced.
func (s *Store) SetClientAssertionJWT(ctx context.Context, jti string, exp time.Time) error {
	tag, err := s.db(ctx).Exec(ctx, `
		INSERT INTO client_assertion_jtis (jti, expires_at) VALUES ($1, $2)
		ON CONFLICT (jti) DO UPDATE SET expires_at = EXCLUDED.expires_at
		WHERE client_assertion_jtis.expires_at <= $3`, jtiKey(ctx, jti), exp.UTC(), s.now().UTC())
	if err != nil {
		return translate("record assertion jti", err)
	}
	if tag.RowsAffected() == 0 {
		return fosite.ErrJTIKnown
	}
	return nil
}

func nonNilStrings(a []string) []string {
	if a == nil {
		return []string{}
	}
	return a
}

// jsonArg passes JSON as text, for a parameter cast to jsonb: as []byte,
// pgx's exec and simple_protocol modes (used behind a pooler) would send
// bytea. Empty is NULL.
func jsonArg(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}
