package authz_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	josev4 "github.com/go-jose/go-jose/v4"

	"github.com/authz/authz/authz"
)

// statementSigner signs software statements with an ES256 key.
type statementSigner struct {
	key *ecdsa.PrivateKey
	kid string
}

func newStatementSigner(t *testing.T, kid string) statementSigner {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return statementSigner{key, kid}
}

func (s statementSigner) public() josev4.JSONWebKey {
	return josev4.JSONWebKey{Key: &s.key.PublicKey, KeyID: s.kid, Algorithm: "ES256", Use: "sig"}
}

func (s statementSigner) sign(t *testing.T, claims map[string]any) string {
	t.Helper()
	signer, err := josev4.NewSigner(josev4.SigningKey{Algorithm: josev4.ES256, Key: s.key},
		(&josev4.SignerOptions{}).WithType("JWT").WithHeader("kid", s.kid))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSoftwareStatement: a statement signed by a trusted key is verified,
// its claims win over the plain JSON ones, it is stored and echoed; any
// other statement is invalid_software_statement; and what the merged
// metadata asks meets the registration policy like any request.
func TestSoftwareStatement(t *testing.T) {
	t.Parallel()
	trusted, other := newStatementSigner(t, "vendor-1"), newStatementSigner(t, "vendor-1")
	e := newEnv(t, func(c *authz.Config) {
		c.Registration = authz.RegistrationOpen
		c.SoftwareStatementKeys = &josev4.JSONWebKeySet{Keys: []josev4.JSONWebKey{trusted.public()}}
	})
	a := withAdmin(t, e)
	claims := func(extra ...any) map[string]any {
		c := map[string]any{"iss": "https://vendor.example", "software_id": "vendor-app", "client_name": "From The Statement",
			"redirect_uris": []string{appCallback}, "exp": e.clock.Now().Add(time.Hour).Unix()}
		for i := 0; i+1 < len(extra); i += 2 {
			if extra[i+1] == nil {
				delete(c, extra[i].(string))
			} else {
				c[extra[i].(string)] = extra[i+1]
			}
		}
		return c
	}
	body := func(stmt string) map[string]any {
		return map[string]any{"client_name": "Plain JSON", "software_version": "1.0", "redirect_uris": []string{"https://other.example.com/cb"}, "software_statement": stmt}
	}

	stmt := trusted.sign(t, claims())
	m := e.dcrRegister(t, "", body(stmt))
	if m.ClientName != "From The Statement" || m.SoftwareID != "vendor-app" || m.SoftwareVersion != "1.0" ||
		len(m.RedirectURIs) != 1 || m.RedirectURIs[0] != appCallback || m.SoftwareStatement != stmt {
		t.Fatalf("registered %+v", m)
	}

	refused := []struct {
		name, stmt, code, mentions string
	}{
		{"untrusted key", other.sign(t, claims()), "invalid_software_statement", "not signed by a key this server trusts"},
		{"not a JWT", "not.a.jwt", "invalid_software_statement", "not a JWT"},
		{"no iss", trusted.sign(t, claims("iss", nil)), "invalid_software_statement", "iss"},
		{"expired", trusted.sign(t, claims("exp", e.clock.Now().Add(-time.Second).Unix())), "invalid_software_statement", "exp"},
		{"not yet valid", trusted.sign(t, claims("nbf", e.clock.Now().Add(time.Hour).Unix())), "invalid_software_statement", "nbf"},
		{"skip_consent", trusted.sign(t, claims("skip_consent", true)), "invalid_client_metadata", "skip_consent"},
		{"audience", trusted.sign(t, claims("audience", []string{"https://api.example.com"})), "invalid_client_metadata", "audience"},
		{"lifespan", trusted.sign(t, claims("access_token_lifespan", 86400)), "invalid_client_metadata", "access_token_lifespan"},
		{"scope beyond the policy", trusted.sign(t, claims("scope", "openid admin")), "invalid_client_metadata", `"admin"`},
		{"client_credentials under open registration", trusted.sign(t, claims("grant_types", []string{"client_credentials"}, "redirect_uris", nil)), "invalid_client_metadata", "client_credentials"},
		{"request objects", trusted.sign(t, claims("request_uris", []string{"https://vendor.example/r"})), "invalid_client_metadata", "request objects"},
		{"bad redirect", trusted.sign(t, claims("redirect_uris", []string{"http://evil.example/cb"})), "invalid_redirect_uri", "evil.example"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			wantRegError(t, e.dcrCall(t, http.MethodPost, "/oauth2/register", "", body(tc.stmt)), http.StatusBadRequest, tc.code, tc.mentions)
		})
	}
	if n := e.count(t, `SELECT count(*) FROM clients`); n != 1 {
		t.Errorf("%d clients, want 1: a refused statement registered a client", n)
	}

	// The admin API verifies statements the same way.
	var c authz.ClientMetadata
	a.adminRequest(t, http.MethodPost, "/admin/clients", "", body(stmt)).want(t, http.StatusCreated, &c)
	if c.ClientName != "From The Statement" || c.SoftwareStatement != stmt {
		t.Errorf("admin created %+v", c)
	}
	if r := a.adminRequest(t, http.MethodPost, "/admin/clients", "", body(other.sign(t, claims()))); r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "invalid_software_statement") {
		t.Errorf("admin API with an untrusted statement: %d %s", r.status, r.body)
	}
	// A patch that leaves the stored statement alone does not re-verify it
	// (it may have expired since); one that sends a statement does.
	e.clock.Advance(2 * time.Hour)
	var patched authz.ClientMetadata
	a.adminRequest(t, http.MethodPatch, "/admin/clients/"+c.ClientID, "application/merge-patch+json", `{"software_version": "1.1"}`).want(t, http.StatusOK, &patched)
	if patched.SoftwareVersion != "1.1" || patched.SoftwareStatement != stmt {
		t.Errorf("patched %+v", patched)
	}
	if r := a.adminRequest(t, http.MethodPatch, "/admin/clients/"+c.ClientID, "application/merge-patch+json", map[string]any{"software_statement": stmt}); r.status != http.StatusBadRequest || !strings.Contains(string(r.body), "exp") {
		t.Errorf("patch with an expired statement: %d %s", r.status, r.body)
	}
}

// TestSoftwareStatementWithoutKeys: with no trusted keys configured every
// statement is refused, and saying so.
func TestSoftwareStatementWithoutKeys(t *testing.T) {
	t.Parallel()
	e := dcrEnv(t, authz.RegistrationOpen)
	s := newStatementSigner(t, "k")
	body := dcrWebApp()
	body["software_statement"] = s.sign(t, map[string]any{"iss": "https://vendor.example"})
	wantRegError(t, e.dcrCall(t, http.MethodPost, "/oauth2/register", "", body), http.StatusBadRequest, "invalid_software_statement", "AUTHZ_SOFTWARE_STATEMENT_KEYS")
	// An empty statement asks for nothing.
	body["software_statement"] = ""
	e.dcrRegister(t, "", body)
}

// TestSoftwareStatementKeysConfig: AUTHZ_SOFTWARE_STATEMENT_KEYS is read at
// start; a file that is not a set of public signing keys stops start-up
// with one line naming the setting.
func TestSoftwareStatementKeysConfig(t *testing.T) {
	t.Parallel()
	s := newStatementSigner(t, "k")
	dir := t.TempDir()
	write := func(name string, v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	env := func(path string) func(string) string {
		return func(k string) string {
			if k == "AUTHZ_SOFTWARE_STATEMENT_KEYS" {
				return path
			}
			return ""
		}
	}
	good := write("good.json", josev4.JSONWebKeySet{Keys: []josev4.JSONWebKey{s.public()}})
	cfg, err := authz.ConfigFromEnv(env(good))
	if err != nil || cfg.SoftwareStatementKeys == nil || len(cfg.SoftwareStatementKeys.Keys) != 1 {
		t.Fatalf("good file: %v, %+v", err, cfg.SoftwareStatementKeys)
	}
	for name, path := range map[string]string{
		"missing":     filepath.Join(dir, "missing.json"),
		"not JSON":    write("bad.json", "not a key set"),
		"empty":       write("empty.json", map[string]any{"keys": []any{}}),
		"private key": write("private.json", josev4.JSONWebKeySet{Keys: []josev4.JSONWebKey{{Key: s.key, KeyID: "k", Algorithm: "ES256"}}}),
		"HS256":       write("hs.json", josev4.JSONWebKeySet{Keys: []josev4.JSONWebKey{{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "k", Algorithm: "HS256"}}}),
	} {
		_, err := authz.ConfigFromEnv(env(path))
		if err == nil || !strings.HasPrefix(err.Error(), "AUTHZ_SOFTWARE_STATEMENT_KEYS") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}
