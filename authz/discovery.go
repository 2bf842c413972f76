package authz

import (
	"encoding/json"
	"net/http"
)

// supportedScopes are the scopes this server gives meaning to. Clients may
// register others (an API's own scopes); operators describe those in the
// scope catalogue (scopes.go), which discovery lists after these.
var supportedScopes = []string{"openid", "profile", "email", "offline_access"}

// supportedClaims are the claims an ID token or userinfo can carry.
var supportedClaims = []string{
	"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "amr",
	"name", "preferred_username", "email", "email_verified",
}

// discovery serves both /.well-known/openid-configuration (OpenID Connect
// Discovery 1.0) and /.well-known/oauth-authorization-server (RFC 8414).
// Everything in it comes from the configuration and the lists the
// endpoints themselves use, so it cannot drift from what the server does.
func (h *Handler) discovery(w http.ResponseWriter, r *http.Request) {
	// The built-in scopes and the catalogue's, as read within
	// scopeCacheTTL; from memory while the database cannot be read.
	scopes, err := h.scopes.get(r.Context())
	if err != nil {
		h.log.Error("discovery: scope catalogue", "err", err)
		writeCatalogueError(w, r, err)
		return
	}
	iss := h.cfg.Issuer
	pkce := []string{"S256"}
	if h.cfg.AllowPlainPKCE {
		pkce = append(pkce, "plain")
	}
	doc := map[string]any{
		"issuer":                                           iss,
		"authorization_endpoint":                           iss + "/oauth2/authorize",
		"token_endpoint":                                   iss + "/oauth2/token",
		"device_authorization_endpoint":                    iss + "/oauth2/device/auth",
		"introspection_endpoint":                           iss + "/oauth2/introspect",
		"revocation_endpoint":                              iss + "/oauth2/revoke",
		"userinfo_endpoint":                                iss + "/userinfo",
		"end_session_endpoint":                             iss + "/oauth2/logout",
		"jwks_uri":                                         iss + "/.well-known/jwks.json",
		"scopes_supported":                                 scopes.supported(),
		"claims_supported":                                 supportedClaims,
		"response_types_supported":                         supportedResponseTypes,
		"response_modes_supported":                         []string{"query", "fragment"},
		"grant_types_supported":                            supportedGrantTypes,
		"code_challenge_methods_supported":                 pkce,
		"token_endpoint_auth_methods_supported":            supportedAuthMethods,
		"token_endpoint_auth_signing_alg_values_supported": supportedAssertionAlgs,
		"introspection_endpoint_auth_methods_supported":    []string{"client_secret_basic", "client_secret_post", "private_key_jwt"},
		"introspection_endpoint_auth_signing_alg_values_supported": supportedAssertionAlgs,
		"revocation_endpoint_auth_methods_supported":               supportedAuthMethods,
		"revocation_endpoint_auth_signing_alg_values_supported":    supportedAssertionAlgs,
		"id_token_signing_alg_values_supported":                    supportedIDTokenAlgs,
		"userinfo_signing_alg_values_supported":                    supportedUserinfoAlgs,
		"subject_types_supported":                                  supportedSubjectTypes,
		"prompt_values_supported":                                  []string{"none", "login", "consent", "select_account"},
		"claims_parameter_supported":                               false,
		"request_parameter_supported":                              false,
		"request_uri_parameter_supported":                          false,
		"authorization_response_iss_parameter_supported":           true,
	}
	if h.cfg.Registration == RegistrationToken || h.cfg.Registration == RegistrationOpen {
		doc["registration_endpoint"] = iss + "/oauth2/register"
	}
	// Pushed authorization requests (RFC 9126 5); when required of every
	// client, an authorize request without request_uri is refused.
	doc["pushed_authorization_request_endpoint"] = iss + "/oauth2/par"
	doc["require_pushed_authorization_requests"] = h.cfg.RequirePAR
	if h.cfg.ClientIDMetadata {
		// Clients identified by a URL (authz/cimd.go).
		doc["client_id_metadata_document_supported"] = true
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_ = json.NewEncoder(w).Encode(doc)
}
