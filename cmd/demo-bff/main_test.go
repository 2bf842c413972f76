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

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/demo/bff"
	"github.com/authz/authz/internal/demo/demotest"
	"github.com/authz/authz/storage/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestParseFlags(t *testing.T) {
	t.Parallel()
	secret := map[string]string{"DEMO_BFF_CLIENT_SECRET": "s3cret"}
	defaultScopes := strings.Fields(bff.DefaultScope)
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		listen  string
		want    bff.Config
		wantErr string
	}{
		{name: "defaults", env: secret, listen: "127.0.0.1:3000",
			want: bff.Config{Issuer: "http://localhost:8080", ClientID: "demo-bff", ClientSecret: "s3cret",
				APIURL: "http://localhost:4000", Scopes: defaultScopes, StartupTimeout: 30 * time.Second}},
		{name: "environment", listen: ":3333", env: map[string]string{
			"DEMO_BFF_LISTEN": ":3333", "AUTHZ_ISSUER": "https://login.example.com/", "DEMO_BFF_CLIENT_ID": "web",
			"DEMO_BFF_CLIENT_SECRET": "x", "DEMO_BFF_REDIRECT_URI": "https://app.example.com/cb",
			"DEMO_BFF_POST_LOGOUT_REDIRECT_URI": "https://app.example.com/bye", "DEMO_API_URL": "https://api.example.com/",
			"DEMO_BFF_SCOPE": "openid contacts", "DEMO_BFF_STARTUP_TIMEOUT": "1m"},
			want: bff.Config{Issuer: "https://login.example.com", ClientID: "web", ClientSecret: "x",
				RedirectURI: "https://app.example.com/cb", PostLogoutRedirectURI: "https://app.example.com/bye",
				APIURL: "https://api.example.com", Scopes: []string{"openid", "contacts"}, StartupTimeout: time.Minute}},
		{name: "flags win", env: map[string]string{"DEMO_BFF_LISTEN": ":3333", "DEMO_BFF_CLIENT_SECRET": "env"},
			args: []string{"--listen", ":4444", "--issuer", "http://127.0.0.1:9", "--client-id", "me", "--client-secret", "flag",
				"--redirect-uri", "http://localhost:4444/callback", "--api", "http://127.0.0.1:4000", "--scope", "openid"},
			listen: ":4444",
			want: bff.Config{Issuer: "http://127.0.0.1:9", ClientID: "me", ClientSecret: "flag", RedirectURI: "http://localhost:4444/callback",
				APIURL: "http://127.0.0.1:4000", Scopes: []string{"openid"}, StartupTimeout: 30 * time.Second}},
		{name: "no secret", wantErr: "DEMO_BFF_CLIENT_SECRET"},
		{name: "bad redirect URI", env: secret, args: []string{"--redirect-uri", "/callback"}, wantErr: "redirect URI"},
		{name: "bad API URL", env: secret, args: []string{"--api", "localhost:4000"}, wantErr: "API URL"},
		{name: "no scopes", env: secret, args: []string{"--scope", " "}, wantErr: "no scopes"},
		{name: "bad timeout variable", env: map[string]string{"DEMO_BFF_CLIENT_SECRET": "x", "DEMO_BFF_STARTUP_TIMEOUT": "9"}, wantErr: "DEMO_BFF_STARTUP_TIMEOUT"},
		{name: "stray argument", env: secret, args: []string{"serve"}, wantErr: "unexpected arguments"},
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

func TestLocalOrigin(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{
		"127.0.0.1:3000":    "localhost:3000",
		"[::1]:3000":        "localhost:3000",
		"0.0.0.0:3000":      "localhost:3000",
		"[::]:3000":         "localhost:3000",
		"localhost:3001":    "localhost:3001",
		"192.168.1.20:3000": "192.168.1.20:3000",
		"[fd00::1]:3000":    "[fd00::1]:3000",
	} {
		if got := localOrigin(addr); got != want {
			t.Errorf("localOrigin(%q) = %q, want %q", addr, got, want)
		}
	}
}

// TestRun starts the command as main does, serves requests and stops it the
// way SIGTERM does, by cancelling the context.
func TestRun(t *testing.T) {
	t.Parallel()
	a := demotest.StartAuthz(t, nil)
	web := a.CreateClient(t, authz.ClientMetadata{ClientID: "demo-bff", RedirectURIs: []string{"http://localhost:3000/callback"}})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stdoutR, stdoutW := io.Pipe()
	stderr := &demotest.SyncBuffer{}
	env := map[string]string{"AUTHZ_ISSUER": a.URL, "DEMO_BFF_CLIENT_SECRET": web.ClientSecret}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--listen", "127.0.0.1:0"}, func(k string) string { return env[k] }, stdoutW, stderr)
		stdoutW.Close()
	}()
	line, err := bufio.NewReader(stdoutR).ReadString('\n')
	if err != nil {
		t.Fatalf("no listening line: %v; stderr:\n%s", err, stderr)
	}
	// "demo-bff listening on http://127.0.0.1:PORT; open http://localhost:PORT"
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), "demo-bff listening on ")
	base, open, ok2 := strings.Cut(rest, "; open ")
	if !ok || !ok2 {
		t.Fatalf("stdout: %q", line)
	}
	port := base[strings.LastIndex(base, ":")+1:]
	if open != "http://localhost:"+port {
		t.Errorf("the redirect URI was not derived from the listen address: %q", line)
	}

	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %s", resp.Status)
	}
	// Opened at 127.0.0.1, the page sends the browser to localhost.
	resp, err = client.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != open+"/" {
		t.Errorf("GET /: %s %s", resp.Status, resp.Header.Get("Location"))
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
	if logs := stderr.String(); !strings.Contains(logs, "shutting down") || strings.Contains(logs, web.ClientSecret) {
		t.Errorf("logs:\n%s", logs)
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
	if want := strings.TrimPrefix("demo-bff-secret", "demo-"); cfg.ClientSecret != want || cfg.HTTPClient == nil || cfg.HTTPClient.Transport == nil {
		t.Errorf("secret %q (want %q), client %+v", cfg.ClientSecret, want, cfg.HTTPClient)
	}
	// A secret given wins over the file; a file without the client fails.
	env["DEMO_BFF_CLIENT_SECRET"] = "given"
	if _, cfg, err := parseFlags(nil, func(k string) string { return env[k] }, io.Discard); err != nil || cfg.ClientSecret != "given" || cfg.HTTPClient != nil {
		t.Errorf("%+v %v", cfg, err)
	}
	delete(env, "DEMO_BFF_CLIENT_SECRET")
	if _, _, err := parseFlags([]string{"--client-id", "other"}, func(k string) string { return env[k] }, io.Discard); err == nil || !strings.Contains(err.Error(), `no secret for client "other"`) {
		t.Errorf("unknown client: %v", err)
	}
	if _, _, err := parseFlags([]string{"--issuer-addr", "authz"}, func(k string) string { return env[k] }, io.Discard); err == nil || !strings.Contains(err.Error(), "host:port") {
		t.Errorf("bad issuer address: %v", err)
	}
}
