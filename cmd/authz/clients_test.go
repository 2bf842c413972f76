package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	josev4 "github.com/go-jose/go-jose/v4"

	"github.com/authz/authz/storage"
)

func TestClientsUsage(t *testing.T) {
	t.Parallel()
	if out := mustRun(t, env{}, "", "help"); !strings.Contains(out, "clients rotate-secret ID") {
		t.Errorf("usage does not list clients rotate-secret:\n%s", out)
	}
	if out := mustRun(t, env{}, "", "clients", "-h"); !strings.Contains(out, "rotate-secret") {
		t.Errorf("clients -h does not list rotate-secret:\n%s", out)
	}
	out := mustRun(t, env{}, "", "clients", "rotate-secret", "-h")
	for _, want := range []string{"-grace", "-secret-stdin", "-database-url"} {
		if !strings.Contains(out, want) {
			t.Errorf("clients rotate-secret -h does not mention %s:\n%s", want, out)
		}
	}
	out = mustRun(t, env{}, "", "clients", "create", "-h")
	for _, want := range []string{"-jwks-file", "-jwks-uri", "-auth-signing-alg", "private_key_jwt"} {
		if !strings.Contains(out, want) {
			t.Errorf("clients create -h does not mention %s:\n%s", want, out)
		}
	}
}

func TestClientsRotateSecret(t *testing.T) {
	t.Parallel()
	e := dbEnv(t)
	store := openStore(t, e)
	created := parseClient(t, mustRun(t, e, "", "clients", "create", "--name", "Batch", "--id", "batch",
		"--grant-type", "client_credentials", "--scope", "reports"))
	stored := func() *storage.Client {
		t.Helper()
		c, err := store.Client(t.Context(), "batch")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	wantGraceUntil := func(c *storage.Client, grace time.Duration) {
		t.Helper()
		if c.RotatedSecretExpiresAt == nil {
			t.Fatal("no previous secret kept")
		}
		if d := time.Until(*c.RotatedSecretExpiresAt); d > grace || d < grace-time.Minute {
			t.Errorf("previous secret kept for %v more, want about %v", d, grace)
		}
	}

	// Default grace: 24 hours.
	out, stderr, err := runCLI(t, e, "", "clients", "rotate-secret", "batch")
	if err != nil {
		t.Fatal(err)
	}
	m := parseClient(t, out)
	if m.ClientID != "batch" || m.ClientSecret == "" || m.ClientSecret == created.ClientSecret || m.PreviousSecretExpiresAt == nil {
		t.Errorf("rotate-secret printed %+v", m)
	}
	if strings.Count(out, m.ClientSecret) != 1 || strings.Contains(stderr, m.ClientSecret) {
		t.Errorf("the new secret is not printed exactly once on stdout:\n%s\n%s", out, stderr)
	}
	if !strings.Contains(stderr, "only time") || !strings.Contains(stderr, "previous secret keeps working until") {
		t.Errorf("stderr %q does not warn that the secret is shown once and say until when the old one works", stderr)
	}
	c := stored()
	if err := storage.CompareSecret(c.SecretHash, m.ClientSecret); err != nil {
		t.Errorf("the stored hash is not the new secret's: %v", err)
	}
	if err := storage.CompareSecret(c.RotatedSecretHash, created.ClientSecret); err != nil {
		t.Errorf("the previous secret is not kept: %v", err)
	}
	wantGraceUntil(c, 24*time.Hour)

	// AUTHZ_CLIENT_SECRET_GRACE, then --grace, set it.
	e2 := env{"AUTHZ_DATABASE_URL": e["AUTHZ_DATABASE_URL"], "AUTHZ_CLIENT_SECRET_GRACE": "1h"}
	mustRun(t, e2, "", "clients", "rotate-secret", "batch")
	wantGraceUntil(stored(), time.Hour)
	mustRun(t, e2, "", "clients", "rotate-secret", "batch", "--grace", "10m")
	wantGraceUntil(stored(), 10*time.Minute)

	// A chosen secret, and no grace: the previous secret ends at once.
	const chosen = "an operator chose this secret"
	out, stderr, err = runCLI(t, e, chosen+"\n", "clients", "rotate-secret", "--grace", "0", "--secret-stdin", "batch")
	if err != nil {
		t.Fatal(err)
	}
	if m := parseClient(t, out); m.ClientSecret != chosen || m.PreviousSecretExpiresAt != nil {
		t.Errorf("rotate-secret --grace 0 --secret-stdin printed %+v", m)
	}
	if !strings.Contains(stderr, "previous secret no longer works") {
		t.Errorf("stderr %q does not say the previous secret stopped working", stderr)
	}
	c = stored()
	if err := storage.CompareSecret(c.SecretHash, chosen); err != nil || c.RotatedSecretHash != "" || c.RotatedSecretExpiresAt != nil {
		t.Errorf("after rotating without grace: compare %v, previous hash %q until %v", err, c.RotatedSecretHash, c.RotatedSecretExpiresAt)
	}

	mustRun(t, e, "", "clients", "create", "--name", "SPA", "--id", "spa", "--public", "--redirect-uri", "https://spa.example.com/cb")
	wantError(t, e, "", `client "nope" not found`, false, "clients", "rotate-secret", "nope")
	wantError(t, e, "", `client "spa" has no secret to rotate`, false, "clients", "rotate-secret", "spa")
	wantError(t, e, "short\n", "password too short", false, "clients", "rotate-secret", "batch", "--secret-stdin")
	wantError(t, env{"AUTHZ_DATABASE_URL": e["AUTHZ_DATABASE_URL"], "AUTHZ_CLIENT_SECRET_GRACE": "a day"}, "",
		`AUTHZ_CLIENT_SECRET_GRACE: "a day" is not a duration`, false, "clients", "rotate-secret", "batch")
	wantError(t, e, "", "expected one client id", true, "clients", "rotate-secret")
	wantError(t, e, "", "expected one client id", true, "clients", "rotate-secret", "a", "b")
	wantError(t, e, "", "--grace must not be negative", true, "clients", "rotate-secret", "batch", "--grace", "-1h")
	wantError(t, e, "", `invalid value "soon" for flag -grace`, true, "clients", "rotate-secret", "batch", "--grace", "soon")
	// None of the failures changed the secret.
	if err := storage.CompareSecret(stored().SecretHash, chosen); err != nil {
		t.Errorf("a failed rotation changed the secret: %v", err)
	}
}

// writeJWKS writes a JSON Web Key Set of the given keys to a file and
// returns its path.
func writeJWKS(t *testing.T, keys ...josev4.JSONWebKey) string {
	t.Helper()
	raw, err := json.Marshal(josev4.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestClientsCreatePrivateKeyJWT(t *testing.T) {
	t.Parallel()
	e := dbEnv(t)
	store := openStore(t, e)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaPublic := josev4.JSONWebKey{Key: &rsaKey.PublicKey, KeyID: "rsa-1", Use: "sig"}
	ecPublic := josev4.JSONWebKey{Key: &ecKey.PublicKey, KeyID: "ec-1", Use: "sig"}
	rsaFile := writeJWKS(t, rsaPublic)

	// --jwks-file alone asks for private_key_jwt; the algorithm follows
	// the key.
	out, stderr, err := runCLI(t, e, "", "clients", "create", "--name", "Signer", "--id", "signer",
		"--grant-type", "client_credentials", "--jwks-file", rsaFile)
	if err != nil {
		t.Fatal(err)
	}
	m := parseClient(t, out)
	if m.TokenEndpointAuthMethod != "private_key_jwt" || m.TokenEndpointAuthSigningAlg != "RS256" || m.ClientSecret != "" {
		t.Errorf("created client = %+v", m)
	}
	if strings.Contains(out, "client_secret\"") || stderr != "" {
		t.Errorf("a private_key_jwt client printed a secret or a note:\n%s\n%s", out, stderr)
	}
	c, err := store.Client(t.Context(), "signer")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := storage.SigningKeySet(c.JWKS)
	if err != nil || len(keys.Keys) != 1 || keys.Keys[0].KeyID != "rsa-1" || c.SecretHash != "" {
		t.Errorf("stored jwks %s (%v), secret hash %q", c.JWKS, err, c.SecretHash)
	}

	// An EC key with its algorithm named.
	m = parseClient(t, mustRun(t, e, "", "clients", "create", "--name", "EC", "--grant-type", "client_credentials",
		"--auth-method", "private_key_jwt", "--jwks-file", writeJWKS(t, ecPublic), "--auth-signing-alg", "ES256"))
	if m.TokenEndpointAuthMethod != "private_key_jwt" || m.TokenEndpointAuthSigningAlg != "ES256" {
		t.Errorf("created client = %+v", m)
	}

	// A key set at a URL.
	m = parseClient(t, mustRun(t, e, "", "clients", "create", "--name", "Remote", "--id", "remote",
		"--redirect-uri", "https://remote.example.com/cb", "--jwks-uri", "https://remote.example.com/jwks.json", "--auth-signing-alg", "PS256"))
	if m.TokenEndpointAuthMethod != "private_key_jwt" || m.JWKSURI != "https://remote.example.com/jwks.json" || m.TokenEndpointAuthSigningAlg != "PS256" {
		t.Errorf("created client = %+v", m)
	}
	if c, err := store.Client(t.Context(), "remote"); err != nil || c.JWKSURI != "https://remote.example.com/jwks.json" || len(c.JWKS) != 0 {
		t.Errorf("stored client: %+v (%v)", c, err)
	}

	notJSON := filepath.Join(t.TempDir(), "keys.pem")
	if err := os.WriteFile(notJSON, []byte("-----BEGIN PUBLIC KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	private := writeJWKS(t, josev4.JSONWebKey{Key: rsaKey, KeyID: "oops", Use: "sig"})
	cc := []string{"--name", "X", "--grant-type", "client_credentials"}
	tests := []struct {
		name  string
		args  []string
		want  string
		usage bool
	}{
		{"missing file", append(cc, "--jwks-file", filepath.Join(t.TempDir(), "nope.json")), "--jwks-file: open ", false},
		{"not JSON", append(cc, "--jwks-file", notJSON), "not JSON; want a JSON Web Key Set", false},
		{"private key", append(cc, "--jwks-file", private), "jwks key 1 is a private or symmetric key", false},
		{"both", append(cc, "--jwks-file", rsaFile, "--jwks-uri", "https://x.example.com/jwks"), "exactly one of jwks and jwks_uri", false},
		{"http jwks_uri", append(cc, "--jwks-uri", "http://x.example.com/jwks"), "jwks_uri must be an https URL", false},
		{"unsupported algorithm", append(cc, "--jwks-file", rsaFile, "--auth-signing-alg", "HS256"), `token_endpoint_auth_signing_alg "HS256" is not supported`, false},
		{"algorithm the key cannot verify", append(cc, "--jwks-file", rsaFile, "--auth-signing-alg", "ES256"), "jwks has no signing key for token_endpoint_auth_signing_alg ES256", false},
		{"keys with a secret method", append(cc, "--jwks-uri", "https://x.example.com/jwks", "--auth-method", "client_secret_basic"), "used only with token_endpoint_auth_method private_key_jwt", false},
		{"keys for a public client", []string{"--name", "X", "--public", "--redirect-uri", "https://x.example.com/cb", "--jwks-uri", "https://x.example.com/jwks"}, "used only with token_endpoint_auth_method private_key_jwt", false},
		{"algorithm without keys", append(cc, "--auth-signing-alg", "RS256"), "token_endpoint_auth_signing_alg is used only with", false},
		{"secret with keys", append(cc, "--jwks-file", rsaFile, "--secret", "s3cret-s3cret"), "authenticates with its keys and has no secret", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			wantError(t, e, "", tc.want, tc.usage, append([]string{"clients", "create"}, tc.args...)...)
		})
	}
}

func TestUsersSharedValidation(t *testing.T) {
	t.Parallel()
	e := dbEnv(t)
	// The rules come from package authz, as for the admin API.
	wantError(t, e, "a good password\n", "email_verified cannot be true without an email address", false,
		"users", "create", "--username", "u1", "--password-stdin", "--email-verified")
	wantError(t, e, strings.Repeat("x", 1025)+"\n", "password too long: at most 1024 bytes", false,
		"users", "create", "--username", "u1", "--password-stdin")
	wantError(t, e, "a good password\n", "name must not contain control characters", false,
		"users", "create", "--username", "u1", "--password-stdin", "--name", "a\x07b")
	out := mustRun(t, e, "a good password\n", "users", "create", "--username", "u1", "--password-stdin",
		"--email", "u1@example.com", "--email-verified")
	var u storage.User
	if err := json.Unmarshal([]byte(out), &u); err != nil || !u.EmailVerified || u.Email != "u1@example.com" {
		t.Errorf("users create printed %s (%v)", out, err)
	}
	if strings.Contains(out, "password") || strings.Contains(out, "argon2") {
		t.Errorf("users create shows the password hash:\n%s", out)
	}
}

// TestClientsCreateRegistrationMetadata: the OpenID Connect Registration
// flags reach the stored client, and bad values are refused before the
// database is touched.
func TestClientsCreateRegistrationMetadata(t *testing.T) {
	t.Parallel()
	e := dbEnv(t)
	out, _, err := runCLI(t, e, "", "clients", "create", "--name", "Native", "--id", "native", "--public",
		"--application-type", "native", "--redirect-uri", "com.example.app:/cb", "--redirect-uri", "http://127.0.0.1/cb",
		"--redirect-uri", "https://app.example.com/claimed",
		"--tos-uri", "https://app.example.com/tos", "--policy-uri", "https://app.example.com/privacy",
		"--subject-type", "public",
		"--default-max-age", "3600", "--require-auth-time", "--userinfo-alg", "ES256",
		"--software-id", "app", "--software-version", "1.2", "--contact", "ops@app.example.com",
		"--default-acr-value", "urn:acr:1", "--initiate-login-uri", "https://app.example.com/login",
		"--frontchannel-logout-uri", "https://app.example.com/fc", "--backchannel-logout-uri", "https://app.example.com/bc")
	if err != nil {
		t.Fatal(err)
	}
	m := parseClient(t, out)
	if m.ApplicationType != "native" || m.TOSURI != "https://app.example.com/tos" || m.PolicyURI != "https://app.example.com/privacy" ||
		m.SubjectType != "public" || m.DefaultMaxAge != 3600 ||
		!m.RequireAuthTime || m.UserinfoSignedResponseAlg != "ES256" || m.SoftwareID != "app" || m.SoftwareVersion != "1.2" ||
		len(m.Contacts) != 1 || len(m.DefaultACRValues) != 1 || m.InitiateLoginURI == "" || m.FrontchannelLogoutURI == "" || m.BackchannelLogoutURI == "" {
		t.Errorf("created client = %+v", m)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--application-type", "desktop"}, `application_type "desktop" is not supported`},
		{[]string{"--application-type", "native", "--redirect-uri", "http://dev.example.com/cb"}, "a native app's http redirect URI must be to a loopback address"},
		{[]string{"--tos-uri", "javascript:alert(1)"}, "tos_uri must be an https URL"},
		{[]string{"--userinfo-alg", "HS256"}, `userinfo_signed_response_alg "HS256" is not supported`},
		{[]string{"--default-max-age", "-1"}, "default_max_age"},
		{[]string{"--subject-type", "secret"}, `subject_type "secret" is not supported`},
		{[]string{"--sector-identifier-uri", "http://app.example.com/s.json"}, "sector_identifier_uri must be an https URL"},
	} {
		args := append([]string{"clients", "create", "--name", "X", "--redirect-uri", "https://app.example.com/cb"}, tc.args...)
		wantError(t, e, "", tc.want, false, args...)
	}
}
