package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/authz"
)

const keysTestSecret = "keys-test-secret-keys-test-secret-0123456789"

func TestKeysRotateAndList(t *testing.T) {
	t.Parallel()
	e := dbEnv(t)
	e["AUTHZ_SECRETS"] = keysTestSecret
	e["AUTHZ_ID_TOKEN_LIFESPAN"] = "1h"
	e["AUTHZ_ACCESS_TOKEN_LIFESPAN"] = "15m"

	stdout, stderr, err := runCLI(t, e, "", "keys", "list")
	if err != nil || stdout != "" || !strings.Contains(stderr, "no signing keys yet") {
		t.Errorf("keys list on an empty database: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}
	if out := mustRun(t, e, "", "keys", "list", "--format", "json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("keys list --format json on an empty database printed %q, want []", out)
	}

	// Every algorithm has its own key: the first rotation creates one of
	// each.
	out := mustRun(t, e, "", "keys", "rotate")
	firsts := map[string]string{}
	for line := range strings.Lines(out) {
		m := regexp.MustCompile(`^created first (\w+) key ([A-Za-z0-9_-]{43}), signing now\n$`).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("first keys rotate printed %q", out)
		}
		firsts[m[1]] = m[2]
	}
	if len(firsts) != len(authz.SigningAlgorithms()) {
		t.Fatalf("first keys rotate created keys for %v, want one for each of %v:\n%s", firsts, authz.SigningAlgorithms(), out)
	}
	first := firsts["ES256"]

	before := time.Now().UTC().Truncate(time.Second)
	out = mustRun(t, e, "", "keys", "rotate", "--alg", "ES256")
	m := regexp.MustCompile(`^rotated ES256: new key ([A-Za-z0-9_-]{43}) is published now and signs from (\S+); ` +
		`previous key (\S+) signs until then and stays published until (\S+)\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("keys rotate --alg ES256 printed %q", out)
	}
	second := m[1]
	if m[3] != first {
		t.Errorf("previous key %s, want %s", m[3], first)
	}
	from, err := time.Parse(time.RFC3339, m[2])
	if err != nil {
		t.Fatalf("signs-from %q is not RFC 3339: %v", m[2], err)
	}
	if d := from.Sub(before); d < authz.KeyActivationDelay || d > authz.KeyActivationDelay+time.Minute {
		t.Errorf("new key signs from %s, want now + %s", from, authz.KeyActivationDelay)
	}
	until, err := time.Parse(time.RFC3339, m[4])
	if err != nil {
		t.Fatalf("published-until %q is not RFC 3339: %v", m[4], err)
	}
	if d := until.Sub(from); d != 75*time.Minute {
		t.Errorf("previous key published until %s, want %s + 1h15m (ID token + access token lifespans from when it stops signing)", until, from)
	}

	out = mustRun(t, e, "", "keys", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 || !regexp.MustCompile(`^KID\s+ALG\s+STATE\s+CREATED\s+SIGNS FROM\s+SIGNS UNTIL\s+PUBLISHED UNTIL$`).MatchString(lines[0]) {
		t.Fatalf("keys list printed:\n%s", out)
	}
	if !regexp.MustCompile(`^` + second + `\s+ES256\s+next\s+\S+Z\s+` + regexp.QuoteMeta(m[2]) + `\s+-\s+-$`).MatchString(lines[1]) {
		t.Errorf("keys list: new key line %q", lines[1])
	}
	// The other algorithms' keys are untouched: current, with no end.
	for _, line := range lines[2:5] {
		if !regexp.MustCompile(`^\S+\s+(RS256|PS256|EdDSA)\s+current\s+\S+Z\s+\S+Z\s+-\s+-$`).MatchString(line) {
			t.Errorf("keys list: another algorithm's key line %q", line)
		}
	}
	if !regexp.MustCompile(`^` + first + `\s+ES256\s+current\s+\S+Z\s+\S+Z\s+` + regexp.QuoteMeta(m[2]) + `\s+` + regexp.QuoteMeta(m[4]) + `$`).MatchString(lines[5]) {
		t.Errorf("keys list: previous key line %q", lines[5])
	}

	var keys []authz.SigningKeyInfo
	if err := json.Unmarshal([]byte(mustRun(t, e, "", "keys", "list", "--format", "json")), &keys); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 5 || keys[0].KID != second || keys[0].State != "next" || !keys[0].ActivatesAt.Truncate(time.Second).Equal(from) ||
		keys[4].KID != first || keys[4].State != "current" || keys[4].ExpiresAt == nil || !keys[4].ExpiresAt.Truncate(time.Second).Equal(until) {
		t.Errorf("keys list --format json: %+v", keys)
	}
	// Only metadata: nothing of any key.
	raw := mustRun(t, e, "", "keys", "list", "--format", "json")
	for _, leak := range []string{`"d"`, `"n"`, "private", "public_jwk"} {
		if strings.Contains(raw, leak) {
			t.Errorf("keys list --format json shows %s:\n%s", leak, raw)
		}
	}
}

func TestKeysErrors(t *testing.T) {
	t.Parallel()
	usage := []struct {
		args []string
		want string
	}{
		{[]string{"keys"}, "keys: missing subcommand (one of: rotate, list)"},
		{[]string{"keys", "delete"}, `keys: unknown subcommand "delete"`},
		{[]string{"keys", "rotate", "--alg", "HS256"}, `keys rotate: --alg must be one of RS256, PS256, ES256, EdDSA, not "HS256"`},
		{[]string{"keys", "rotate", "now"}, `unexpected argument "now"`},
		{[]string{"keys", "list", "--format", "yaml"}, "--format must be table or json"},
	}
	for _, tc := range usage {
		wantError(t, env{"AUTHZ_SECRETS": keysTestSecret}, "", tc.want, true, tc.args...)
	}

	// No system secret: said before the database is touched.
	e := dbEnv(t)
	wantError(t, e, "", "AUTHZ_SECRETS is not set", false, "keys", "rotate")
	wantError(t, env{}, "", "AUTHZ_SECRETS is not set", false, "keys", "rotate", "--alg", "ES256")
	e["AUTHZ_SECRETS"] = "short"
	wantError(t, e, "", "AUTHZ_SECRETS: secret 1 is 5 bytes", false, "keys", "rotate")
	wantError(t, env{"AUTHZ_SECRETS": keysTestSecret}, "", "no database configured", false, "keys", "rotate")
	wantError(t, env{}, "", "no database configured", false, "keys", "list")

	if out := mustRun(t, env{}, "", "keys", "rotate", "-h"); !strings.Contains(out, "-alg") {
		t.Errorf("keys rotate -h does not mention --alg:\n%s", out)
	}
	if out := mustRun(t, env{}, "", "help"); !strings.Contains(out, "keys rotate") || !strings.Contains(out, "keys list") {
		t.Errorf("usage does not mention the keys commands:\n%s", out)
	}
}
