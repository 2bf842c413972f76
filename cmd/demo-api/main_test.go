package main

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/internal/demo/api"
	"github.com/authz/authz/internal/demo/demotest"
	"github.com/authz/authz/storage/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestParseFlags(t *testing.T) {
	t.Parallel()
	secret := map[string]string{"DEMO_API_CLIENT_SECRET": "s3cret"}
	demotest.RunFlagsCases(t, parseFlags, []demotest.FlagsCase[api.Config]{
		{Name: "defaults", Env: secret, Listen: "127.0.0.1:4000",
			Want: api.Config{Issuer: "http://localhost:8080", Verify: "introspect", ClientID: "demo-api", ClientSecret: "s3cret", Cache: 5 * time.Second, StartupTimeout: 30 * time.Second}},
		{Name: "environment", Env: map[string]string{
			"DEMO_API_LISTEN": ":4444", "AUTHZ_ISSUER": "https://login.example.com/", "DEMO_API_CLIENT_ID": "rs",
			"DEMO_API_CLIENT_SECRET": "x", "DEMO_API_CACHE": "0", "DEMO_API_STARTUP_TIMEOUT": "1m"}, Listen: ":4444",
			Want: api.Config{Issuer: "https://login.example.com", Verify: "introspect", ClientID: "rs", ClientSecret: "x", Cache: 0, StartupTimeout: time.Minute}},
		{Name: "flags win", Env: map[string]string{"DEMO_API_LISTEN": ":4444", "DEMO_API_CLIENT_SECRET": "env", "DEMO_API_CACHE": "1s"},
			Args:   []string{"--listen", ":5555", "--issuer", "http://127.0.0.1:9999", "--client-id", "me", "--client-secret", "flag", "--cache", "2s"},
			Listen: ":5555",
			Want:   api.Config{Issuer: "http://127.0.0.1:9999", Verify: "introspect", ClientID: "me", ClientSecret: "flag", Cache: 2 * time.Second, StartupTimeout: 30 * time.Second}},
		{Name: "jwt needs no client", Args: []string{"--verify", "jwt"}, Listen: "127.0.0.1:4000",
			Want: api.Config{Issuer: "http://localhost:8080", Verify: "jwt", Resource: "http://localhost:4000", Cache: 5 * time.Second, StartupTimeout: 30 * time.Second}},
		{Name: "jwt from the environment", Env: map[string]string{"DEMO_API_VERIFY": "jwt", "DEMO_API_RESOURCE": "https://api.example.com"}, Listen: "127.0.0.1:4000",
			Want: api.Config{Issuer: "http://localhost:8080", Verify: "jwt", Resource: "https://api.example.com", Cache: 5 * time.Second, StartupTimeout: 30 * time.Second}},
		{Name: "jwt with a bad resource", Args: []string{"--verify", "jwt", "--resource", "api"}, WantErr: "resource"},
		{Name: "unknown verify", Env: secret, Args: []string{"--verify", "offline"}, WantErr: "want introspect or jwt"},
		{Name: "no secret", WantErr: "DEMO_API_CLIENT_SECRET"},
		{Name: "negative cache", Env: secret, Args: []string{"--cache", "-1s"}, WantErr: "negative"},
		{Name: "bad cache variable", Env: map[string]string{"DEMO_API_CLIENT_SECRET": "x", "DEMO_API_CACHE": "5"}, WantErr: "DEMO_API_CACHE"},
		{Name: "bad issuer", Env: secret, Args: []string{"--issuer", "localhost:8080"}, WantErr: "not an http(s) URL"},
		{Name: "stray argument", Env: secret, Args: []string{"serve"}, WantErr: "unexpected arguments"},
		{Name: "unknown flag", Env: secret, Args: []string{"--nope"}, WantErr: "not defined"},
	})
}

// TestRun starts the command as main does, serves a request and stops it
// the way SIGTERM does, by cancelling the context.
func TestRun(t *testing.T) {
	t.Parallel()
	a := demotest.StartAuthz(t, nil)
	web, apiClient := a.SeedDemo(t)
	a.CreateUser(t, "alice", "")
	tok := a.UserToken(t, web, "alice", "openid contacts")

	env := map[string]string{"AUTHZ_ISSUER": a.URL, "DEMO_API_CLIENT_SECRET": apiClient.ClientSecret}
	cmd := demotest.StartCommand(t, run, []string{"--listen", "127.0.0.1:0"}, env)
	base, ok := strings.CutPrefix(cmd.Line, "demo-api listening on ")
	if !ok {
		t.Fatalf("stdout: %q", cmd.Line)
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/contacts", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /contacts: %s", resp.Status)
	}

	cmd.Stop(t)
	logs := cmd.Stderr.String()
	if !strings.Contains(logs, "shutting down") || !strings.Contains(logs, "path=/contacts status=200") {
		t.Errorf("logs:\n%s", logs)
	}
	if strings.Contains(logs, tok.AccessToken) || strings.Contains(logs, apiClient.ClientSecret) {
		t.Errorf("a token or secret was logged:\n%s", logs)
	}
}

// The secret can come from the credentials file authz dev writes, and
// --issuer-addr gives the clients a dialer of their own.
func TestParseFlagsCredentialsAndIssuerAddr(t *testing.T) {
	t.Parallel()
	demotest.CheckCredentialsFlags(t, parseFlags, "demo-api", "DEMO_API_CLIENT_SECRET", func(cfg api.Config) (string, *http.Client) {
		return cfg.ClientSecret, cfg.HTTPClient
	})
}
