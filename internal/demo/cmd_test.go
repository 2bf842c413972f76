package demo

import (
	"context"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEnv(t *testing.T) {
	t.Parallel()
	env := Env(mapEnv{"SET": "v", "D": "2s", "BAD": "5"}.Get)
	if got := env.Or("SET", "def"); got != "v" {
		t.Errorf("Or(SET) = %q", got)
	}
	if got := env.Or("UNSET", "def"); got != "def" {
		t.Errorf("Or(UNSET) = %q", got)
	}
	if d, err := env.Duration("D", time.Second); d != 2*time.Second || err != nil {
		t.Errorf("Duration(D) = %v, %v", d, err)
	}
	if d, err := env.Duration("UNSET", time.Second); d != time.Second || err != nil {
		t.Errorf("Duration(UNSET) = %v, %v", d, err)
	}
	if _, err := env.Duration("BAD", 30*time.Second); err == nil || err.Error() != `BAD: "5" is not a duration like 30s` {
		t.Errorf("Duration(BAD): %v", err)
	}
}

func TestFlags(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "demo.json")
	if err := os.WriteFile(path, []byte(`{"client_secrets": {"demo-api": "api-secret"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	parse := func(env map[string]string, args ...string) (*Flags, error) {
		f := NewFlags("demo-x", Env(mapEnv(env).Get), io.Discard)
		return f, f.Parse(args)
	}

	f, err := parse(nil)
	if err != nil || f.Issuer != "http://localhost:8080" {
		t.Fatalf("defaults: %q %v", f.Issuer, err)
	}
	if c, err := f.HTTPClient(); c != nil || err != nil {
		t.Errorf("HTTPClient without --issuer-addr: %v %v", c, err)
	}
	if s, err := f.ClientSecret("", "demo-api"); s != "" || err != nil {
		t.Errorf("ClientSecret without --credentials: %q %v", s, err)
	}

	f, err = parse(map[string]string{"AUTHZ_ISSUER": "https://login.example.com/", "DEMO_CREDENTIALS": path, "DEMO_ISSUER_ADDR": "authz:8080"})
	if err != nil || f.Issuer != "https://login.example.com" {
		t.Fatalf("environment: %q %v", f.Issuer, err)
	}
	if c, err := f.HTTPClient(); c == nil || c.Transport == nil || err != nil {
		t.Errorf("HTTPClient with --issuer-addr: %+v %v", c, err)
	}
	for _, tc := range []struct{ given, id, want, wantErr string }{
		{"", "demo-api", "api-secret", ""},
		{"given", "demo-api", "given", ""},
		{"given", "other", "given", ""},
		{"", "other", "", `no secret for client "other"`},
	} {
		s, err := f.ClientSecret(tc.given, tc.id)
		if s != tc.want || (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("ClientSecret(%q, %q) = %q, %v", tc.given, tc.id, s, err)
		}
	}

	f, err = parse(nil, "--issuer", "http://127.0.0.1:9/", "--issuer-addr", "authz")
	if err != nil || f.Issuer != "http://127.0.0.1:9" {
		t.Fatalf("flags: %q %v", f.Issuer, err)
	}
	if _, err := f.HTTPClient(); err == nil || !strings.Contains(err.Error(), "host:port") {
		t.Errorf("bad issuer address: %v", err)
	}
	if _, err := parse(nil, "--issuer", "x", "serve", "now"); err == nil || err.Error() != "unexpected arguments: serve now" {
		t.Errorf("stray arguments: %v", err)
	}
	if _, err := parse(nil, "-help"); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-help: %v", err)
	}
}

type mapEnv map[string]string

func (m mapEnv) Get(k string) string { return m[k] }

func TestCommand(t *testing.T) {
	t.Parallel()
	// The configuration is the arguments, the address LISTEN.
	parse := func(args []string, getenv func(string) string, _ io.Writer) (string, []string, error) {
		if len(args) > 0 && args[0] == "bad" {
			return "", nil, errors.New("bad flags")
		}
		return getenv("LISTEN"), args, nil
	}
	getenv := mapEnv{"LISTEN": "127.0.0.1:0"}.Get
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })

	t.Run("serves until cancelled", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		addr := make(chan string, 1)
		run := Command(parse, func(_ context.Context, cfg []string, at Listening) (http.Handler, error) {
			if strings.Join(cfg, " ") != "x y" || at.Stdout != io.Discard {
				t.Errorf("start got %q, %v", cfg, at.Stdout)
			}
			at.Logger.Info("listening")
			addr <- at.Addr.String()
			return ok, nil
		})
		stderr := &strings.Builder{}
		done := make(chan error, 1)
		go func() { done <- run(ctx, []string{"x", "y"}, getenv, io.Discard, stderr) }()
		url := "http://" + <-addr + "/"
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
		if _, err := http.Get(url); err == nil {
			t.Error("still serving after shutdown")
		}
		if logs := stderr.String(); !strings.Contains(logs, "msg=listening") || !strings.Contains(logs, "msg=\"shutting down\"") {
			t.Errorf("logs:\n%s", logs)
		}
	})

	t.Run("stopped while starting", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		run := Command(parse, func(ctx context.Context, _ []string, _ Listening) (http.Handler, error) {
			<-ctx.Done()
			return nil, errors.New("waiting for the issuer: " + ctx.Err().Error())
		})
		if err := run(ctx, nil, getenv, io.Discard, io.Discard); err != nil {
			t.Errorf("run: %v, want nil", err)
		}
	})

	notStarted := func(t *testing.T) StartFunc[[]string] {
		return func(context.Context, []string, Listening) (http.Handler, error) {
			t.Error("started")
			return ok, nil
		}
	}
	t.Run("start fails", func(t *testing.T) {
		t.Parallel()
		boom := errors.New("boom")
		run := Command(parse, func(context.Context, []string, Listening) (http.Handler, error) {
			return nil, boom
		})
		if err := run(t.Context(), nil, getenv, io.Discard, io.Discard); !errors.Is(err, boom) {
			t.Errorf("run: %v, want %v", err, boom)
		}
	})
	t.Run("bad flags", func(t *testing.T) {
		t.Parallel()
		if err := Command(parse, notStarted(t))(t.Context(), []string{"bad"}, getenv, io.Discard, io.Discard); err == nil || err.Error() != "bad flags" {
			t.Errorf("run: %v", err)
		}
	})
	t.Run("cannot listen", func(t *testing.T) {
		t.Parallel()
		if err := Command(parse, notStarted(t))(t.Context(), nil, mapEnv{"LISTEN": "nowhere"}.Get, io.Discard, io.Discard); err == nil {
			t.Error("run listened on a bad address")
		}
	})
}

func TestMainExitStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{flag.ErrHelp, 0},
		{errors.New("boom"), 1},
	} {
		got := Main("demo-x", func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
			if ctx.Err() != nil || getenv == nil || stdout != os.Stdout || stderr != os.Stderr {
				t.Error("run got something other than the process's context, environment and output")
			}
			return tc.err
		})
		if got != tc.want {
			t.Errorf("Main with run returning %v = %d, want %d", tc.err, got, tc.want)
		}
	}
}
