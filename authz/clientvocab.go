package authz

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	josev4 "github.com/go-jose/go-jose/v4"
)

// The registered client metadata names (IANA "OAuth Dynamic Client
// Registration Metadata") that ask for something this server does not do.
// They are refused by name, in registration and the admin API alike: a
// client that relies on encrypted ID tokens or request objects must learn
// it at registration, not in production. Names nobody registered are
// another matter (see decodeRegistration and decodeAdminMetadata).
var unsupportedMetadata = map[string]string{
	"request_object_signing_alg":                     "request objects are not supported",
	"request_object_encryption_alg":                  "request objects are not supported",
	"request_object_encryption_enc":                  "request objects are not supported",
	"request_uris":                                   "request objects are not supported",
	"require_signed_request_object":                  "request objects are not supported",
	"id_token_encrypted_response_alg":                "encrypted ID tokens are not supported",
	"id_token_encrypted_response_enc":                "encrypted ID tokens are not supported",
	"userinfo_encrypted_response_alg":                "encrypted userinfo answers are not supported",
	"userinfo_encrypted_response_enc":                "encrypted userinfo answers are not supported",
	"authorization_signed_response_alg":              "JWT-secured authorization responses (JARM) are not supported",
	"authorization_encrypted_response_alg":           "JWT-secured authorization responses (JARM) are not supported",
	"authorization_encrypted_response_enc":           "JWT-secured authorization responses (JARM) are not supported",
	"introspection_signed_response_alg":              "JWT introspection responses (RFC 9701) are not supported",
	"introspection_encrypted_response_alg":           "JWT introspection responses (RFC 9701) are not supported",
	"introspection_encrypted_response_enc":           "JWT introspection responses (RFC 9701) are not supported",
	"tls_client_certificate_bound_access_tokens":     "certificate-bound access tokens (RFC 8705) are not supported",
	"tls_client_auth_subject_dn":                     "mutual-TLS client authentication (RFC 8705) is not supported",
	"tls_client_auth_san_dns":                        "mutual-TLS client authentication (RFC 8705) is not supported",
	"tls_client_auth_san_uri":                        "mutual-TLS client authentication (RFC 8705) is not supported",
	"tls_client_auth_san_ip":                         "mutual-TLS client authentication (RFC 8705) is not supported",
	"tls_client_auth_san_email":                      "mutual-TLS client authentication (RFC 8705) is not supported",
	"dpop_bound_access_tokens":                       "DPoP-bound access tokens (RFC 9449) are not supported",
	"authorization_details_types":                    "rich authorization requests (RFC 9396) are not supported",
	"backchannel_token_delivery_mode":                "client-initiated backchannel authentication (CIBA) is not supported",
	"backchannel_client_notification_endpoint":       "client-initiated backchannel authentication (CIBA) is not supported",
	"backchannel_authentication_request_signing_alg": "client-initiated backchannel authentication (CIBA) is not supported",
	"backchannel_user_code_parameter":                "client-initiated backchannel authentication (CIBA) is not supported",
	"claims_redirect_uris":                           "UMA claims gathering is not supported",
	"nfv_token_signed_response_alg":                  "NFV tokens are not supported",
	"nfv_token_encrypted_response_alg":               "NFV tokens are not supported",
	"nfv_token_encrypted_response_enc":               "NFV tokens are not supported",
}

// refuseUnsupportedMetadata refuses a member of unsupportedMetadata unless
// it asks for nothing: null, "", false, an empty list or object, or "none"
// for an encryption algorithm, which is dropped from members. Clients
// built on libraries that send every member with its default then still
// register.
func refuseUnsupportedMetadata(members map[string]json.RawMessage) error {
	names := make([]string, 0, len(members))
	for name := range members {
		names = append(names, name)
	}
	slices.Sort(names) // the same request gets the same message
	for _, name := range names {
		reason, ok := unsupportedMetadata[name]
		if !ok {
			continue
		}
		if asksNothing(name, members[name]) {
			delete(members, name) // nothing to store, and no typo
			continue
		}
		return invalidMetadata("%s: %s here; leave %s out", name, reason, name)
	}
	return nil
}

// asksNothing reports whether raw is the "nothing" value of member name.
func asksNothing(name string, raw json.RawMessage) bool {
	switch string(bytes.TrimSpace(raw)) {
	case "null", `""`, "false", "[]", "{}":
		return true
	case `"none"`:
		return strings.Contains(name, "encrypt")
	}
	return false
}

// JWT claims of a software statement that are not client metadata.
var statementJWTClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "software_statement"}

// applySoftwareStatement verifies members' software_statement, if any,
// and merges its claims over members (RFC 7591 2.3: they take
// precedence). The statement itself stays, to be stored and echoed. What
// the merged metadata asks is then checked like any other request: a
// statement vouches for the software, it does not lift the policy.
func applySoftwareStatement(members map[string]json.RawMessage, keys *josev4.JSONWebKeySet, now time.Time) error {
	raw, ok := members["software_statement"]
	if !ok || asksNothing("software_statement", raw) {
		return nil
	}
	var stmt string
	if err := json.Unmarshal(raw, &stmt); err != nil {
		return invalidStatement("software_statement must be a string holding a signed JWT")
	}
	claims, err := verifySoftwareStatement(stmt, keys, now)
	if err != nil {
		return err
	}
	for name, v := range claims {
		if !slices.Contains(statementJWTClaims, name) {
			members[name] = v
		}
	}
	return nil
}

// invalidStatement is RFC 7591 3.2.2's invalid_software_statement.
func invalidStatement(description string) error {
	return &apiError{Status: http.StatusBadRequest, Code: "invalid_software_statement", Description: description}
}

// decodeMetadataMembers reads a JSON object of client metadata as its
// members, so that names can be looked at before the struct is filled.
func decodeMetadataMembers(w http.ResponseWriter, r *http.Request) (map[string]json.RawMessage, error) {
	var members map[string]json.RawMessage
	if err := decodeJSONBody(w, r, &members, maxClientMetadataLen, "invalid_client_metadata"); err != nil {
		return nil, err
	}
	if members == nil { // the body was null
		return nil, badRequest("the request body must be a JSON object")
	}
	return members, nil
}

// decodeAdminMetadata fills m from members for the admin API: a software
// statement is verified and merged, known names we cannot honour are
// refused, and unknown names too, since an operator's unknown name is a
// typo. verifyStatement is false when the statement is the stored one,
// carried along by a merge patch that did not name it.
func (a *admin) decodeAdminMetadata(members map[string]json.RawMessage, verifyStatement bool, m *ClientMetadata) error {
	if verifyStatement {
		if err := applySoftwareStatement(members, a.cfg.SoftwareStatementKeys, a.cfg.now()); err != nil {
			return err
		}
	}
	if err := refuseUnsupportedMetadata(members); err != nil {
		return err
	}
	b, err := json.Marshal(members)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(m); err != nil {
		return jsonDecodeError(err, "invalid_client_metadata")
	}
	return nil
}

// decodeClientMetadata reads the body of an admin create or replace.
func (a *admin) decodeClientMetadata(w http.ResponseWriter, r *http.Request, m *ClientMetadata) error {
	members, err := decodeMetadataMembers(w, r)
	if err != nil {
		return err
	}
	return a.decodeAdminMetadata(members, true, m)
}

// decodePatchedMetadata reads a client's metadata after a merge patch;
// newStatement: the patch named software_statement.
func (a *admin) decodePatchedMetadata(doc map[string]any, newStatement bool, m *ClientMetadata) error {
	b, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(b, &members); err != nil {
		return err
	}
	return a.decodeAdminMetadata(members, newStatement, m)
}
