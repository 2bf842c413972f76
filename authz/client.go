package authz

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	josev4 "github.com/go-jose/go-jose/v4"
	"github.com/ory/fosite"

	"github.com/authz/authz/storage"
)

// Grant types, response types and client authentication methods this server
// supports. Discovery and validation both read these lists.
var (
	supportedGrantTypes = []string{"authorization_code", "refresh_token", "client_credentials", "implicit", deviceCodeGrant}
	// tokenGrantTypes are those the token endpoint takes (implicit has
	// no token request).
	tokenGrantTypes        = []string{"authorization_code", "refresh_token", "client_credentials", deviceCodeGrant}
	supportedResponseTypes = []string{"code", "token", "id_token", "id_token token"}
	// implicitResponseTypes are those of the implicit flow (OpenID
	// Connect Core 3.2), for clients registered for grant type implicit.
	implicitResponseTypes = []string{"token", "id_token", "id_token token"}
	supportedAuthMethods  = []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "none"}
	// accessTokenStrategies are what a client's access tokens may be:
	// opaque (looked up at introspection) or RFC 9068 JWTs.
	accessTokenStrategies = []string{"opaque", "jwt"}
	// supportedIDTokenAlgs are the JWS algorithms ID tokens and JWT access
	// tokens can be signed with, each by a key of its own; the first is
	// the default.
	supportedIDTokenAlgs = []string{"RS256", "PS256", "ES256", "EdDSA"}
	// supportedAssertionAlgs are the JWS algorithms accepted for
	// private_key_jwt client assertions (fosite verifies these).
	supportedAssertionAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
	// applicationTypes (OpenID Connect Registration 2); the first is the
	// default. It decides which redirect URIs a client may register.
	applicationTypes = []string{"web", "native"}
	// supportedSubjectTypes (OpenID Connect Core 8); the first is the
	// default.
	supportedSubjectTypes = []string{"public", "pairwise"}
	// supportedUserinfoAlgs sign userinfo answers as JWTs for clients
	// that ask (userinfo_signed_response_alg), with the ID token keys.
	supportedUserinfoAlgs = supportedIDTokenAlgs
)

// Limits on client metadata, so that a registration cannot store megabytes.
const (
	maxRedirectURIs      = 20
	maxURILength         = 2000
	maxNameLength        = 200
	maxContacts          = 10
	maxAudiences         = 20
	maxJWKSBytes         = 16 << 10
	maxJWKSKeys          = 10
	maxAccessLifespan    = 24 * 60 * 60
	maxIDTokenLifespan   = 24 * 60 * 60
	maxRefreshLifespan   = 365 * 24 * 60 * 60
	maxScopeTokens       = 50
	maxClientMetadataLen = 64 << 10 // request bodies carrying client metadata
)

// ClientMetadata is a client as the outside world sees it, with RFC 7591
// field names. It is what the CLI prints and what the admin API and dynamic
// registration accept. Lifespans are in seconds; 0 means the server's.
type ClientMetadata struct {
	ClientID                string   `json:"client_id"`
	ClientSecret            string   `json:"client_secret,omitempty"`
	ClientIDIssuedAt        int64    `json:"client_id_issued_at,omitempty"`
	ClientSecretExpiresAt   *int64   `json:"client_secret_expires_at,omitempty"`
	ClientName              string   `json:"client_name,omitempty"`
	RedirectURIs            []string `json:"redirect_uris"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	Scope                   string   `json:"scope"`
	Audience                []string `json:"audience,omitempty"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	SkipConsent             bool     `json:"skip_consent,omitempty"`
	PostLogoutRedirectURIs  []string `json:"post_logout_redirect_uris,omitempty"`
	LogoURI                 string   `json:"logo_uri,omitempty"`
	ClientURI               string   `json:"client_uri,omitempty"`
	Contacts                []string `json:"contacts,omitempty"`

	JWKS                        json.RawMessage `json:"jwks,omitempty"`
	JWKSURI                     string          `json:"jwks_uri,omitempty"`
	TokenEndpointAuthSigningAlg string          `json:"token_endpoint_auth_signing_alg,omitempty"`

	// AccessTokenStrategy is "opaque" (the default) or "jwt" (RFC 9068).
	AccessTokenStrategy string `json:"access_token_strategy"`
	// IDTokenSignedResponseAlg signs the client's ID tokens and JWT access
	// tokens (OpenID Connect Registration 2): RS256 (the default), PS256,
	// ES256 or EdDSA.
	IDTokenSignedResponseAlg string `json:"id_token_signed_response_alg,omitempty"`
	// RequirePushedAuthorizationRequests: the client's authorize requests
	// must come through POST /oauth2/par (RFC 9126 6). A client may ask
	// this of itself at registration.
	RequirePushedAuthorizationRequests bool `json:"require_pushed_authorization_requests,omitempty"`

	AccessTokenLifespan  int64 `json:"access_token_lifespan,omitempty"`
	RefreshTokenLifespan int64 `json:"refresh_token_lifespan,omitempty"`
	IDTokenLifespan      int64 `json:"id_token_lifespan,omitempty"`

	// OpenID Connect Dynamic Client Registration 1.0 (2) and RFC 7591 (2,
	// 2.3) metadata. ApplicationType is "web" (the default) or "native".
	ApplicationType   string   `json:"application_type"`
	TOSURI            string   `json:"tos_uri,omitempty"`
	PolicyURI         string   `json:"policy_uri,omitempty"`
	SoftwareID        string   `json:"software_id,omitempty"`
	SoftwareVersion   string   `json:"software_version,omitempty"`
	SoftwareStatement string   `json:"software_statement,omitempty"`
	DefaultMaxAge     int64    `json:"default_max_age,omitempty"`
	RequireAuthTime   bool     `json:"require_auth_time,omitempty"`
	DefaultACRValues  []string `json:"default_acr_values,omitempty"`
	// SubjectType is "public" (the default) or "pairwise" (OpenID Connect
	// Core 8).
	SubjectType                       string `json:"subject_type"`
	SectorIdentifierURI               string `json:"sector_identifier_uri,omitempty"`
	UserinfoSignedResponseAlg         string `json:"userinfo_signed_response_alg,omitempty"`
	FrontchannelLogoutURI             string `json:"frontchannel_logout_uri,omitempty"`
	FrontchannelLogoutSessionRequired bool   `json:"frontchannel_logout_session_required,omitempty"`
	BackchannelLogoutURI              string `json:"backchannel_logout_uri,omitempty"`
	BackchannelLogoutSessionRequired  bool   `json:"backchannel_logout_session_required,omitempty"`
	InitiateLoginURI                  string `json:"initiate_login_uri,omitempty"`

	// Read-only: set by the server in responses, ignored in requests.
	PreviousSecretExpiresAt *int64 `json:"previous_client_secret_expires_at,omitempty"`
	// MetadataDocument: the client is identified by its client_id URL and
	// kept from the document there, not registered here.
	MetadataDocument        bool   `json:"metadata_document,omitempty"`
	RegistrationAccessToken string `json:"registration_access_token,omitempty"`
	RegistrationClientURI   string `json:"registration_client_uri,omitempty"`
}

// clearReadOnly drops what a request may echo from an earlier response but
// cannot set.
func (m *ClientMetadata) clearReadOnly() {
	m.ClientIDIssuedAt = 0
	m.ClientSecretExpiresAt = nil
	m.PreviousSecretExpiresAt = nil
	m.MetadataDocument = false
	m.RegistrationAccessToken = ""
	m.RegistrationClientURI = ""
}

// usesSecret reports whether clients with this authentication method have
// a client secret.
func usesSecret(method string) bool {
	return method == "client_secret_basic" || method == "client_secret_post"
}

// InvalidMetadataError says which registration field is wrong and why. Code
// is the RFC 7591 error code.
type InvalidMetadataError struct {
	Code    string // invalid_redirect_uri or invalid_client_metadata
	Message string
}

func (e *InvalidMetadataError) Error() string { return e.Message }

func invalidMetadata(format string, args ...any) error {
	return &InvalidMetadataError{Code: "invalid_client_metadata", Message: fmt.Sprintf(format, args...)}
}

func invalidRedirect(format string, args ...any) error {
	return &InvalidMetadataError{Code: "invalid_redirect_uri", Message: fmt.Sprintf(format, args...)}
}

// Normalize fills defaults: the authorization code flow with refresh tokens,
// the code response type, and client_secret_basic.
func (m *ClientMetadata) Normalize() {
	if len(m.GrantTypes) == 0 {
		m.GrantTypes = []string{"authorization_code", "refresh_token"}
	}
	if len(m.ResponseTypes) == 0 && slices.Contains(m.GrantTypes, "authorization_code") {
		m.ResponseTypes = []string{"code"}
	}
	if m.TokenEndpointAuthMethod == "" {
		m.TokenEndpointAuthMethod = "client_secret_basic"
	}
	if m.AccessTokenStrategy == "" {
		m.AccessTokenStrategy = "opaque"
	}
	if m.ApplicationType == "" {
		m.ApplicationType = "web"
	}
	if m.SubjectType == "" {
		m.SubjectType = "public"
	}
	if m.TokenEndpointAuthMethod == "private_key_jwt" && m.TokenEndpointAuthSigningAlg == "" {
		m.TokenEndpointAuthSigningAlg = defaultAssertionAlg(m.JWKS)
	}
	if string(m.JWKS) == "null" {
		m.JWKS = nil
	}
	// Keep the key set as go-jose reads it: members it does not know (and
	// whatever bytes they hold) are not stored.
	if len(m.JWKS) > 0 && len(m.JWKS) <= maxJWKSBytes {
		var set josev4.JSONWebKeySet
		if json.Unmarshal(m.JWKS, &set) == nil {
			if b, err := json.Marshal(set); err == nil {
				m.JWKS = b
			}
		}
	}
	m.Scope = strings.Join(strings.Fields(m.Scope), " ")
	// RFC 7591 2 lets the server pick default scopes. A sign-in client with
	// none could ask for nothing at all, so it gets the OpenID Connect ones.
	if m.Scope == "" && (slices.Contains(m.GrantTypes, "authorization_code") || slices.Contains(m.GrantTypes, deviceCodeGrant) || slices.Contains(m.GrantTypes, "implicit")) {
		m.Scope = DefaultClientScope
	}
}

// validateImplicit checks an implicit client: grant type implicit and an
// implicit response type go together, and an ID token needs openid.
func (m *ClientMetadata) validateImplicit() error {
	implicit := slices.Contains(m.GrantTypes, "implicit")
	hasImplicitType, wantsIDToken := false, false
	for _, rt := range m.ResponseTypes {
		if slices.Contains(implicitResponseTypes, rt) {
			hasImplicitType = true
			wantsIDToken = wantsIDToken || strings.Contains(rt, "id_token")
		}
	}
	switch {
	case implicit && !hasImplicitType:
		return invalidMetadata("grant type implicit needs a response type among %s", strings.Join(implicitResponseTypes, ", "))
	case hasImplicitType && !implicit:
		return invalidMetadata("response types %s need grant type implicit", strings.Join(implicitResponseTypes, ", "))
	case wantsIDToken && !slices.Contains(strings.Fields(m.Scope), "openid"):
		return invalidMetadata("response type id_token needs scope openid")
	case m.IDTokenSignedResponseAlg == "EdDSA" && slices.Contains(m.ResponseTypes, "id_token token"):
		// That response's ID token must carry at_hash (OpenID Connect
		// Core 3.2.2.10), which fosite computes with SHA-256 whatever
		// the algorithm, and Ed25519's is SHA-512.
		return invalidMetadata("id_token_signed_response_alg EdDSA cannot be used with response type \"id_token token\" here: its at_hash would be wrong; choose RS256, PS256 or ES256")
	}
	return nil
}

// DefaultClientScope is what a client registered without a scope may ask for.
const DefaultClientScope = "openid profile email offline_access"

// Validate checks the metadata the way a careful provider does and returns
// an *InvalidMetadataError naming the first problem.
func (m *ClientMetadata) Validate() error {
	if m.ClientID != "" {
		if len(m.ClientID) > 255 {
			return invalidMetadata("client_id is longer than 255 characters")
		}
		for _, r := range m.ClientID {
			if r <= ' ' || r > '~' {
				return invalidMetadata("client_id %q may contain only printable ASCII characters without spaces", m.ClientID)
			}
		}
	}
	for _, g := range m.GrantTypes {
		if !slices.Contains(supportedGrantTypes, g) {
			return invalidMetadata("unknown grant type %q (supported: %s)", g, strings.Join(supportedGrantTypes, ", "))
		}
	}
	for _, rt := range m.ResponseTypes {
		if !slices.Contains(supportedResponseTypes, rt) {
			return invalidMetadata("unsupported response type %q (supported: %s)", rt, strings.Join(supportedResponseTypes, ", "))
		}
	}
	if err := m.validateImplicit(); err != nil {
		return err
	}
	usesCode := slices.Contains(m.GrantTypes, "authorization_code")
	if usesCode != slices.Contains(m.ResponseTypes, "code") {
		return invalidMetadata("grant type authorization_code and response type code go together")
	}
	// A device client (RFC 8628) signs people in without a redirect: it
	// needs neither redirect_uris nor response_types.
	if slices.Contains(m.GrantTypes, "refresh_token") && !usesCode && !slices.Contains(m.GrantTypes, deviceCodeGrant) {
		return invalidMetadata("grant type refresh_token needs grant type authorization_code or %s", deviceCodeGrant)
	}
	if !slices.Contains(supportedAuthMethods, m.TokenEndpointAuthMethod) {
		return invalidMetadata("unknown token_endpoint_auth_method %q (supported: %s)", m.TokenEndpointAuthMethod, strings.Join(supportedAuthMethods, ", "))
	}
	if !slices.Contains(accessTokenStrategies, m.AccessTokenStrategy) {
		return invalidMetadata("access_token_strategy %q is not supported (supported: %s)", m.AccessTokenStrategy, strings.Join(accessTokenStrategies, ", "))
	}
	if m.IDTokenSignedResponseAlg != "" && !slices.Contains(supportedIDTokenAlgs, m.IDTokenSignedResponseAlg) {
		return invalidMetadata("id_token_signed_response_alg %q is not supported (supported: %s)", m.IDTokenSignedResponseAlg, strings.Join(supportedIDTokenAlgs, ", "))
	}
	if m.TokenEndpointAuthMethod == "none" && slices.Contains(m.GrantTypes, "client_credentials") {
		return invalidMetadata("a public client (token_endpoint_auth_method none) cannot use the client_credentials grant")
	}
	if m.TokenEndpointAuthMethod == "none" && m.ClientSecret != "" {
		return invalidMetadata("a public client (token_endpoint_auth_method none) has no secret")
	}
	if m.TokenEndpointAuthMethod == "private_key_jwt" && m.ClientSecret != "" {
		return invalidMetadata("a private_key_jwt client authenticates with its keys and has no secret")
	}
	if err := m.validateKeys(); err != nil {
		return err
	}
	if len(m.RedirectURIs) > maxRedirectURIs {
		return invalidRedirect("at most %d redirect URIs may be registered", maxRedirectURIs)
	}
	if usesCode && len(m.RedirectURIs) == 0 {
		return invalidRedirect("at least one redirect URI is required for the authorization_code grant")
	}
	if !slices.Contains(applicationTypes, m.ApplicationType) {
		return invalidMetadata("application_type %q is not supported (supported: %s)", m.ApplicationType, strings.Join(applicationTypes, ", "))
	}
	implicit := slices.Contains(m.GrantTypes, "implicit")
	for _, u := range m.RedirectURIs {
		if err := validateRedirectURI(u, m.ApplicationType, implicit); err != nil {
			return err
		}
	}
	if len(m.PostLogoutRedirectURIs) > maxRedirectURIs {
		return invalidMetadata("at most %d post_logout_redirect_uris may be registered", maxRedirectURIs)
	}
	for _, u := range m.PostLogoutRedirectURIs {
		if err := validateRedirectURI(u, m.ApplicationType, false); err != nil {
			return invalidMetadata("post_logout_redirect_uri: %s", err)
		}
	}
	scopes := strings.Fields(m.Scope)
	if len(scopes) > maxScopeTokens {
		return invalidMetadata("at most %d scopes may be registered", maxScopeTokens)
	}
	for _, s := range scopes {
		if !validScopeToken(s) {
			return invalidMetadata("scope %q contains characters RFC 6749 does not allow", s)
		}
	}
	if err := validText("client_name", m.ClientName, maxNameLength); err != nil {
		return err
	}
	if len(m.Audience) > maxAudiences {
		return invalidMetadata("at most %d audiences may be registered", maxAudiences)
	}
	for _, a := range m.Audience {
		if a == "" || len(a) > maxURILength || strings.ContainsFunc(a, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return invalidMetadata("audience %q must be a non-empty string without spaces or control characters", a)
		}
	}
	if len(m.Contacts) > maxContacts {
		return invalidMetadata("at most %d contacts may be registered", maxContacts)
	}
	for _, c := range m.Contacts {
		if c == "" {
			return invalidMetadata("contacts must not contain empty strings")
		}
		if err := validText("contacts", c, 254); err != nil {
			return err
		}
	}
	for _, l := range []struct {
		name       string
		value, max int64
	}{
		{"access_token_lifespan", m.AccessTokenLifespan, maxAccessLifespan},
		{"refresh_token_lifespan", m.RefreshTokenLifespan, maxRefreshLifespan},
		{"id_token_lifespan", m.IDTokenLifespan, maxIDTokenLifespan},
	} {
		if l.value < 0 || l.value > l.max {
			return invalidMetadata("%s must be a number of seconds from 1 to %d (0 or absent: the server's default)", l.name, l.max)
		}
	}
	for _, u := range []struct{ name, value string }{
		{"logo_uri", m.LogoURI}, {"client_uri", m.ClientURI}, {"tos_uri", m.TOSURI}, {"policy_uri", m.PolicyURI},
		{"initiate_login_uri", m.InitiateLoginURI}, {"sector_identifier_uri", m.SectorIdentifierURI},
	} {
		if u.value == "" {
			continue
		}
		if err := validHTTPSURL(u.name, u.value); err != nil {
			return err
		}
	}
	return m.validateRegistrationMetadata()
}

// Limits on the OpenID Connect Registration metadata.
const (
	maxSoftwareText     = 255
	maxACRValues        = 10
	maxDefaultMaxAge    = 365 * 24 * 60 * 60
	maxSoftwareStmtSize = 16 << 10
)

// validateRegistrationMetadata checks the OpenID Connect Registration 1.0
// and RFC 7591 2 fields that are stored with the client: what is acted on
// must be a value we act on, and what is only kept must be small and safe
// to show.
func (m *ClientMetadata) validateRegistrationMetadata() error {
	if err := validText("software_id", m.SoftwareID, maxSoftwareText); err != nil {
		return err
	}
	if err := validText("software_version", m.SoftwareVersion, maxSoftwareText); err != nil {
		return err
	}
	if len(m.SoftwareStatement) > maxSoftwareStmtSize || strings.ContainsFunc(m.SoftwareStatement, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return invalidMetadata("software_statement must be a compact JWT of at most %d bytes", maxSoftwareStmtSize)
	}
	if len(m.DefaultACRValues) > maxACRValues {
		return invalidMetadata("at most %d default_acr_values may be registered", maxACRValues)
	}
	for _, v := range m.DefaultACRValues {
		if v == "" || len(v) > maxSoftwareText || strings.ContainsFunc(v, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) || !utf8.ValidString(v) {
			return invalidMetadata("default_acr_values entry %q must be a non-empty string of at most %d bytes without spaces or control characters", v, maxSoftwareText)
		}
	}
	if m.DefaultMaxAge < 0 || m.DefaultMaxAge > maxDefaultMaxAge {
		return invalidMetadata("default_max_age must be a number of seconds from 0 to %d", maxDefaultMaxAge)
	}
	if !slices.Contains(supportedSubjectTypes, m.SubjectType) {
		return invalidMetadata("subject_type %q is not supported (supported: %s)", m.SubjectType, strings.Join(supportedSubjectTypes, ", "))
	}
	if m.UserinfoSignedResponseAlg != "" && !slices.Contains(supportedUserinfoAlgs, m.UserinfoSignedResponseAlg) {
		return invalidMetadata("userinfo_signed_response_alg %q is not supported (supported: %s; leave it out for plain JSON)", m.UserinfoSignedResponseAlg, strings.Join(supportedUserinfoAlgs, ", "))
	}
	for _, l := range []struct {
		name, value, flag string
		required          bool
	}{
		{"frontchannel_logout_uri", m.FrontchannelLogoutURI, "frontchannel_logout_session_required", m.FrontchannelLogoutSessionRequired},
		{"backchannel_logout_uri", m.BackchannelLogoutURI, "backchannel_logout_session_required", m.BackchannelLogoutSessionRequired},
	} {
		if l.value == "" {
			if l.required {
				return invalidMetadata("%s needs %s", l.flag, l.name)
			}
			continue
		}
		if err := validLogoutURI(l.name, l.value); err != nil {
			return err
		}
	}
	return nil
}

// validLogoutURI requires an https URL, or http to this machine for
// development, as for a web client's redirect URIs.
func validLogoutURI(name, value string) error {
	p, err := url.Parse(value)
	if err == nil && p.Scheme == "http" && p.Host != "" && fosite.IsLocalhost(p) && p.Fragment == "" && len(value) <= maxURILength {
		return nil
	}
	if err := validHTTPSURL(name, value); err != nil {
		return invalidMetadata("%s must be an https URL without a fragment (http only to localhost)", name)
	}
	return nil
}

// validHTTPSURL requires an absolute https URL with a host and no fragment.
func validHTTPSURL(name, value string) error {
	p, err := url.Parse(value)
	if err != nil || p.Scheme != "https" || p.Host == "" || p.Fragment != "" || len(value) > maxURILength {
		return invalidMetadata("%s must be an https URL without a fragment", name)
	}
	return nil
}

// validText accepts a human-readable string of at most max characters
// without control characters.
func validText(name, value string, max int) error {
	if !utf8.ValidString(value) || utf8.RuneCountInString(value) > max {
		return invalidMetadata("%s must be valid UTF-8 of at most %d characters", name, max)
	}
	if strings.ContainsFunc(value, unicode.IsControl) {
		return invalidMetadata("%s must not contain control characters", name)
	}
	return nil
}

// validateKeys checks what private_key_jwt needs: exactly one of jwks and
// jwks_uri, public keys only, and a signing algorithm the keys can verify.
func (m *ClientMetadata) validateKeys() error {
	pkj := m.TokenEndpointAuthMethod == "private_key_jwt"
	hasKeys := len(m.JWKS) > 0
	if !pkj {
		switch {
		case hasKeys || m.JWKSURI != "":
			return invalidMetadata("jwks and jwks_uri are used only with token_endpoint_auth_method private_key_jwt")
		case m.TokenEndpointAuthSigningAlg != "":
			return invalidMetadata("token_endpoint_auth_signing_alg is used only with token_endpoint_auth_method private_key_jwt")
		}
		return nil
	}
	if hasKeys == (m.JWKSURI != "") {
		return invalidMetadata("private_key_jwt needs exactly one of jwks and jwks_uri")
	}
	if !slices.Contains(supportedAssertionAlgs, m.TokenEndpointAuthSigningAlg) {
		return invalidMetadata("token_endpoint_auth_signing_alg %q is not supported (supported: %s)", m.TokenEndpointAuthSigningAlg, strings.Join(supportedAssertionAlgs, ", "))
	}
	if m.JWKSURI != "" {
		return validHTTPSURL("jwks_uri", m.JWKSURI)
	}
	keys, err := parseClientJWKS(m.JWKS)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if keyFitsAlg(k, m.TokenEndpointAuthSigningAlg) {
			return nil
		}
	}
	return invalidMetadata("jwks has no signing key for token_endpoint_auth_signing_alg %s", m.TokenEndpointAuthSigningAlg)
}

// parseClientJWKS parses a client's key set with go-jose and returns its
// signing keys. Private and symmetric keys are refused: a client that sent
// its private key has leaked it.
func parseClientJWKS(raw json.RawMessage) ([]josev4.JSONWebKey, error) {
	if len(raw) > maxJWKSBytes {
		return nil, invalidMetadata("jwks is larger than %d bytes", maxJWKSBytes)
	}
	if !utf8.Valid(raw) {
		return nil, invalidMetadata("jwks is not valid UTF-8")
	}
	var set josev4.JSONWebKeySet
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, invalidMetadata("jwks is not a JSON Web Key Set: %v", err)
	}
	if len(set.Keys) == 0 || len(set.Keys) > maxJWKSKeys {
		return nil, invalidMetadata("jwks must hold 1 to %d keys", maxJWKSKeys)
	}
	var signing []josev4.JSONWebKey
	for i, k := range set.Keys {
		if !k.Valid() {
			return nil, invalidMetadata("jwks key %d is not a valid key", i+1)
		}
		if !k.IsPublic() {
			return nil, invalidMetadata("jwks key %d is a private or symmetric key; register only public keys", i+1)
		}
		if strings.ContainsFunc(k.KeyID+k.Use+k.Algorithm, unicode.IsControl) {
			return nil, invalidMetadata("jwks key %d has control characters in its kid, use or alg", i+1)
		}
		if k.Use == "" || k.Use == "sig" {
			signing = append(signing, k)
		}
	}
	if len(signing) == 0 {
		return nil, invalidMetadata("jwks has no signing key (\"use\": \"sig\")")
	}
	return signing, nil
}

// keyFitsAlg reports whether k can verify signatures made with alg.
func keyFitsAlg(k josev4.JSONWebKey, alg string) bool {
	if k.Algorithm != "" && k.Algorithm != alg {
		return false
	}
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		return alg == ecAlg(pub)
	}
	return false
}

// ecAlg is the ES algorithm that goes with an EC key's curve.
func ecAlg(pub *ecdsa.PublicKey) string {
	switch pub.Curve {
	case elliptic.P256():
		return "ES256"
	case elliptic.P384():
		return "ES384"
	case elliptic.P521():
		return "ES512"
	}
	return ""
}

// defaultAssertionAlg picks the assertion algorithm from the first signing
// key of a registered JWKS: its "alg", else what its type implies. With no
// usable key (or a jwks_uri) it is RS256, the OpenID Connect default.
func defaultAssertionAlg(raw json.RawMessage) string {
	if len(raw) > 0 && len(raw) <= maxJWKSBytes {
		var set josev4.JSONWebKeySet
		if json.Unmarshal(raw, &set) == nil {
			for _, k := range set.Keys {
				if k.Use != "" && k.Use != "sig" {
					continue
				}
				if k.Algorithm != "" {
					return k.Algorithm
				}
				if pub, ok := k.Key.(*ecdsa.PublicKey); ok {
					return ecAlg(pub)
				}
				break
			}
		}
	}
	return "RS256"
}

// validateRedirectURI requires an absolute URI without a fragment (RFC 6749
// 3.1.2), of a kind the application type may use (OpenID Connect
// Registration 2, RFC 8252 7): a web client's are https (http only to this
// machine, for development), or a private-use scheme; a native app's are
// private-use schemes (com.example.app:/cb), http to a loopback address,
// or https it has claimed (see claimedHTTPSRedirects). A web client of the
// implicit flow may use https only, and not to localhost (OpenID Connect
// Registration 2): its tokens travel in the redirect itself.
//
// Registration 2 restricts web clients' redirect URIs only for the
// implicit flow, and real clients register as web with a private-use
// scheme among their redirect URIs (oidc-agent sends
// edu.kit.data.oidc-agent:/redirect with application_type web), so a web
// client of the code flow may have one.
func validateRedirectURI(raw, applicationType string, implicit bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return invalidRedirect("redirect URI %q is not a valid URI: %v", raw, err)
	}
	if !u.IsAbs() {
		return invalidRedirect("redirect URI %q is not absolute", raw)
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return invalidRedirect("redirect URI %q must not contain a fragment", raw)
	}
	native := applicationType == "native"
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
		if u.Hostname() == "" || strings.ContainsAny(u.Host, "*%") {
			return invalidRedirect("redirect URI %q needs a host name without wildcards", raw)
		}
	case "javascript", "data", "file", "vbscript", "blob", "about":
		return invalidRedirect("redirect URI %q uses a scheme that cannot receive a code", raw)
	default:
		// A native app's private-use scheme is a reverse domain name
		// (RFC 8252 7.1), such as com.example.app:/callback.
		if !strings.Contains(u.Scheme, ".") {
			return invalidRedirect("redirect URI %q: a private-use scheme must be a reverse domain name such as com.example.app", raw)
		}
		if !native && implicit {
			return invalidRedirect("redirect URI %q: a web client of the implicit flow must use https redirect URIs (OpenID Connect Registration 2)", raw)
		}
		return nil
	}
	if !native && implicit && (u.Scheme != "https" || loopbackRedirect(u)) {
		return invalidRedirect("redirect URI %q: a web client of the implicit flow must use https, and not to localhost (OpenID Connect Registration 2)", raw)
	}
	// Plain http leaks the code on the wire; it is only for apps on this
	// machine (RFC 8252 7.3). fosite enforces the same at /authorize.
	if u.Scheme != "http" {
		return nil
	}
	if native && !loopbackRedirect(u) {
		return invalidRedirect("redirect URI %q: a native app's http redirect URI must be to a loopback address (127.0.0.1, [::1] or localhost; RFC 8252 7.3)", raw)
	}
	if !fosite.IsLocalhost(u) {
		return invalidRedirect("redirect URI %q must use https (http is allowed only for localhost and loopback addresses)", raw)
	}
	return nil
}

// loopbackRedirect reports whether u is to a loopback IP literal or to
// localhost, which RFC 8252 8.3 discourages but real native clients use.
func loopbackRedirect(u *url.URL) bool {
	h := u.Hostname()
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsLoopback()
}

// claimedHTTPSRedirects lists a native client's https redirect URIs to
// hosts other than this machine: claimed https URIs (RFC 8252 7.2), which
// only the app's platform can tie to the app. An operator may vouch for
// them; a client registering itself cannot, so registration refuses them.
func (m *ClientMetadata) claimedHTTPSRedirects() []string {
	if m.ApplicationType != "native" {
		return nil
	}
	var claimed []string
	for _, raw := range append(slices.Clone(m.RedirectURIs), m.PostLogoutRedirectURIs...) {
		if u, err := url.Parse(raw); err == nil && strings.EqualFold(u.Scheme, "https") && !loopbackRedirect(u) {
			claimed = append(claimed, raw)
		}
	}
	return claimed
}

// validScopeToken reports whether s is a scope-token of RFC 6749 3.3.
func validScopeToken(s string) bool {
	for _, c := range []byte(s) {
		if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return false
		}
	}
	return s != ""
}

// ClientStore is what client management needs of storage.
type ClientStore interface {
	CreateClient(ctx context.Context, c *storage.Client) error
	Client(ctx context.Context, id string) (*storage.Client, error)
	ClientForUpdate(ctx context.Context, id string) (*storage.Client, error)
	UpdateClient(ctx context.Context, c *storage.Client) error
	RotateClientSecret(ctx context.Context, id, hash string, keepOldUntil *time.Time) (*storage.Client, error)
	InTx(ctx context.Context, fn func(ctx context.Context) error) error
}

var _ ClientStore = (*storage.Store)(nil)

// ErrClientExists is returned when a client id is taken.
var ErrClientExists = errors.New("a client with this id already exists")

// CreateClient validates m, generates what is missing (the id; a secret for
// clients that authenticate with one) and stores the client with only a
// hash of its secret. The result carries the secret: it is shown this once
// and never again. A secret the server generates has 256 bits of entropy
// and gets a fast hash; one supplied by an operator may be weak and gets
// Argon2id.
func CreateClient(ctx context.Context, store ClientStore, m ClientMetadata) (ClientMetadata, error) {
	return createClient(ctx, store, m, "")
}

// createClient is CreateClient, also storing the hash of a registration
// access token (RFC 7592) when the client registered itself.
func createClient(ctx context.Context, store ClientStore, m ClientMetadata, registrationTokenHash string) (ClientMetadata, error) {
	m.clearReadOnly()
	m.Normalize()
	if err := m.Validate(); err != nil {
		return ClientMetadata{}, err
	}
	if m.ClientID == "" {
		id, err := newClientID()
		if err != nil {
			return ClientMetadata{}, err
		}
		m.ClientID = id
	}
	sector, err := resolveSector(ctx, &m) // may be the client's own: after its id
	if err != nil {
		return ClientMetadata{}, err
	}
	var hash string
	if usesSecret(m.TokenEndpointAuthMethod) {
		var err error
		if m.ClientSecret, hash, err = hashClientSecret(m.ClientSecret); err != nil {
			return ClientMetadata{}, err
		}
	}
	c := m.storageClient()
	c.Sector = sector
	c.SecretHash = hash
	c.RegistrationTokenHash = registrationTokenHash
	if err := store.CreateClient(ctx, c); err != nil {
		if errors.Is(err, storage.ErrAlreadyExists) {
			return ClientMetadata{}, fmt.Errorf("client %q: %w", m.ClientID, ErrClientExists)
		}
		return ClientMetadata{}, err
	}
	return withSecret(ClientMetadataOf(c), m.ClientSecret), nil
}

// hashClientSecret generates a secret when none is given and returns it
// with its hash: SHA-256 for a generated one, Argon2id for a chosen one.
// newClientID returns a random client id of 22 base64url characters
// (132 bits) that starts with a letter or digit: an id starting with "-"
// would be read as a flag by command lines ("authz clients get -x…").
func newClientID() (string, error) {
	for {
		id, err := storage.GenerateSecret()
		if err != nil {
			return "", err
		}
		if c := id[0]; c != '-' && c != '_' {
			return id[:22], nil
		}
	}
}

func hashClientSecret(secret string) (string, string, error) {
	if secret == "" {
		secret, err := storage.GenerateSecret()
		if err != nil {
			return "", "", err
		}
		return secret, storage.HashGeneratedSecret(secret), nil
	}
	hash, err := storage.HashPassword(secret)
	return secret, hash, err
}

// withSecret adds a secret shown once to m; it never expires.
func withSecret(m ClientMetadata, secret string) ClientMetadata {
	m.ClientSecret = secret
	if secret != "" {
		never := int64(0)
		m.ClientSecretExpiresAt = &never
	}
	return m
}

// UpdateClient replaces the metadata of client id with m (RFC 7592 2.2
// semantics: what m leaves out takes its default). The secret is kept;
// a client moving to a secret-based method from one without gets a new
// secret, returned in the result; one moving away loses its secret. The
// secret itself is changed only by RotateClientSecret.
func UpdateClient(ctx context.Context, store ClientStore, id string, m ClientMetadata) (ClientMetadata, error) {
	m.clearReadOnly()
	if m.ClientID != "" && m.ClientID != id {
		return ClientMetadata{}, invalidMetadata("client_id %q does not match the client being updated (%q)", m.ClientID, id)
	}
	if m.ClientSecret != "" {
		return ClientMetadata{}, invalidMetadata("client_secret cannot be set by an update; rotate it instead")
	}
	m.ClientID = id
	m.Normalize()
	if err := m.Validate(); err != nil {
		return ClientMetadata{}, err
	}
	sector, err := resolveSector(ctx, &m) // fetches: before the row is locked
	if err != nil {
		return ClientMetadata{}, err
	}
	var out ClientMetadata
	err = store.InTx(ctx, func(ctx context.Context) error {
		cur, err := store.ClientForUpdate(ctx, id)
		if err != nil {
			return err
		}
		c := m.storageClient()
		c.Sector = sector
		if err := keepSector(cur, c); err != nil {
			return err
		}
		c.RegistrationTokenHash = cur.RegistrationTokenHash
		var secret string
		if usesSecret(m.TokenEndpointAuthMethod) {
			if cur.SecretHash != "" {
				c.SecretHash, c.RotatedSecretHash, c.RotatedSecretExpiresAt = cur.SecretHash, cur.RotatedSecretHash, cur.RotatedSecretExpiresAt
			} else if secret, c.SecretHash, err = hashClientSecret(""); err != nil {
				return err
			}
		}
		if err := store.UpdateClient(ctx, c); err != nil {
			return err
		}
		out = withSecret(ClientMetadataOf(c), secret)
		return nil
	})
	if err != nil {
		return ClientMetadata{}, err
	}
	return out, nil
}

// ErrNoSecret is returned when rotating the secret of a client that
// authenticates without one.
var ErrNoSecret = errors.New("the client does not authenticate with a client secret")

// RotateClientSecret gives client id a new secret (generated when secret is
// empty) and returns it, shown this once. The previous secret keeps working
// until now+grace, so apps can be moved over without downtime; grace 0
// ends it at once.
func RotateClientSecret(ctx context.Context, store ClientStore, id, secret string, grace time.Duration, now time.Time) (ClientMetadata, error) {
	if grace < 0 {
		return ClientMetadata{}, invalidMetadata("the grace period must not be negative")
	}
	var out ClientMetadata
	err := store.InTx(ctx, func(ctx context.Context) error {
		cur, err := store.ClientForUpdate(ctx, id)
		if err != nil {
			return err
		}
		if !usesSecret(cur.TokenEndpointAuthMethod) {
			return fmt.Errorf("client %q uses %s: %w", id, cur.TokenEndpointAuthMethod, ErrNoSecret)
		}
		secret, hash, err := hashClientSecret(secret)
		if err != nil {
			return err
		}
		var keepUntil *time.Time
		if grace > 0 && cur.SecretHash != "" {
			t := now.Add(grace)
			keepUntil = &t
		}
		c, err := store.RotateClientSecret(ctx, id, hash, keepUntil)
		if err != nil {
			return err
		}
		out = withSecret(ClientMetadataOf(c), secret)
		return nil
	})
	if err != nil {
		return ClientMetadata{}, err
	}
	return out, nil
}

func (m *ClientMetadata) storageClient() *storage.Client {
	return &storage.Client{
		ID:                          m.ClientID,
		Name:                        m.ClientName,
		RedirectURIs:                m.RedirectURIs,
		GrantTypes:                  m.GrantTypes,
		ResponseTypes:               m.ResponseTypes,
		Scopes:                      strings.Fields(m.Scope),
		Audience:                    m.Audience,
		TokenEndpointAuthMethod:     m.TokenEndpointAuthMethod,
		Public:                      m.TokenEndpointAuthMethod == "none",
		SkipConsent:                 m.SkipConsent,
		PostLogoutRedirectURIs:      m.PostLogoutRedirectURIs,
		LogoURI:                     m.LogoURI,
		ClientURI:                   m.ClientURI,
		Contacts:                    m.Contacts,
		JWKS:                        m.JWKS,
		JWKSURI:                     m.JWKSURI,
		TokenEndpointAuthSigningAlg: m.TokenEndpointAuthSigningAlg,
		AccessTokenStrategy:         m.AccessTokenStrategy,
		IDTokenSignedResponseAlg:    m.IDTokenSignedResponseAlg,
		AccessTokenLifespan:         int(m.AccessTokenLifespan),
		RefreshTokenLifespan:        int(m.RefreshTokenLifespan),
		IDTokenLifespan:             int(m.IDTokenLifespan),

		RequirePushedAuthorizationRequests: m.RequirePushedAuthorizationRequests,

		ApplicationType:                   m.ApplicationType,
		TOSURI:                            m.TOSURI,
		PolicyURI:                         m.PolicyURI,
		SoftwareID:                        m.SoftwareID,
		SoftwareVersion:                   m.SoftwareVersion,
		SoftwareStatement:                 m.SoftwareStatement,
		DefaultMaxAge:                     int(m.DefaultMaxAge),
		RequireAuthTime:                   m.RequireAuthTime,
		DefaultACRValues:                  m.DefaultACRValues,
		SubjectType:                       m.SubjectType,
		SectorIdentifierURI:               m.SectorIdentifierURI,
		UserinfoSignedResponseAlg:         m.UserinfoSignedResponseAlg,
		FrontchannelLogoutURI:             m.FrontchannelLogoutURI,
		FrontchannelLogoutSessionRequired: m.FrontchannelLogoutSessionRequired,
		BackchannelLogoutURI:              m.BackchannelLogoutURI,
		BackchannelLogoutSessionRequired:  m.BackchannelLogoutSessionRequired,
		InitiateLoginURI:                  m.InitiateLoginURI,
	}
}

// ClientMetadataOf presents a stored client; it never includes a secret.
func ClientMetadataOf(c *storage.Client) ClientMetadata {
	m := ClientMetadata{
		ClientID:                    c.ID,
		ClientIDIssuedAt:            c.CreatedAt.Unix(),
		ClientName:                  c.Name,
		RedirectURIs:                nonNil(c.RedirectURIs),
		GrantTypes:                  nonNil(c.GrantTypes),
		ResponseTypes:               nonNil(c.ResponseTypes),
		Scope:                       strings.Join(c.Scopes, " "),
		Audience:                    c.Audience,
		TokenEndpointAuthMethod:     c.TokenEndpointAuthMethod,
		SkipConsent:                 c.SkipConsent,
		PostLogoutRedirectURIs:      c.PostLogoutRedirectURIs,
		LogoURI:                     c.LogoURI,
		ClientURI:                   c.ClientURI,
		Contacts:                    c.Contacts,
		JWKS:                        json.RawMessage(c.JWKS),
		JWKSURI:                     c.JWKSURI,
		TokenEndpointAuthSigningAlg: c.TokenEndpointAuthSigningAlg,
		AccessTokenStrategy:         c.AccessTokenStrategy,
		IDTokenSignedResponseAlg:    c.IDTokenSignedResponseAlg,
		AccessTokenLifespan:         int64(c.AccessTokenLifespan),
		RefreshTokenLifespan:        int64(c.RefreshTokenLifespan),
		IDTokenLifespan:             int64(c.IDTokenLifespan),

		RequirePushedAuthorizationRequests: c.RequirePushedAuthorizationRequests,
		MetadataDocument:                   c.MetadataDocument,

		ApplicationType:                   c.ApplicationType,
		TOSURI:                            c.TOSURI,
		PolicyURI:                         c.PolicyURI,
		SoftwareID:                        c.SoftwareID,
		SoftwareVersion:                   c.SoftwareVersion,
		SoftwareStatement:                 c.SoftwareStatement,
		DefaultMaxAge:                     int64(c.DefaultMaxAge),
		RequireAuthTime:                   c.RequireAuthTime,
		DefaultACRValues:                  c.DefaultACRValues,
		SubjectType:                       c.SubjectType,
		SectorIdentifierURI:               c.SectorIdentifierURI,
		UserinfoSignedResponseAlg:         c.UserinfoSignedResponseAlg,
		FrontchannelLogoutURI:             c.FrontchannelLogoutURI,
		FrontchannelLogoutSessionRequired: c.FrontchannelLogoutSessionRequired,
		BackchannelLogoutURI:              c.BackchannelLogoutURI,
		BackchannelLogoutSessionRequired:  c.BackchannelLogoutSessionRequired,
		InitiateLoginURI:                  c.InitiateLoginURI,
	}
	if len(c.GetRotatedHashes()) > 0 {
		exp := c.RotatedSecretExpiresAt.Unix()
		m.PreviousSecretExpiresAt = &exp
	}
	return m
}

func nonNil(a []string) []string {
	if a == nil {
		return []string{}
	}
	return a
}
