// Package browsertest runs the Node scripts of authz/testdata/browser,
// which drive headless Chromium, for the browser tests of authz
// (authz/browser_test.go) and of the demo (internal/demo/e2e). It checks
// that node, Chromium and the npm packages are there, runs a script with a
// time limit, reads the one line of JSON it prints, and keeps the
// screenshots of a failed test.
//
// It is for tests only: no other code may import it.
package browsertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// install is what to run when something is missing.
const install = "apt-get install -y chromium nodejs npm && (cd authz/testdata/browser && npm ci)"

// Env is a machine that can run the browser tests.
type Env struct {
	Chromium string // /usr/bin/chromium (Debian's package), or $AUTHZ_CHROMIUM
	Dir      string // authz/testdata/browser, absolute: the scripts, the SPA, node_modules
}

// Require fails the test, with one line saying what to install, unless
// node, Chromium and the npm packages are there. It never skips: a
// machine that runs the tests must run these too. files are what else the
// test needs in authz/testdata/browser, such as its script.
func Require(t testing.TB, files ...string) Env {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("browser test: node is not on PATH; run: %s", install)
	}
	chromium := os.Getenv("AUTHZ_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("browser test: no Chromium at %s; run: %s (or set AUTHZ_CHROMIUM)", chromium, install)
	}
	dir := filepath.Join(moduleRoot(t), "authz", "testdata", "browser")
	for _, f := range append([]string{"harness.mjs", "node_modules/playwright-core/package.json"}, files...) {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatalf("browser test: authz/testdata/browser/%s is missing; run: cd authz/testdata/browser && npm ci", f)
		}
	}
	return Env{Chromium: chromium, Dir: dir}
}

// moduleRoot is the directory of go.mod, above the test's directory.
func moduleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// Script is one run of a Node script of Env.Dir.
type Script struct {
	Name    string        // the script, such as "demo.mjs"
	Args    []string      // its command-line arguments
	Input   any           // written to its stdin as JSON, unless nil
	Timeout time.Duration // after which node gets SIGTERM, and is killed 10s later
}

// Run runs s with node in e.Dir and decodes the last line of its stdout
// into out. The scripts print one line of JSON that says, in "step" and
// "error", where and why they stopped if they did. Run fails the test,
// with the script's output, when that line is not JSON, and when the
// script exited with an error or reported one.
func (e Env) Run(t testing.TB, s Script, out any) {
	t.Helper()
	if s.Timeout <= 0 {
		t.Fatalf("browsertest: %s has no Timeout", s.Name)
	}
	ctx, cancel := context.WithTimeout(t.Context(), s.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{s.Name}, s.Args...)...)
	cmd.Dir = e.Dir
	if s.Input != nil {
		input, err := json.Marshal(s.Input)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdin = bytes.NewReader(input)
	}
	// SIGTERM lets Playwright close Chromium before node exits; a node that
	// does not exit is killed 10s later.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	runErr := cmd.Run()
	t.Logf("%s took %v", s.Name, time.Since(start).Round(time.Millisecond))
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Errorf("%s was stopped after %v", s.Name, s.Timeout)
	}

	line := strings.TrimSpace(stdout.String())
	if i := strings.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	var status struct {
		Step  string `json:"step"`
		Error string `json:"error"`
	}
	err := json.Unmarshal([]byte(line), out)
	if err == nil {
		err = json.Unmarshal([]byte(line), &status)
	}
	if err != nil {
		t.Fatalf("%s: %v (%v); stdout:\n%s\nstderr:\n%s", s.Name, runErr, err, stdout.String(), stderr.String())
	}
	if runErr != nil || status.Error != "" {
		var pretty bytes.Buffer
		_ = json.Indent(&pretty, []byte(line), "", "  ")
		t.Fatalf("%s stopped at %q: %s (%v)\n%s\nstderr:\n%s", s.Name, status.Step, status.Error, runErr, pretty.String(), stderr.String())
	}
}

// ScreenshotDir is the directory for a script's screenshots:
// $AUTHZ_SCREENSHOTS, made absolute, when set, else a new temporary
// directory that is kept only when the test fails.
func ScreenshotDir(t testing.TB) string {
	t.Helper()
	shots := os.Getenv("AUTHZ_SCREENSHOTS")
	if shots == "" {
		dir, err := os.MkdirTemp("", "authz-"+strings.ReplaceAll(t.Name(), "/", "_")+"-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			t.Helper()
			if t.Failed() {
				t.Logf("screenshots kept in %s", dir)
				return
			}
			_ = os.RemoveAll(dir)
		})
		shots = dir
	} else {
		if abs, err := filepath.Abs(shots); err == nil {
			shots = abs // node runs in authz/testdata/browser
		}
		// One folder per test, so two tests' screenshots never mix.
		shots = filepath.Join(shots, strings.ReplaceAll(t.Name(), "/", "_"))
		if err := os.MkdirAll(shots, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("screenshots: %s", shots)
	return shots
}
