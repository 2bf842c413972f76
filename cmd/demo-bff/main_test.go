package main

import (
	"net/http"
	"os"
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
	demotest.RunFlagsCases(t, parseFlags, []demotest.FlagsCase[bff.Config]{
		{Name: "defaults", Env: secret, Listen: "127.0.0.1:3000",
			Want: bff.Config{Issuer: "http://localhost:8080", ClientID: "demo-bff", ClientSecret: "s3cret",
				APIURL: "http://localhost:4000", Scopes: defaultScopes, StartupTimeout: 30 * time.Second}},
		{Name: "environment", Listen: ":3333", Env: map[string]string{
			"DEMO_BFF_LISTEN": ":3333", "AUTHZ_ISSUER": "https://login.example.com/", "DEMO_BFF_CLIENT_ID": "web",
			"DEMO_BFF_CLIENT_SECRET": "x", "DEMO_BFF_REDIRECT_URI": "https://app.example.com/cb",
			"DEMO_BFF_POST_LOGOUT_REDIRECT_URI": "https://app.example.com/bye", "DEMO_API_URL": "https://api.example.com/",
			"DEMO_BFF_SCOPE": "openid contacts", "DEMO_BFF_STARTUP_TIMEOUT": "1m"},
			Want: bff.Config{Issuer: "https://login.example.com", ClientID: "web", ClientSecret: "x",
				RedirectURI: "https://app.example.com/cb", PostLogoutRedirectURI: "https://app.example.com/bye",
				APIURL: "https://api.example.com", Scopes: []string{"openid", "contacts"}, StartupTimeout: time.Minute}},
		{Name: "flags win", Env: map[string]string{"DEMO_BFF_LISTEN": ":3333", "DEMO_BFF_CLIENT_SECRET": "env"},
			Args: []string{"--listen", ":4444", "--issuer", "http://127.0.0.1:9", "--client-id", "me", "--client-secret", "flag",
				"--redirect-uri", "http://localhost:4444/callback", "--api", "http://127.0.0.1:4000", "--scope", "openid"},
			Listen: ":4444",
			Want: bff.Config{Issuer: "http://127.0.0.1:9", ClientID: "me", ClientSecret: "flag", RedirectURI: "http://localhost:4444/callback",
				APIURL: "http://127.0.0.1:4000", Scopes: []string{"openid"}, StartupTimeout: 30 * time.Second}},
		{Name: "resource", Env: map[string]string{"DEMO_BFF_CLIENT_SECRET": "s3cret", "DEMO_BFF_RESOURCE": "http://localhost:4000"}, Listen: "127.0.0.1:3000",
			Want: bff.Config{Issuer: "http://localhost:8080", ClientID: "demo-bff", ClientSecret: "s3cret",
				APIURL: "http://localhost:4000", Resource: "http://localhost:4000", Scopes: defaultScopes, StartupTimeout: 30 * time.Second}},
		{Name: "bad resource", Env: secret, Args: []string{"--resource", "api#x"}, WantErr: "resource"},
		{Name: "no secret", WantErr: "DEMO_BFF_CLIENT_SECRET"},
		{Name: "bad redirect URI", Env: secret, Args: []string{"--redirect-uri", "/callback"}, WantErr: "redirect URI"},
		{Name: "bad API URL", Env: secret, Args: []string{"--api", "localhost:4000"}, WantErr: "API URL"},
		{Name: "no scopes", Env: secret, Args: []string{"--scope", " "}, WantErr: "no scopes"},
		{Name: "bad timeout variable", Env: map[string]string{"DEMO_BFF_CLIENT_SECRET": "x", "DEMO_BFF_STARTUP_TIMEOUT": "9"}, WantErr: "DEMO_BFF_STARTUP_TIMEOUT"},
		{Name: "stray argument", Env: secret, Args: []string{"serve"}, WantErr: "unexpected arguments"},
	})
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

	env := map[string]string{"AUTHZ_ISSUER": a.URL, "DEMO_BFF_CLIENT_SECRET": web.ClientSecret}
	cmd := demotest.StartCommand(t, run, []string{"--listen", "127.0.0.1:0"}, env)
	// "demo-bff listening on http://127.0.0.1:PORT; open http://localhost:PORT"
	rest, ok := strings.CutPrefix(cmd.Line, "demo-bff listening on ")
	base, open, ok2 := strings.Cut(rest, "; open ")
	if !ok || !ok2 {
		t.Fatalf("stdout: %q", cmd.Line)
	}
	port := base[strings.LastIndex(base, ":")+1:]
	if open != "http://localhost:"+port {
		t.Errorf("the redirect URI was not derived from the listen address: %q", cmd.Line)
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

	cmd.Stop(t)
	if logs := cmd.Stderr.String(); !strings.Contains(logs, "shutting down") || strings.Contains(logs, web.ClientSecret) {
		t.Errorf("logs:\n%s", logs)
	}
}

// The secret can come from the credentials file authz dev writes, and
// --issuer-addr gives the clients a dialer of their own.
func TestParseFlagsCredentialsAndIssuerAddr(t *testing.T) {
	t.Parallel()
	demotest.CheckCredentialsFlags(t, parseFlags, "demo-bff", "DEMO_BFF_CLIENT_SECRET", func(cfg bff.Config) (string, *http.Client) {
		return cfg.ClientSecret, cfg.HTTPClient
	})
}
