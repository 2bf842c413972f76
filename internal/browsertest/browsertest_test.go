package browsertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// The helpers are for tests only: no package may import them outside its
// _test.go files.
func TestBrowserHelpersOnlyInTests(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}:{{range .Imports}} {{.}}{{end}}`,
		"github.com/authz/authz/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for line := range strings.Lines(string(out)) {
		pkg, imports, _ := strings.Cut(strings.TrimSpace(line), ":")
		for imp := range strings.FieldsSeq(imports) {
			if imp == "github.com/authz/authz/internal/browsertest" {
				t.Errorf("%s imports %s outside its tests", pkg, imp)
			}
		}
	}
}

// Without Chromium, Require fails with the line to run; it never skips.
func TestBrowserRequireMissingChromium(t *testing.T) {
	t.Setenv("AUTHZ_CHROMIUM", "/nonexistent")
	msgs, fatal := capture(t, func(t testing.TB) { Require(t) })
	want := "no Chromium at /nonexistent; run: " + install + " (or set AUTHZ_CHROMIUM)"
	if !fatal || len(msgs) != 1 || !strings.Contains(msgs[0], want) {
		t.Errorf("Require without Chromium: fatal %v, %q; want one line with %q", fatal, msgs, want)
	}
}

// Run writes the input to the script's stdin, passes its arguments, and
// decodes the last line it prints; a script that reports an error, or runs
// too long, fails the test.
func TestBrowserRun(t *testing.T) {
	t.Parallel()
	env := Env{Dir: t.TempDir()}
	script := func(name, body string) {
		if err := os.WriteFile(filepath.Join(env.Dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	script("echo.mjs", `import { readFileSync } from "node:fs";
const input = JSON.parse(readFileSync(0, "utf8"));
console.log("not the result");
console.log(JSON.stringify({ step: "done", error: "", input, args: process.argv.slice(2) }));
`)
	script("fail.mjs", `console.log(JSON.stringify({ step: "sign in", error: "no login form" })); process.exit(1);`)
	script("hang.mjs", `setTimeout(() => {}, 60000);`)

	var got struct {
		Input struct{ Name string }
		Args  []string
	}
	env.Run(t, Script{Name: "echo.mjs", Args: []string{"--x", "1"}, Input: map[string]string{"name": "alice"}, Timeout: 30 * time.Second}, &got)
	if got.Input.Name != "alice" || strings.Join(got.Args, " ") != "--x 1" {
		t.Errorf("echo.mjs saw %+v, want input alice and args --x 1", got)
	}

	for _, c := range []struct {
		script  string
		timeout time.Duration
		want    []string
	}{
		{"fail.mjs", 30 * time.Second, []string{`fail.mjs stopped at "sign in": no login form (exit status 1)`}},
		{"hang.mjs", 500 * time.Millisecond, []string{"hang.mjs was stopped after 500ms", "hang.mjs: signal: terminated (unexpected end of JSON input)"}},
	} {
		msgs, fatal := capture(t, func(t testing.TB) { env.Run(t, Script{Name: c.script, Timeout: c.timeout}, new(struct{})) })
		if !fatal || len(msgs) != len(c.want) {
			t.Errorf("%s: fatal %v, %q; want %q", c.script, fatal, msgs, c.want)
			continue
		}
		for i, w := range c.want {
			if !strings.HasPrefix(msgs[i], w) {
				t.Errorf("%s: %q, want it to start with %q", c.script, msgs[i], w)
			}
		}
	}
}

// capture runs f with a testing.TB that records its failures instead of
// failing t, and reports them and whether f stopped with Fatal.
func capture(t *testing.T, f func(testing.TB)) (msgs []string, fatal bool) {
	t.Helper()
	ft := &fakeT{TB: t}
	done := make(chan bool)
	go func() {
		completed := false
		defer func() { done <- !completed }()
		f(ft)
		completed = true
	}()
	fatal = <-done
	return ft.msgs, fatal
}

// fakeT is the real test but for its failures, which it records.
type fakeT struct {
	testing.TB
	mu   sync.Mutex
	msgs []string
}

func (f *fakeT) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, fmt.Sprintf(format, args...))
}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	runtime.Goexit()
}

func (f *fakeT) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }

func (f *fakeT) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.msgs) > 0
}
