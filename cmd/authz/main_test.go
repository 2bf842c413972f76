package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/migrations"
	"github.com/authz/authz/storage"
	"github.com/authz/authz/storage/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// env is a fake environment.
type env map[string]string

func (e env) get(name string) string { return e[name] }

// dbEnv is an environment pointing at a fresh, migrated database.
func dbEnv(t *testing.T) env {
	return env{"AUTHZ_DATABASE_URL": pgtest.NewDatabase(t)}
}

// runCLI runs the command line with stdin and returns what it printed.
func runCLI(t *testing.T, e env, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(t.Context(), args, e.get, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), err
}

// mustRun runs the command line and fails the test if it fails.
func mustRun(t *testing.T, e env, stdin string, args ...string) string {
	t.Helper()
	stdout, stderr, err := runCLI(t, e, stdin, args...)
	if err != nil {
		t.Fatalf("authz %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout, stderr)
	}
	return stdout
}

// wantError runs the command line and checks that it fails with a message
// containing want, as a usage error (exit 2) or not (exit 1).
func wantError(t *testing.T, e env, stdin string, want string, usage bool, args ...string) error {
	t.Helper()
	stdout, _, err := runCLI(t, e, stdin, args...)
	if err == nil {
		t.Fatalf("authz %s succeeded, want an error containing %q; stdout:\n%s", strings.Join(args, " "), want, stdout)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("authz %s: error %q does not contain %q", strings.Join(args, " "), err, want)
	}
	wantCode := 1
	if usage {
		wantCode = 2
	}
	if got := exitCode(err); got != wantCode {
		t.Errorf("authz %s: exit code %d, want %d (error %q)", strings.Join(args, " "), got, wantCode, err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("authz %s: error spans several lines: %q", strings.Join(args, " "), err)
	}
	return err
}

// openStore opens a store on the environment's database.
func openStore(t *testing.T, e env) *storage.Store {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), e["AUTHZ_DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return storage.New(pool)
}

// emptyDatabase returns the URL of a database without any schema, created
// next to a pgtest database and dropped when the test ends.
func emptyDatabase(t *testing.T) string {
	t.Helper()
	admin := pgtest.NewDatabase(t)
	name := "authz_empty_" + strings.ToLower(rand.Text())
	exec := func(ctx context.Context, sql string) error {
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec(t.Context(), "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create empty database: %v", err)
	}
	// Registered after NewDatabase's cleanup, so it runs first, while the
	// admin database still exists.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop empty database: %v", err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return admin + " dbname=" + name // keyword/value form: the last setting wins
	}
	u.Path, u.RawPath = "/"+name, ""
	return u.String()
}

func parseClient(t *testing.T, out string) authz.ClientMetadata {
	t.Helper()
	var m authz.ClientMetadata
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("output is not a client as JSON: %v\n%s", err, out)
	}
	return m
}

// TestVersion: "authz version" and "authz --version" print the version;
// a bare "authz" is a usage error (exit 2), not a success.
func TestVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"--version"}} {
		stdout := mustRun(t, env{}, "", args...)
		if !strings.HasPrefix(stdout, "authz ") || strings.TrimSpace(strings.TrimPrefix(stdout, "authz ")) == "" {
			t.Errorf("authz %v printed %q, want \"authz <version>\"", args, stdout)
		}
	}
	_, stderr, err := runCLI(t, env{}, "")
	if exitCode(err) != 2 || !strings.Contains(stderr, "serve") {
		t.Errorf("bare authz: exit %d, stderr %q; want exit 2 with the usage", exitCode(err), stderr)
	}
}

func TestUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		stdout, _, err := runCLI(t, env{}, "", args...)
		if err != nil {
			t.Errorf("authz %v: %v", args, err)
		}
		for _, want := range []string{"serve", "migrate", "clients create", "users create", "janitor",
			"AUTHZ_DATABASE_URL", "AUTHZ_ISSUER", "AUTHZ_LISTEN", "AUTHZ_SECRETS", "AUTHZ_ACCESS_TOKEN_LIFESPAN",
			"AUTHZ_TEMPLATES_DIR", "AUTHZ_LOG_LEVEL"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("authz %v: usage does not mention %s:\n%s", args, want, stdout)
			}
		}
	}
	stdout := mustRun(t, env{}, "", "clients", "create", "-h")
	for _, want := range []string{"-redirect-uri", "-grant-type", "-public", "-database-url"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("clients create -h does not mention %s:\n%s", want, stdout)
		}
	}

	usageErrors := []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"clients"}, "clients: missing subcommand"},
		{[]string{"users", "rename"}, `unknown subcommand "rename"`},
		{[]string{"migrate", "down"}, `unexpected argument "down"`},
		{[]string{"--nope"}, "flag provided but not defined: -nope"},
		{[]string{"clients", "get"}, "expected one client id"},
		{[]string{"janitor", "--batch", "0"}, "--batch must be at least 1"},
		{[]string{"clients", "list", "--format", "yaml"}, "--format must be table or json"},
	}
	for _, tc := range usageErrors {
		wantError(t, env{}, "", tc.want, true, tc.args...)
	}
	if got := exitCode(errors.New("boom")); got != 1 {
		t.Errorf("exitCode(plain error) = %d, want 1", got)
	}
}

func TestOneLine(t *testing.T) {
	t.Parallel()
	got := oneLine("failed to connect:\n\thost a: refused\n\thost b: refused\n")
	if want := "failed to connect: host a: refused host b: refused"; got != want {
		t.Errorf("oneLine = %q, want %q", got, want)
	}
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	e := env{"AUTHZ_DATABASE_URL": emptyDatabase(t)}
	files, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no migrations embedded: %v", err)
	}
	first := strings.TrimSuffix(files[0], ".sql")
	version := len(files)

	out := mustRun(t, e, "", "migrate", "status")
	if !regexp.MustCompile(`(?m)^` + first + `\s+pending$`).MatchString(out) {
		t.Errorf("migrate status on an empty database:\n%s\nwant %s pending", out, first)
	}

	out = mustRun(t, e, "", "migrate")
	if !strings.Contains(out, "applied "+first+"\n") {
		t.Errorf("first migrate printed:\n%s\nwant it to report applying %s", out, first)
	}

	out = mustRun(t, e, "", "migrate")
	if want := "schema is up to date (version " + strconv.Itoa(version) + ")\n"; out != want {
		t.Errorf("second migrate printed %q, want %q", out, want)
	}

	out = mustRun(t, e, "", "migrate", "status")
	for _, f := range files {
		name := strings.TrimSuffix(f, ".sql")
		if !regexp.MustCompile(`(?m)^` + name + `\s+applied$`).MatchString(out) {
			t.Errorf("migrate status after migrating:\n%s\nwant %s applied", out, name)
		}
	}
}

func TestClientsCreate(t *testing.T) {
	t.Parallel()

	t.Run("generated secret", func(t *testing.T) {
		t.Parallel()
		e := dbEnv(t)
		out, stderr, err := runCLI(t, e, "", "clients", "create", "--name", "My App",
			"--redirect-uri", "https://app.example.com/callback", "--scope", "openid profile")
		if err != nil {
			t.Fatal(err)
		}
		m := parseClient(t, out)
		raw, err := base64.RawURLEncoding.DecodeString(m.ClientSecret)
		if len(m.ClientSecret) != 43 || err != nil || len(raw) != 32 {
			t.Errorf("client_secret %q: want 43 characters of base64url (32 bytes)", m.ClientSecret)
		}
		if n := strings.Count(out, m.ClientSecret); n != 1 {
			t.Errorf("secret printed %d times, want once", n)
		}
		if strings.Contains(stderr, m.ClientSecret) {
			t.Error("secret printed to stderr")
		}
		if !strings.Contains(stderr, "only time") {
			t.Errorf("stderr %q does not warn that the secret is shown once", stderr)
		}
		if m.ClientID == "" || m.ClientName != "My App" || m.Scope != "openid profile" ||
			m.TokenEndpointAuthMethod != "client_secret_basic" ||
			strings.Join(m.GrantTypes, ",") != "authorization_code,refresh_token" ||
			strings.Join(m.ResponseTypes, ",") != "code" {
			t.Errorf("created client = %+v", m)
		}

		got := mustRun(t, e, "", "clients", "get", m.ClientID)
		if strings.Contains(got, "client_secret\"") || strings.Contains(got, m.ClientSecret) {
			t.Errorf("clients get shows the secret:\n%s", got)
		}
		if parseClient(t, got).ClientID != m.ClientID {
			t.Errorf("clients get printed another client:\n%s", got)
		}

		stored, err := openStore(t, e).Client(t.Context(), m.ClientID)
		if err != nil {
			t.Fatal(err)
		}
		if stored.SecretHash == "" || strings.Contains(stored.SecretHash, m.ClientSecret) {
			t.Errorf("stored secret_hash %q is not a hash of the secret", stored.SecretHash)
		}
		if err := storage.CompareSecret(stored.SecretHash, m.ClientSecret); err != nil {
			t.Errorf("stored hash does not match the printed secret: %v", err)
		}
	})

	t.Run("given secret is hashed with argon2id", func(t *testing.T) {
		t.Parallel()
		e := dbEnv(t)
		const secret = "an operator chose this secret"
		m := parseClient(t, mustRun(t, e, "", "clients", "create", "--name", "Backend", "--id", "backend",
			"--redirect-uri", "https://backend.example.com/cb", "--secret", secret, "--auth-method", "client_secret_post"))
		if m.ClientSecret != secret || m.ClientID != "backend" || m.TokenEndpointAuthMethod != "client_secret_post" {
			t.Errorf("created client = %+v", m)
		}
		stored, err := openStore(t, e).Client(t.Context(), "backend")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(stored.SecretHash, "$argon2id$") {
			t.Errorf("stored secret_hash %q is not an Argon2id hash", stored.SecretHash)
		}
		if err := storage.CompareSecret(stored.SecretHash, secret); err != nil {
			t.Errorf("stored hash does not match the secret: %v", err)
		}
	})

	t.Run("public client has no secret", func(t *testing.T) {
		t.Parallel()
		e := dbEnv(t)
		out, stderr, err := runCLI(t, e, "", "clients", "create", "--name", "SPA", "--public", "--id", "spa", "--scope", "openid", "--application-type", "native",
			"--redirect-uri", "http://localhost:3000/callback", "--redirect-uri", "com.example.app:/oauth2redirect")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, "client_secret") || stderr != "" {
			t.Errorf("public client printed a secret or a note:\n%s\n%s", out, stderr)
		}
		m := parseClient(t, out)
		if m.TokenEndpointAuthMethod != "none" || len(m.RedirectURIs) != 2 {
			t.Errorf("created client = %+v", m)
		}
		stored, err := openStore(t, e).Client(t.Context(), "spa")
		if err != nil {
			t.Fatal(err)
		}
		if !stored.Public || stored.SecretHash != "" {
			t.Errorf("stored public=%v secret_hash=%q", stored.Public, stored.SecretHash)
		}
	})

	t.Run("no scope", func(t *testing.T) {
		t.Parallel()
		m := parseClient(t, mustRun(t, dbEnv(t), "", "clients", "create", "--name", "X", "--public", "--redirect-uri", "https://x.example.com/cb"))
		if m.Scope != authz.DefaultClientScope {
			t.Errorf("client without --scope got scope %q, want the default %q", m.Scope, authz.DefaultClientScope)
		}
	})

	t.Run("logo and home page", func(t *testing.T) {
		t.Parallel()
		e := dbEnv(t)
		m := parseClient(t, mustRun(t, e, "", "clients", "create", "--name", "Logo", "--redirect-uri", "https://x.example.com/cb",
			"--logo-uri", "https://x.example.com/logo.png", "--client-uri", "https://x.example.com/"))
		if m.LogoURI != "https://x.example.com/logo.png" || m.ClientURI != "https://x.example.com/" {
			t.Errorf("created client = %+v", m)
		}
		if _, _, err := runCLI(t, e, "", "clients", "create", "--name", "Logo", "--redirect-uri", "https://x.example.com/cb",
			"--logo-uri", "http://x.example.com/logo.png"); err == nil || !strings.Contains(err.Error(), "logo_uri must be an https URL") {
			t.Errorf("http logo: err = %v", err)
		}
	})

	t.Run("client credentials only", func(t *testing.T) {
		t.Parallel()
		e := dbEnv(t)
		m := parseClient(t, mustRun(t, e, "", "clients", "create", "--name", "Batch job",
			"--grant-type", "client_credentials", "--audience", "https://api.example.com", "--scope", "reports:read"))
		if len(m.ResponseTypes) != 0 || len(m.RedirectURIs) != 0 || m.ClientSecret == "" ||
			strings.Join(m.Audience, ",") != "https://api.example.com" {
			t.Errorf("created client = %+v", m)
		}
	})

	t.Run("every option", func(t *testing.T) {
		t.Parallel()
		e := dbEnv(t)
		m := parseClient(t, mustRun(t, e, "", "clients", "create", "--name", "Portal", "--id", "portal",
			"--redirect-uri", "https://portal.example.com/cb",
			"--grant-type", "authorization_code", "--grant-type", "refresh_token,client_credentials",
			"--response-type", "code", "--scope", "openid  email", "--skip-consent",
			"--audience", "a", "--audience", "b",
			"--post-logout-redirect-uri", "https://portal.example.com/bye"))
		if strings.Join(m.GrantTypes, ",") != "authorization_code,refresh_token,client_credentials" ||
			!m.SkipConsent || m.Scope != "openid email" || strings.Join(m.Audience, ",") != "a,b" ||
			strings.Join(m.PostLogoutRedirectURIs, ",") != "https://portal.example.com/bye" {
			t.Errorf("created client = %+v", m)
		}
	})
}

func TestClientsCreateErrors(t *testing.T) {
	t.Parallel()
	e := dbEnv(t)
	mustRun(t, e, "", "clients", "create", "--name", "Taken", "--id", "taken", "--redirect-uri", "https://a.example.com/cb")

	redirect := []string{"--redirect-uri", "https://app.example.com/cb"}
	tests := []struct {
		name  string
		args  []string
		want  string
		usage bool
	}{
		{"duplicate id", append([]string{"--name", "X", "--id", "taken"}, redirect...), `client "taken" already exists`, false},
		{"relative redirect URI", []string{"--name", "X", "--redirect-uri", "/callback"}, `redirect URI "/callback" is not absolute`, false},
		{"redirect URI with fragment", []string{"--name", "X", "--redirect-uri", "https://app.example.com/cb#frag"}, "must not contain a fragment", false},
		{"unknown grant type", append([]string{"--name", "X", "--grant-type", "password"}, redirect...), `unknown grant type "password"`, false},
		{"unknown auth method", append([]string{"--name", "X", "--auth-method", "client_secret_jwt"}, redirect...), `unknown token_endpoint_auth_method "client_secret_jwt"`, false},
		{"private_key_jwt without keys", append([]string{"--name", "X", "--auth-method", "private_key_jwt"}, redirect...), "private_key_jwt needs exactly one of jwks and jwks_uri", false},
		{"no redirect URI", []string{"--name", "X"}, "at least one redirect URI is required", false},
		{"public with a secret", append([]string{"--name", "X", "--public", "--secret", "s3cret-s3cret"}, redirect...), "has no secret", false},
		{"missing name", redirect, "--name is required", true},
		{"public with another auth method", append([]string{"--name", "X", "--public", "--auth-method", "client_secret_post"}, redirect...), "--public means --auth-method none", true},
		{"stray argument", append([]string{"--name", "X", "extra"}, redirect...), `unexpected argument "extra"`, true},
		{"unknown flag", append([]string{"--name", "X", "--client-secret", "x"}, redirect...), "flag provided but not defined: -client-secret", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			wantError(t, e, "", tc.want, tc.usage, append([]string{"clients", "create"}, tc.args...)...)
		})
	}
}

func TestClientsListGetDelete(t *testing.T) {
	t.Parallel()
	e := dbEnv(t)

	if out := mustRun(t, e, "", "clients", "list", "--format", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("clients list --format json with no clients = %q, want []", out)
	}
	_, stderr, err := runCLI(t, e, "", "clients", "list")
	if err != nil || !strings.Contains(stderr, "no clients") {
		t.Errorf("clients list with no clients: err %v, stderr %q", err, stderr)
	}

	mustRun(t, e, "", "clients", "create", "--name", "One", "--id", "one", "--redirect-uri", "https://one.example.com/cb")
	mustRun(t, e, "", "clients", "create", "--name", "Two", "--id", "two", "--public", "--redirect-uri", "https://two.example.com/cb")

	table := mustRun(t, e, "", "clients", "list")
	for _, want := range []string{"CLIENT ID", "one", "One", "client_secret_basic", "two", "none", "https://two.example.com/cb"} {
		if !strings.Contains(table, want) {
			t.Errorf("clients list does not show %q:\n%s", want, table)
		}
	}
	var list []authz.ClientMetadata
	out := mustRun(t, e, "", "clients", "list", "--format", "json")
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 || list[0].ClientID != "one" || list[1].ClientID != "two" {
		t.Errorf("clients list --format json = %s (%v)", out, err)
	}
	if strings.Contains(out, "client_secret\"") {
		t.Errorf("clients list shows a secret:\n%s", out)
	}

	wantError(t, e, "", `client "nope" not found`, false, "clients", "get", "nope")
	wantError(t, e, "", `client "nope" not found`, false, "clients", "delete", "nope")

	// Flags may follow the id.
	url := e["AUTHZ_DATABASE_URL"]
	if out := mustRun(t, env{}, "", "clients", "delete", "one", "--database-url", url); out != "deleted client one\n" {
		t.Errorf("clients delete printed %q", out)
	}
	wantError(t, e, "", `client "one" not found`, false, "clients", "get", "one")
	wantError(t, e, "", `client "one" not found`, false, "clients", "delete", "one")
}

func TestUsers(t *testing.T) {
	t.Parallel()
	e := dbEnv(t)
	store := openStore(t, e)
	ctx := t.Context()

	out := mustRun(t, e, "correct horse\n", "users", "create", "--username", "alice", "--password-stdin",
		"--email", "alice@example.com", "--name", "Alice Liddell")
	var u storage.User
	if err := json.Unmarshal([]byte(out), &u); err != nil {
		t.Fatalf("users create output is not a user: %v\n%s", err, out)
	}
	if u.ID == "" || u.Username != "alice" || u.Email != "alice@example.com" || u.Name != "Alice Liddell" || u.Disabled {
		t.Errorf("created user = %+v", u)
	}
	if strings.Contains(out, "argon2") || strings.Contains(out, "password") || strings.Contains(out, "correct horse") {
		t.Errorf("users create shows the password or its hash:\n%s", out)
	}
	if _, err := store.Authenticate(ctx, "alice", "correct horse"); err != nil {
		t.Errorf("authenticate with the password given on stdin: %v", err)
	}

	wantError(t, e, "another password\n", `username "ALICE" is taken`, false,
		"users", "create", "--username", "ALICE", "--password-stdin")

	// A password without a trailing newline is read too.
	mustRun(t, e, "bob's password", "users", "create", "--username", "bob", "--password-stdin")
	if _, err := store.Authenticate(ctx, "bob", "bob's password"); err != nil {
		t.Errorf("authenticate bob: %v", err)
	}

	table := mustRun(t, e, "", "users", "list")
	if !regexp.MustCompile(`(?m)^alice\s+`+u.ID+`\s+alice@example.com\s+Alice Liddell\s+active`).MatchString(table) ||
		!strings.Contains(table, "bob") {
		t.Errorf("users list:\n%s", table)
	}
	var list []storage.User
	out = mustRun(t, e, "", "users", "list", "--format", "json")
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 || list[0].Username != "alice" || list[1].Username != "bob" {
		t.Errorf("users list --format json = %s (%v)", out, err)
	}

	if out := mustRun(t, e, "", "users", "disable", "Alice"); out != "disabled user alice\n" {
		t.Errorf("users disable printed %q", out)
	}
	if _, err := store.Authenticate(ctx, "alice", "correct horse"); !errors.Is(err, storage.ErrInvalidCredentials) {
		t.Errorf("authenticate a disabled user: %v, want ErrInvalidCredentials", err)
	}
	if table := mustRun(t, e, "", "users", "list"); !regexp.MustCompile(`(?m)^alice\s.*\sdisabled\s`).MatchString(table) {
		t.Errorf("users list does not show alice disabled:\n%s", table)
	}
	if out := mustRun(t, e, "", "users", "enable", "alice"); out != "enabled user alice\n" {
		t.Errorf("users enable printed %q", out)
	}
	if _, err := store.Authenticate(ctx, "alice", "correct horse"); err != nil {
		t.Errorf("authenticate a re-enabled user: %v", err)
	}

	cookie, _, err := store.CreateLoginSession(ctx, u.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	out = mustRun(t, e, "battery staple\n", "users", "set-password", "alice", "--password-stdin")
	if out != "changed the password of user alice; their sessions and tokens are revoked\n" {
		t.Errorf("users set-password printed %q", out)
	}
	if _, err := store.LoginSession(ctx, cookie); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("login session after a password change: %v, want it ended", err)
	}
	if _, err := store.Authenticate(ctx, "alice", "battery staple"); err != nil {
		t.Errorf("authenticate with the new password: %v", err)
	}
	if _, err := store.Authenticate(ctx, "alice", "correct horse"); !errors.Is(err, storage.ErrInvalidCredentials) {
		t.Errorf("authenticate with the old password: %v, want ErrInvalidCredentials", err)
	}

	wantError(t, e, "", `user "carol" not found`, false, "users", "disable", "carol")
	wantError(t, e, "", `user "carol" not found`, false, "users", "enable", "carol")
	wantError(t, e, "a good password\n", `user "carol" not found`, false, "users", "set-password", "carol", "--password-stdin")
	wantError(t, e, "short\n", "password too short", false, "users", "set-password", "alice", "--password-stdin")
	wantError(t, e, "a good password\n", "--password-stdin is required", true, "users", "set-password", "alice")
}

func TestUsersCreateErrors(t *testing.T) {
	t.Parallel()
	e := dbEnv(t)
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  string
		usage bool
	}{
		{"empty stdin", "", []string{"--username", "u1", "--password-stdin"}, "empty password on stdin", false},
		{"empty first line", "\nsecond line\n", []string{"--username", "u1", "--password-stdin"}, "empty password on stdin", false},
		{"short password", "1234567\n", []string{"--username", "u1", "--password-stdin"}, "password too short: it has 7 characters; at least 8 are required", false},
		{"username with a space", "a good password\n", []string{"--username", "alice smith", "--password-stdin"}, "must not contain spaces or control characters", false},
		{"username with a control character", "a good password\n", []string{"--username", "alice\x07", "--password-stdin"}, "must not contain spaces or control characters", false},
		{"username too long", "a good password\n", []string{"--username", strings.Repeat("a", 65), "--password-stdin"}, "is 65 characters long; it must have 1 to 64", false},
		{"bad email", "a good password\n", []string{"--username", "u1", "--password-stdin", "--email", "not-an-email"}, `email "not-an-email" is not an address`, false},
		{"password flag", "", []string{"--username", "u1", "--password", "hunter22"}, "--password is not accepted: a password in a command line stays in shell history; use --password-stdin", true},
		{"no --password-stdin", "a good password\n", []string{"--username", "u1"}, "--password-stdin is required", true},
		{"no --username", "a good password\n", []string{"--password-stdin"}, "--username is required", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			wantError(t, e, tc.stdin, tc.want, tc.usage, append([]string{"users", "create"}, tc.args...)...)
		})
	}
	// 64 characters is fine, and so are non-ASCII letters.
	mustRun(t, e, "a good password\n", "users", "create", "--username", strings.Repeat("é", 64), "--password-stdin")
}

func TestDatabaseURL(t *testing.T) {
	t.Parallel()

	t.Run("none configured", func(t *testing.T) {
		t.Parallel()
		for _, args := range [][]string{{"migrate"}, {"clients", "list"}, {"users", "list"}, {"janitor"}} {
			wantError(t, env{}, "", "no database configured: set AUTHZ_DATABASE_URL (e.g. postgres://user:pass@localhost:5432/authz)", false, args...)
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()
		e := env{"AUTHZ_DATABASE_URL": "postgres://u:hunter2@127.0.0.1:1/db?connect_timeout=2"}
		for _, args := range [][]string{{"migrate"}, {"migrate", "status"}, {"clients", "list"}, {"clients", "get", "x"},
			{"users", "list"}, {"janitor"},
			{"clients", "create", "--name", "X", "--redirect-uri", "https://x.example.com/cb"}} {
			err := wantError(t, e, "", "cannot reach the database at postgres://u@127.0.0.1:1/db: ", false, args...)
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Errorf("authz %v: error shows the password: %v", args, err)
			}
		}
		err := wantError(t, e, "a good password\n", "127.0.0.1:1", false, "users", "create", "--username", "u", "--password-stdin")
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error shows the password: %v", err)
		}
	})

	t.Run("no such database", func(t *testing.T) {
		t.Parallel()
		u, err := url.Parse(pgtest.NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		u.Path = "/no_such_database"
		wantError(t, env{"AUTHZ_DATABASE_URL": u.String()}, "", `database "no_such_database" does not exist`, false, "clients", "list")
	})

	t.Run("malformed", func(t *testing.T) {
		t.Parallel()
		e := env{"AUTHZ_DATABASE_URL": "postgres://u:hunter2@db.example.com:notaport/authz"}
		err := wantError(t, e, "", "invalid database URL (expected postgres://user:pass@host:5432/dbname): invalid port", false, "clients", "list")
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error shows the password: %v", err)
		}
	})

	t.Run("precedence", func(t *testing.T) {
		t.Parallel()
		good := pgtest.NewDatabase(t)
		const bad = "postgres://u@127.0.0.1:1/db?connect_timeout=2"
		mustRun(t, env{"DATABASE_URL": good}, "", "clients", "list")
		wantError(t, env{"AUTHZ_DATABASE_URL": bad, "DATABASE_URL": good}, "", "127.0.0.1:1", false, "clients", "list")
		mustRun(t, env{"AUTHZ_DATABASE_URL": bad}, "", "clients", "list", "--database-url", good)
		mustRun(t, env{"AUTHZ_DATABASE_URL": bad}, "", "--database-url", good, "clients", "list")
		wantError(t, env{}, "", "127.0.0.1:1", false, "--database-url", good, "clients", "list", "--database-url", bad)
	})
}

func TestParseError(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want, secret string }{
		{"postgres://authz:hunter2@db:port/authz", "invalid port", "hunter2"},
		{"postgres://authz:hunter%32@db:port/authz", "invalid port", "hunter"},
		{"postgres://authz:hunter2@db/authz?sslmode=bogus", "sslmode is invalid", "hunter2"},
		{"host=db password=hunter2 port=x", "invalid port", "hunter2"},
		{"host=db password='hun ter2' port=x", "invalid port", "hun ter2"},
	}
	for _, tc := range tests {
		_, err := pgxpool.ParseConfig(tc.in)
		if err == nil {
			t.Fatalf("%q parsed", tc.in)
		}
		got := parseError(tc.in, err).Error()
		if !strings.HasPrefix(got, "invalid database URL") || !strings.Contains(got, tc.want) || strings.Contains(got, tc.secret) {
			t.Errorf("parseError(%q) = %q, want it to say %q and not show %q", tc.in, got, tc.want, tc.secret)
		}
	}
}

func TestRedactedURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"postgres://alice:secret@db.example.com/authz", "postgres://alice@db.example.com:5432/authz"},
		{"host=db port=6543 user=bob password=secret dbname=x", "postgres://bob@db:6543/x"},
		{"postgres://alice:secret@[::1]:5433/authz", "postgres://alice@[::1]:5433/authz"},
		{"postgres://alice:secret@/authz?host=/run/postgresql", "postgres://alice@/authz?host=/run/postgresql"},
	}
	for _, tc := range tests {
		cfg, err := pgx.ParseConfig(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := redactedURL(cfg.Config); got != tc.want {
			t.Errorf("redactedURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestJanitor(t *testing.T) {
	t.Parallel()
	e := dbEnv(t)
	ctx := t.Context()
	past := storage.New(openStore(t, e).Pool(), storage.WithClock(func() time.Time { return time.Now().Add(-48 * time.Hour) }))
	u := storage.User{Username: "alice"}
	if err := past.CreateUser(ctx, &u, "correct horse"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, _, err := past.CreateLoginSession(ctx, u.ID, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	out := mustRun(t, e, "", "janitor", "--batch", "2")
	if !regexp.MustCompile(`(?m)^login_sessions\s+3$`).MatchString(out) || !regexp.MustCompile(`(?m)^total\s+3$`).MatchString(out) {
		t.Errorf("janitor printed:\n%s\nwant 3 login_sessions deleted", out)
	}
	out = mustRun(t, e, "", "janitor")
	if !regexp.MustCompile(`(?m)^total\s+0$`).MatchString(out) {
		t.Errorf("second janitor run printed:\n%s\nwant nothing deleted", out)
	}
}
