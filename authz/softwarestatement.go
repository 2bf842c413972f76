package authz

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	josev4 "github.com/go-jose/go-jose/v4"
)

// Software statements (RFC 7591 2.3): a JWT, signed by someone the
// operator trusts (AUTHZ_SOFTWARE_STATEMENT_KEYS), whose claims are client
// metadata that take precedence over the plain JSON ones.

// statementAlgs are the JWS algorithms a software statement may use: the
// asymmetric ones, never HS* (the key would be shared) nor none.
var statementAlgs = []josev4.SignatureAlgorithm{
	josev4.RS256, josev4.RS384, josev4.RS512, josev4.PS256, josev4.PS384, josev4.PS512,
	josev4.ES256, josev4.ES384, josev4.ES512, josev4.EdDSA,
}

// LoadSoftwareStatementKeys reads the JWKS file of
// AUTHZ_SOFTWARE_STATEMENT_KEYS: public signing keys only, at least one.
func LoadSoftwareStatementKeys(path string) (*josev4.JSONWebKeySet, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("AUTHZ_SOFTWARE_STATEMENT_KEYS: %w", err)
	}
	var set josev4.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("AUTHZ_SOFTWARE_STATEMENT_KEYS: %s is not a JSON Web Key Set: %w", path, err)
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("AUTHZ_SOFTWARE_STATEMENT_KEYS: %s has no keys", path)
	}
	for i, k := range set.Keys {
		if err := statementKeyUsable(k); err != nil {
			return nil, fmt.Errorf("AUTHZ_SOFTWARE_STATEMENT_KEYS: %s key %d: %w", path, i+1, err)
		}
	}
	return &set, nil
}

// statementKeyUsable requires a public RSA, EC or Ed25519 signing key
// whose alg, if given, is one statements may use.
func statementKeyUsable(k josev4.JSONWebKey) error {
	if !k.Valid() || !k.IsPublic() {
		return errors.New("not a valid public key (give public keys only)")
	}
	if k.Use != "" && k.Use != "sig" {
		return fmt.Errorf("use is %q, not sig", k.Use)
	}
	switch k.Key.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return fmt.Errorf("%T keys cannot sign statements; use RSA, EC or Ed25519", k.Key)
	}
	if k.Algorithm != "" && !slices.Contains(statementAlgs, josev4.SignatureAlgorithm(k.Algorithm)) {
		return fmt.Errorf("alg %q is not one of %v", k.Algorithm, statementAlgs)
	}
	return nil
}

// statementKeyFits reports whether k may verify a signature made with alg:
// the key's own alg when it names one, else what its type allows.
func statementKeyFits(k josev4.JSONWebKey, alg string) bool {
	if k.Algorithm != "" {
		return k.Algorithm == alg
	}
	switch pub := k.Key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		return alg == ecAlg(pub)
	case ed25519.PublicKey:
		return alg == string(josev4.EdDSA)
	}
	return false
}

// verifySoftwareStatement checks stmt's signature against the trusted
// keys (those with its kid, when it names one), requires iss, honours
// exp and nbf, and returns its claims.
func verifySoftwareStatement(stmt string, keys *josev4.JSONWebKeySet, now time.Time) (map[string]json.RawMessage, error) {
	if keys == nil || len(keys.Keys) == 0 {
		return nil, invalidStatement("software statements are not accepted here: the operator has configured no keys to verify them (AUTHZ_SOFTWARE_STATEMENT_KEYS); leave software_statement out")
	}
	jws, err := josev4.ParseSigned(stmt, statementAlgs)
	if err != nil {
		return nil, invalidStatement(fmt.Sprintf("software_statement is not a JWT signed with one of %v: %v", statementAlgs, err))
	}
	if len(jws.Signatures) != 1 {
		return nil, invalidStatement("software_statement must carry exactly one signature")
	}
	h := jws.Signatures[0].Header
	var payload []byte
	for _, k := range keys.Keys {
		if (h.KeyID != "" && k.KeyID != h.KeyID) || !statementKeyFits(k, h.Algorithm) {
			continue
		}
		if payload, err = jws.Verify(k.Key); err == nil {
			break
		}
	}
	if payload == nil {
		return nil, invalidStatement("software_statement is not signed by a key this server trusts")
	}
	var claims map[string]json.RawMessage
	if err := json.Unmarshal(payload, &claims); err != nil || claims == nil {
		return nil, invalidStatement("software_statement's claims are not a JSON object")
	}
	if err := checkStatementClaims(claims, now); err != nil {
		return nil, err
	}
	return claims, nil
}

// checkStatementClaims requires a string iss and a statement within its
// exp and nbf, if it has them.
func checkStatementClaims(claims map[string]json.RawMessage, now time.Time) error {
	var iss string
	if json.Unmarshal(claims["iss"], &iss) != nil || iss == "" {
		return invalidStatement("software_statement has no iss claim")
	}
	for _, c := range []struct {
		name    string
		expired func(t time.Time) bool
	}{
		{"exp", func(t time.Time) bool { return !now.Before(t) }},
		{"nbf", func(t time.Time) bool { return now.Before(t) }},
	} {
		raw, ok := claims[c.name]
		if !ok {
			continue
		}
		var secs float64
		if err := json.Unmarshal(raw, &secs); err != nil {
			return invalidStatement(fmt.Sprintf("software_statement's %s claim must be a number", c.name))
		}
		if c.expired(time.Unix(int64(secs), 0)) {
			return invalidStatement(fmt.Sprintf("software_statement is not valid now (its %s claim)", c.name))
		}
	}
	return nil
}
