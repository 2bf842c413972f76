package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authz/authz/authz"
)

func TestParseFlags(t *testing.T) {
	t.Parallel()
	secret := map[string]string{"DEMO_BFF_CLIENT_SECRET": "s3cret"}
	defaultScopes := strings.Fields(DefaultScope)
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		listen  string
		want    Config
		wantErr string
	}{
		{name: "defaults", env: secret, listen: "127.0.0.1:3000",
			want: Config{Issuer: "http://localhost:8080", ClientID: "demo-bff", ClientSecret: "s3cret",
				APIURL: "http://localhost:4000", Scopes: defaultScopes, StartupTimeout: 30 * time.Second}},
		{name: "environment", listen: ":3333", env: map[string]string{
			"DEMO_BFF_LISTEN": ":3333", "AUTHZ_ISSUER": "https://login.example.com/", "DEMO_BFF_CLIENT_ID": "web",
			"DEMO_BFF_CLIENT_SECRET": "x", "DEMO_BFF_REDIRECT_URI": "https://app.example.com/cb",
			"DEMO_BFF_POST_LOGOUT_REDIRECT_URI": "https://app.example.com/bye", "DEMO_API_URL": "https://api.example.com/",
			"DEMO_BFF_SCOPE": "openid contacts", "DEMO_BFF_STARTUP_TIMEOUT": "1m"},
			want: Config{Issuer: "https://login.example.com", ClientID: "web", ClientSecret: "x",
				RedirectURI: "https://app.example.com/cb", PostLogoutRedirectURI: "https://app.example.com/bye",
				APIURL: "https://api.example.com", Scopes: []string{"openid", "contacts"}, StartupTimeout: time.Minute}},
		{name: "flags win", env: map[string]string{"DEMO_BFF_LISTEN": ":3333", "DEMO_BFF_CLIENT_SECRET": "env"},
			args: []string{"--listen", ":4444", "--issuer", "http://127.0.0.1:9", "--client-id", "me", "--client-secret", "flag",
				"--redirect-uri", "http://localhost:4444/callback", "--api", "http://127.0.0.1:4000", "--scope", "openid"},
			listen: ":4444",
			want: Config{Issuer: "http://127.0.0.1:9", ClientID: "me", ClientSecret: "flag", RedirectURI: "http://localhost:4444/callback",
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

func TestNewServerChecksRedirectPath(t *testing.T) {
	t.Parallel()
	for _, uri := range []string{"http://localhost:3000/", "http://localhost:3000/contacts"} {
		_, err := NewServer(t.Context(), Config{Issuer: "http://127.0.0.1:9", ClientID: "x", ClientSecret: "y",
			RedirectURI: uri, APIURL: "http://127.0.0.1:9", Scopes: []string{"openid"}}, testLogger())
		if err == nil || !strings.Contains(err.Error(), "redirect URI") {
			t.Errorf("%s: %v", uri, err)
		}
	}
}

func TestDiscovery(t *testing.T) {
	t.Parallel()
	a := startAuthz(t, nil)
	cfg := func(issuer string, timeout time.Duration) Config {
		return Config{Issuer: issuer, ClientID: "demo-bff", ClientSecret: "x", RedirectURI: "http://localhost:3000/callback",
			APIURL: "http://localhost:4000", Scopes: []string{"openid"}, StartupTimeout: timeout}
	}
	t.Run("waits for the issuer", func(t *testing.T) {
		a.unavailable.Store(1)
		s, err := NewServer(t.Context(), cfg(a.URL, 10*time.Second), testLogger())
		if err != nil {
			t.Fatal(err)
		}
		if s.endSessionURL != a.URL+"/oauth2/logout" || s.revocationURL != a.URL+"/oauth2/revoke" || s.oauth.Endpoint.TokenURL != a.URL+"/oauth2/token" {
			t.Errorf("endpoints: %q %q %+v", s.endSessionURL, s.revocationURL, s.oauth.Endpoint)
		}
		if n := a.unavailable.Load(); n >= 0 {
			t.Errorf("the failing request was not made (unavailable = %d)", n)
		}
	})
	t.Run("gives up at the deadline", func(t *testing.T) {
		gone := httptest.NewServer(http.NotFoundHandler())
		gone.Close()
		_, err := NewServer(t.Context(), cfg(gone.URL, 300*time.Millisecond), testLogger())
		if err == nil || !strings.Contains(err.Error(), "gave up after 300ms") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("another issuer fails at once", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err := NewServer(ctx, cfg(strings.Replace(a.URL, "127.0.0.1", "localhost", 1), time.Minute), testLogger())
		if err == nil || !strings.Contains(err.Error(), "did not match") {
			t.Fatalf("got %v", err)
		}
	})
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRun starts the command as main does, serves requests and stops it the
// way SIGTERM does, by cancelling the context.
func TestRun(t *testing.T) {
	t.Parallel()
	a := startAuthz(t, nil)
	web := a.createClient(t, authz.ClientMetadata{ClientID: "demo-bff", RedirectURIs: []string{"http://localhost:3000/callback"}})

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stdoutR, stdoutW := io.Pipe()
	stderr := &syncBuffer{}
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
