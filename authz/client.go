package authz

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/ory/fosite"

	"github.com/authz/authz/storage"
)

// Grant types, response types and client authentication methods this server
// supports. Discovery and validation both read these lists.
var (
	supportedGrantTypes    = []string{"authorization_code", "refresh_token", "client_credentials"}
	supportedResponseTypes = []string{"code"}
	supportedAuthMethods   = []string{"client_secret_basic", "client_secret_post", "none"}
)

// ClientMetadata is a client as the outside world sees it, with RFC 7591
// field names. It is what the CLI prints and what the admin API and dynamic
// registration will accept.
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
	m.Scope = strings.Join(strings.Fields(m.Scope), " ")
	// RFC 7591 2 lets the server pick default scopes. A sign-in client with
	// none could ask for nothing at all, so it gets the OpenID Connect ones.
	if m.Scope == "" && slices.Contains(m.GrantTypes, "authorization_code") {
		m.Scope = DefaultClientScope
	}
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
	usesCode := slices.Contains(m.GrantTypes, "authorization_code")
	if usesCode != slices.Contains(m.ResponseTypes, "code") {
		return invalidMetadata("grant type authorization_code and response type code go together")
	}
	if slices.Contains(m.GrantTypes, "refresh_token") && !usesCode {
		return invalidMetadata("grant type refresh_token needs grant type authorization_code")
	}
	if !slices.Contains(supportedAuthMethods, m.TokenEndpointAuthMethod) {
		return invalidMetadata("unknown token_endpoint_auth_method %q (supported: %s)", m.TokenEndpointAuthMethod, strings.Join(supportedAuthMethods, ", "))
	}
	if m.TokenEndpointAuthMethod == "none" && slices.Contains(m.GrantTypes, "client_credentials") {
		return invalidMetadata("a public client (token_endpoint_auth_method none) cannot use the client_credentials grant")
	}
	if m.TokenEndpointAuthMethod == "none" && m.ClientSecret != "" {
		return invalidMetadata("a public client (token_endpoint_auth_method none) has no secret")
	}
	if usesCode && len(m.RedirectURIs) == 0 {
		return invalidRedirect("at least one redirect URI is required for the authorization_code grant")
	}
	for _, u := range m.RedirectURIs {
		if err := validateRedirectURI(u); err != nil {
			return err
		}
	}
	for _, u := range m.PostLogoutRedirectURIs {
		if err := validateRedirectURI(u); err != nil {
			return invalidMetadata("post_logout_redirect_uri: %s", err)
		}
	}
	for _, s := range strings.Fields(m.Scope) {
		if !validScopeToken(s) {
			return invalidMetadata("scope %q contains characters RFC 6749 does not allow", s)
		}
	}
	for _, u := range []struct{ name, value string }{{"logo_uri", m.LogoURI}, {"client_uri", m.ClientURI}} {
		if u.value == "" {
			continue
		}
		p, err := url.Parse(u.value)
		if err != nil || p.Scheme != "https" || p.Host == "" {
			return invalidMetadata("%s must be an https URL", u.name)
		}
	}
	return nil
}

// validateRedirectURI requires an absolute URI without a fragment (RFC 6749
// 3.1.2). A private-use scheme (com.example.app:/cb) is absolute too.
func validateRedirectURI(raw string) error {
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
	}
	// Plain http leaks the code on the wire; it is only for apps on this
	// machine (RFC 8252 7.3). fosite enforces the same at /authorize.
	if u.Scheme == "http" && !fosite.IsLocalhost(u) {
		return invalidRedirect("redirect URI %q must use https (http is allowed only for localhost and loopback addresses)", raw)
	}
	return nil
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
}

// ErrClientExists is returned when a client id is taken.
var ErrClientExists = errors.New("a client with this id already exists")

// CreateClient validates m, generates what is missing (the id; a secret for
// confidential clients) and stores the client with only a hash of its secret.
// The result carries the secret: it is shown this once and never again. A
// secret the server generates has 256 bits of entropy and gets a fast hash;
// one supplied by an operator may be weak and gets Argon2id.
func CreateClient(ctx context.Context, store ClientStore, m ClientMetadata) (ClientMetadata, error) {
	m.Normalize()
	if err := m.Validate(); err != nil {
		return ClientMetadata{}, err
	}
	if m.ClientID == "" {
		id, err := storage.GenerateSecret()
		if err != nil {
			return ClientMetadata{}, err
		}
		m.ClientID = id[:22]
	}
	var hash string
	if m.TokenEndpointAuthMethod != "none" {
		var err error
		if m.ClientSecret == "" {
			if m.ClientSecret, err = storage.GenerateSecret(); err != nil {
				return ClientMetadata{}, err
			}
			hash = storage.HashGeneratedSecret(m.ClientSecret)
		} else if hash, err = storage.HashPassword(m.ClientSecret); err != nil {
			return ClientMetadata{}, err
		}
	}
	c := m.storageClient()
	c.SecretHash = hash
	if err := store.CreateClient(ctx, c); err != nil {
		if errors.Is(err, storage.ErrAlreadyExists) {
			return ClientMetadata{}, fmt.Errorf("client %q: %w", m.ClientID, ErrClientExists)
		}
		return ClientMetadata{}, err
	}
	out := ClientMetadataOf(c)
	out.ClientSecret = m.ClientSecret
	if out.ClientSecret != "" {
		never := int64(0)
		out.ClientSecretExpiresAt = &never
	}
	return out, nil
}

func (m *ClientMetadata) storageClient() *storage.Client {
	return &storage.Client{
		ID:                      m.ClientID,
		Name:                    m.ClientName,
		RedirectURIs:            m.RedirectURIs,
		GrantTypes:              m.GrantTypes,
		ResponseTypes:           m.ResponseTypes,
		Scopes:                  strings.Fields(m.Scope),
		Audience:                m.Audience,
		TokenEndpointAuthMethod: m.TokenEndpointAuthMethod,
		Public:                  m.TokenEndpointAuthMethod == "none",
		SkipConsent:             m.SkipConsent,
		PostLogoutRedirectURIs:  m.PostLogoutRedirectURIs,
		LogoURI:                 m.LogoURI,
		ClientURI:               m.ClientURI,
		Contacts:                m.Contacts,
	}
}

// ClientMetadataOf presents a stored client; it never includes a secret.
func ClientMetadataOf(c *storage.Client) ClientMetadata {
	return ClientMetadata{
		ClientID:                c.ID,
		ClientIDIssuedAt:        c.CreatedAt.Unix(),
		ClientName:              c.Name,
		RedirectURIs:            nonNil(c.RedirectURIs),
		GrantTypes:              nonNil(c.GrantTypes),
		ResponseTypes:           nonNil(c.ResponseTypes),
		Scope:                   strings.Join(c.Scopes, " "),
		Audience:                c.Audience,
		TokenEndpointAuthMethod: c.TokenEndpointAuthMethod,
		SkipConsent:             c.SkipConsent,
		PostLogoutRedirectURIs:  c.PostLogoutRedirectURIs,
		LogoURI:                 c.LogoURI,
		ClientURI:               c.ClientURI,
		Contacts:                c.Contacts,
	}
}

func nonNil(a []string) []string {
	if a == nil {
		return []string{}
	}
	return a
}
