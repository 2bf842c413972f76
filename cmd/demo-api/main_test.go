package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
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
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		listen  string
		want    api.Config
		wantErr string
	}{
		{name: "defaults", env: secret, listen: "127.0.0.1:4000",
			want: api.Config{Issuer: "http://localhost:8080", ClientID: "demo-api", ClientSecret: "s3cret", Cache: 5 * time.Second, StartupTimeout: 30 * time.Second}},
		{name: "environment", env: map[string]string{
			"DEMO_API_LISTEN": ":4444", "AUTHZ_ISSUER": "https://login.example.com/", "DEMO_API_CLIENT_ID": "rs",
			"DEMO_API_CLIENT_SECRET": "x", "DEMO_API_CACHE": "0", "DEMO_API_STARTUP_TIMEOUT": "1m"}, listen: ":4444",
			want: api.Config{Issuer: "https://login.example.com", ClientID: "rs", ClientSecret: "x", Cache: 0, StartupTimeout: time.Minute}},
		{name: "flags win", env: map[string]string{"DEMO_API_LISTEN": ":4444", "DEMO_API_CLIENT_SECRET": "env", "DEMO_API_CACHE": "1s"},
			args:   []string{"--listen", ":5555", "--issuer", "http://127.0.0.1:9999", "--client-id", "me", "--client-secret", "flag", "--cache", "2s"},
			listen: ":5555",
			want:   api.Config{Issuer: "http://127.0.0.1:9999", ClientID: "me", ClientSecret: "flag", Cache: 2 * time.Second, StartupTimeout: 30 * time.Second}},
		{name: "no secret", wantErr: "DEMO_API_CLIENT_SECRET"},
		{name: "negative cache", env: secret, args: []string{"--cache", "-1s"}, wantErr: "negative"},
		{name: "bad cache variable", env: map[string]string{"DEMO_API_CLIENT_SECRET": "x", "DEMO_API_CACHE": "5"}, wantErr: "DEMO_API_CACHE"},
		{name: "bad issuer", env: secret, args: []string{"--issuer", "localhost:8080"}, wantErr: "not an http(s) URL"},
		{name: "stray argument", env: secret, args: []string{"serve"}, wantErr: "unexpected arguments"},
		{name: "unknown flag", env: secret, args: []string{"--nope"}, wantErr: "not defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			listen, cfg, err := parseFlags(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if listen != tc.listen || !reflect.DeepEqual(cfg, tc.want) {
				t.Fatalf("got %q %+v\nwant %q %+v", listen, cfg, tc.listen, tc.want)
			}
		})
	}
}

// TestRun starts the command as main does, serves a request and stops it
// the way SIGTERM does, by cancelling the context.
func TestRun(t *testing.T) {
	t.Parallel()
	a := demotest.StartAuthz(t, nil)
	web, apiClient := a.SeedDemo(t)
	a.CreateUser(t, "alice", "")
	tok := a.UserToken(t, web, "alice", "openid contacts")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stdoutR, stdoutW := io.Pipe()
	stderr := &demotest.SyncBuffer{}
	env := map[string]string{"AUTHZ_ISSUER": a.URL, "DEMO_API_CLIENT_SECRET": apiClient.ClientSecret}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0"}, func(k string) string { return env[k] }, stdoutW, stderr)
		stdoutW.Close()
	}()
	line, err := bufio.NewReader(stdoutR).ReadString('\n')
	if err != nil {
		t.Fatalf("no listening line: %v; stderr:\n%s", err, stderr)
	}
	base, ok := strings.CutPrefix(strings.TrimSpace(line), "demo-api listening on ")
	if !ok {
		t.Fatalf("stdout: %q", line)
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

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after the context was cancelled")
	}
	logs := stderr.String()
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
	path := filepath.Join(t.TempDir(), "demo.json")
	if err := os.WriteFile(path, []byte(`{"client_secrets": {"demo-bff": "bff-secret", "demo-api": "api-secret"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DEMO_CREDENTIALS": path, "AUTHZ_ISSUER": "http://localhost:8080"}
	_, cfg, err := parseFlags([]string{"--issuer-addr", "authz:8080"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimPrefix("demo-api-secret", "demo-"); cfg.ClientSecret != want || cfg.HTTPClient == nil || cfg.HTTPClient.Transport == nil {
		t.Errorf("secret %q (want %q), client %+v", cfg.ClientSecret, want, cfg.HTTPClient)
	}
	// A secret given wins over the file; a file without the client fails.
	env["DEMO_API_CLIENT_SECRET"] = "given"
	if _, cfg, err := parseFlags(nil, func(k string) string { return env[k] }, io.Discard); err != nil || cfg.ClientSecret != "given" || cfg.HTTPClient != nil {
		t.Errorf("%+v %v", cfg, err)
	}
	delete(env, "DEMO_API_CLIENT_SECRET")
	if _, _, err := parseFlags([]string{"--client-id", "other"}, func(k string) string { return env[k] }, io.Discard); err == nil || !strings.Contains(err.Error(), `no secret for client "other"`) {
		t.Errorf("unknown client: %v", err)
	}
	if _, _, err := parseFlags([]string{"--issuer-addr", "authz"}, func(k string) string { return env[k] }, io.Discard); err == nil || !strings.Contains(err.Error(), "host:port") {
		t.Errorf("bad issuer address: %v", err)
	}
}
