package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/authz/authz/storage"
)

// TestScopes: "authz scopes set|list|delete" manage the catalogue; set
// changes only what its flags name, and emits an audit event.
func TestScopes(t *testing.T) {
	t.Parallel()
	e := dbEnv(t)
	store := openStore(t, e)

	if _, stderr, err := runCLI(t, e, "", "scopes", "list"); err != nil || !strings.Contains(stderr, "no scopes described yet") {
		t.Errorf("scopes list of an empty catalogue: %v, stderr %q", err, stderr)
	}
	out, stderr, err := runCLI(t, e, "", "scopes", "set", "contacts:read", "--description", "Read your contacts")
	if err != nil || !strings.HasPrefix(out, `created scope contacts:read: "Read your contacts"`) {
		t.Fatalf("scopes set (new): %v, %q", err, out)
	}
	if !strings.Contains(stderr, `"event":"scope.created"`) || !strings.Contains(stderr, `"scope":"contacts:read"`) || !strings.Contains(stderr, `"source":"cli"`) {
		t.Errorf("no scope.created audit event on stderr: %s", stderr)
	}
	// A flag alone changes that field and keeps the description.
	if out := mustRun(t, e, "", "scopes", "set", "contacts:read", "--show-on-consent=false"); !strings.HasPrefix(out, "updated scope contacts:read") {
		t.Errorf("scopes set (flag): %q", out)
	}
	sc, err := store.Scope(t.Context(), "contacts:read")
	if err != nil || sc.Description != "Read your contacts" || sc.ShowOnConsent || !sc.Discoverable {
		t.Errorf("after set --show-on-consent=false: %+v, %v", sc, err)
	}
	mustRun(t, e, "", "scopes", "set", "calendar", "--description", "See your calendar", "--discoverable=false")

	table := mustRun(t, e, "", "scopes", "list")
	for _, want := range []string{"NAME", "calendar", "See your calendar", "contacts:read", "Read your contacts"} {
		if !strings.Contains(table, want) {
			t.Errorf("scopes list lacks %q:\n%s", want, table)
		}
	}
	var list []storage.Scope
	if err := json.Unmarshal([]byte(mustRun(t, e, "", "scopes", "list", "--format", "json")), &list); err != nil ||
		len(list) != 2 || list[0].Name != "calendar" || list[0].Discoverable || list[1].Name != "contacts:read" {
		t.Errorf("scopes list --format json: %+v, %v", list, err)
	}

	if out := mustRun(t, e, "", "scopes", "delete", "calendar"); !strings.Contains(out, "deleted scope calendar") {
		t.Errorf("scopes delete: %q", out)
	}
	wantError(t, e, "", `scope "calendar" is not in the catalogue`, false, "scopes", "delete", "calendar")
	if _, err := store.Scope(t.Context(), "calendar"); err == nil {
		t.Error("calendar still in the catalogue after delete")
	}
}

// TestScopesBadInput: bad names and descriptions are refused before the
// database is touched, with a message saying why; so are command lines
// that cannot be understood.
func TestScopesBadInput(t *testing.T) {
	t.Parallel()
	e := dbEnv(t)
	store := openStore(t, e)
	for _, tc := range []struct {
		args  []string
		want  string
		usage bool
	}{
		{[]string{"scopes"}, "scopes: missing subcommand", true},
		{[]string{"scopes", "rename"}, `unknown subcommand "rename"`, true},
		{[]string{"scopes", "set"}, "expected one scope name", true},
		{[]string{"scopes", "set", "a", "b", "--description", "d"}, "expected one scope name", true},
		{[]string{"scopes", "set", "contacts"}, "nothing to set", true},
		{[]string{"scopes", "set", "contacts", "--show-on-consent=maybe"}, "invalid boolean", true},
		{[]string{"scopes", "delete"}, "expected one scope name", true},
		{[]string{"scopes", "list", "--format", "yaml"}, "--format must be table or json", true},
		{[]string{"scopes", "set", "two words", "--description", "d"}, "RFC 6749", false},
		{[]string{"scopes", "set", `a"b`, "--description", "d"}, "double quote", false},
		{[]string{"scopes", "set", strings.Repeat("a", 129), "--description", "d"}, "at most 128", false},
		{[]string{"scopes", "set", "contacts", "--description", " "}, "a description is required", false},
		{[]string{"scopes", "set", "contacts", "--description", strings.Repeat("x", 201)}, "at most 200", false},
		{[]string{"scopes", "set", "contacts", "--description", "two\nlines"}, "control characters", false},
		{[]string{"scopes", "set", "contacts", "--discoverable=false"}, `scope "contacts" is not in the catalogue yet: give --description`, false},
	} {
		wantError(t, e, "", tc.want, tc.usage, tc.args...)
	}
	if scs, err := store.ListScopes(t.Context(), "", 10); err != nil || len(scs) != 0 {
		t.Errorf("catalogue after the bad input: %+v, %v; want it empty", scs, err)
	}
	if out := mustRun(t, env{}, "", "scopes", "-h"); !strings.Contains(out, "list|set|delete") {
		t.Errorf("scopes -h: %q", out)
	}
	if out := mustRun(t, env{}, "", "scopes", "set", "-h"); !strings.Contains(out, "-description") || !strings.Contains(out, "-show-on-consent") {
		t.Errorf("scopes set -h: %q", out)
	}
}
