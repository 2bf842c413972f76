package demotest

import (
	"os/exec"
	"strings"
	"testing"
)

// The harness is for tests only: no program may link it (nor pgtest).
func TestNotInPrograms(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", "github.com/authz/authz/cmd/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "github.com/authz/authz/internal/demo/demotest" || pkg == "github.com/authz/authz/storage/pgtest" {
			t.Errorf("a program imports %s", pkg)
		}
	}
}
