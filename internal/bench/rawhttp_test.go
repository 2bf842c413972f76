package bench

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The lean client reads what net/http's server writes: small bodies with
// Content-Length, large ones in chunks, redirects with Location, and a
// connection the server closes; and it keeps one connection across
// requests.
func TestRawClientReadsNetHTTPAnswers(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 1000) // over net/http's 2 KiB buffer: chunked
	conns := 0
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/small":
			_, _ = w.Write([]byte(r.Method + " " + r.URL.RawQuery + " " + string(body) + " " + r.Header.Get("Authorization")))
		case "/big":
			_, _ = w.Write([]byte(big))
		case "/redirect":
			http.Redirect(w, r, "https://rp.example/cb?code=abc", http.StatusSeeOther)
		case "/close":
			w.Header().Set("Connection", "close")
			_, _ = w.Write([]byte("bye"))
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns++
		}
	}
	srv.Start()
	defer srv.Close()
	c, err := newRawClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	ctx := context.Background()

	a, err := c.do(ctx, http.MethodPost, "/small?x=1", "Authorization: Basic YTpi\r\n", []byte("token=t"))
	if err != nil || a.status != 200 || string(a.body) != "POST x=1 token=t Basic YTpi" {
		t.Fatalf("small: %v %d %q", err, a.status, a.body)
	}
	a, err = c.do(ctx, http.MethodGet, "/big", "", nil)
	if err != nil || a.status != 200 || !bytes.Equal(a.body, []byte(big)) {
		t.Fatalf("big: %v %d, %d bytes", err, a.status, len(a.body))
	}
	a, err = c.do(ctx, http.MethodGet, "/redirect", "", nil)
	if err != nil || a.status != http.StatusSeeOther || a.location != "https://rp.example/cb?code=abc" {
		t.Fatalf("redirect: %v %d %q", err, a.status, a.location)
	}
	if conns != 1 {
		t.Fatalf("%d connections for three requests, want 1 kept alive", conns)
	}
	a, err = c.do(ctx, http.MethodGet, "/close", "", nil)
	if err != nil || string(a.body) != "bye" || c.conn != nil {
		t.Fatalf("close: %v %q, connection kept: %v", err, a.body, c.conn != nil)
	}
	a, err = c.do(ctx, http.MethodGet, "/small", "", nil)
	if err != nil || a.status != 200 || conns != 2 {
		t.Fatalf("after close: %v %d, %d connections", err, a.status, conns)
	}
}
