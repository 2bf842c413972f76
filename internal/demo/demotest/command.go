package demotest

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

	"github.com/authz/authz/internal/demo"
)

// Command is a demo command running as its main runs it.
type Command struct {
	Line   string      // the first line it wrote to stdout, where it listens
	Stderr *SyncBuffer // its logs
	cancel context.CancelFunc
	done   chan error
}

// StartCommand runs run with args and the environment env until Stop (or
// the test's end), and waits for its first line on stdout.
func StartCommand(t testing.TB, run demo.RunFunc, args []string, env map[string]string) *Command {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	stdoutR, stdoutW := io.Pipe()
	c := &Command{Stderr: &SyncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() {
		c.done <- run(ctx, args, func(k string) string { return env[k] }, stdoutW, c.Stderr)
		stdoutW.Close()
	}()
	stdout := bufio.NewReader(stdoutR)
	line, err := stdout.ReadString('\n')
	if err != nil {
		t.Fatalf("no listening line: %v; stderr:\n%s", err, c.Stderr)
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }() // never block its writes
	c.Line = strings.TrimSpace(line)
	return c
}

// Stop stops the command the way SIGTERM does, by cancelling its context,
// and fails the test unless run then returns nil.
func (c *Command) Stop(t testing.TB) {
	t.Helper()
	c.cancel()
	select {
	case err := <-c.done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after the context was cancelled")
	}
}

// FlagsCase is a row of a demo command's flags table: with Args and Env,
// parsing gives Listen and Want, or else an error containing WantErr.
type FlagsCase[C any] struct {
	Name    string
	Args    []string
	Env     map[string]string
	Listen  string
	Want    C
	WantErr string
}

// RunFlagsCases runs each case as a subtest of t.
func RunFlagsCases[C any](t *testing.T, parse demo.ParseFunc[C], cases []FlagsCase[C]) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			listen, cfg, err := parse(tc.Args, func(k string) string { return tc.Env[k] }, io.Discard)
			if tc.WantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.WantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.WantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if listen != tc.Listen || !reflect.DeepEqual(cfg, tc.Want) {
				t.Fatalf("got %q %+v\nwant %q %+v", listen, cfg, tc.Listen, tc.Want)
			}
		})
	}
}

// CheckCredentialsFlags checks that a demo command whose client is
// clientID, with its secret in the variable secretVar, can read the
// secret from the credentials file authz dev writes, and that
// --issuer-addr gives its clients a dialer of their own. client is the
// secret and the HTTP client of a parsed configuration.
func CheckCredentialsFlags[C any](t testing.TB, parse demo.ParseFunc[C], clientID, secretVar string, client func(C) (string, *http.Client)) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "demo.json")
	if err := os.WriteFile(path, []byte(`{"client_secrets": {"demo-bff": "bff-secret", "demo-api": "api-secret"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DEMO_CREDENTIALS": path, "AUTHZ_ISSUER": "http://localhost:8080"}
	getenv := func(k string) string { return env[k] }
	_, cfg, err := parse([]string{"--issuer-addr", "authz:8080"}, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	secret, httpClient := client(cfg)
	if want := strings.TrimPrefix(clientID+"-secret", "demo-"); secret != want || httpClient == nil || httpClient.Transport == nil {
		t.Errorf("secret %q (want %q), client %+v", secret, want, httpClient)
	}
	// A secret given wins over the file; a file without the client fails.
	env[secretVar] = "given"
	_, cfg, err = parse(nil, getenv, io.Discard)
	if secret, httpClient := client(cfg); err != nil || secret != "given" || httpClient != nil {
		t.Errorf("%+v %v", cfg, err)
	}
	delete(env, secretVar)
	if _, _, err := parse([]string{"--client-id", "other"}, getenv, io.Discard); err == nil || !strings.Contains(err.Error(), `no secret for client "other"`) {
		t.Errorf("unknown client: %v", err)
	}
	if _, _, err := parse([]string{"--issuer-addr", "authz"}, getenv, io.Discard); err == nil || !strings.Contains(err.Error(), "host:port") {
		t.Errorf("bad issuer address: %v", err)
	}
}
