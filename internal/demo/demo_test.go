package demo

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHTTPClientIssuerAddr(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Host+r.URL.Path)
	}))
	defer srv.Close()
	// Nothing listens on port 1: only the override can reach the server.
	c, err := HTTPClient("http://authz.invalid:1", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get("http://authz.invalid:1/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "authz.invalid:1/.well-known/openid-configuration" {
		t.Errorf("got %q; want the request unchanged", body)
	}
	// Other hosts are dialled as they are.
	if _, err := c.Get("http://authz.invalid:2/"); err == nil {
		t.Error("another port of the issuer's host was sent to the issuer address")
	}
	// Without an address, the client is plain.
	if c, err := HTTPClient("http://localhost:8080", ""); err != nil || c.Transport != nil || c.Timeout != 10*time.Second {
		t.Errorf("plain client: %+v %v", c, err)
	}
	for _, bad := range []string{"authz", "http://authz:8080"} {
		if _, err := HTTPClient("http://localhost:8080", bad); err == nil || !strings.Contains(err.Error(), "host:port") {
			t.Errorf("issuer address %q: %v", bad, err)
		}
	}
}

func TestServeShutsDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }),
			slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after cancel: %v", err)
	}
	if _, err := http.Get("http://" + ln.Addr().String() + "/"); err == nil {
		t.Error("still serving after shutdown")
	}
}

func TestClientSecret(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "demo.json")
	if err := os.WriteFile(path, []byte(`{"alice_password": "x", "client_secrets": {"demo-bff": "s3cret"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := ClientSecret(path, "demo-bff"); got != "s3cret" || err != nil {
		t.Errorf("got %q, %v", got, err)
	}
	for _, tc := range []struct{ path, id, want string }{
		{path, "demo-api", `no secret for client "demo-api"`},
		{filepath.Join(dir, "missing.json"), "demo-bff", "no such file"},
		{dir, "demo-bff", "is a directory"},
	} {
		if _, err := ClientSecret(tc.path, tc.id); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s: %v, want %q", tc.path, tc.id, err, tc.want)
		}
	}
}
