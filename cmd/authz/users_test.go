package main

import (
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/storage"
)

// TestUsersUnlock: "authz users unlock USERNAME" lets a user whom failed
// sign-ins locked out sign in again at once, whatever the case of the name
// typed at sign-in or on the command line.
func TestUsersUnlock(t *testing.T) {
	t.Parallel()
	e := dbEnv(t)
	store := openStore(t, e)
	ctx := t.Context()
	mustRun(t, e, "correct horse\n", "users", "create", "--username", "alice", "--password-stdin")

	// Lock the username as sign-ins do: under its throttle key.
	lock := storage.ThrottlePolicy{Window: time.Minute, LockAfter: 1, LockFor: time.Hour}
	if _, err := store.CountAttempt(ctx, storage.UserThrottleKey("ALICE"), lock); err != nil {
		t.Fatal(err)
	}
	if a, err := store.PeekAttempts(ctx, storage.UserThrottleKey("alice")); err != nil || a.Admitted {
		t.Fatalf("alice before the unlock: %+v, %v; want locked", a, err)
	}
	if out := mustRun(t, e, "", "users", "unlock", "Alice"); out != "unlocked user alice\n" {
		t.Errorf("users unlock printed %q", out)
	}
	if a, err := store.PeekAttempts(ctx, storage.UserThrottleKey("alice")); err != nil || !a.Admitted || a.Failures != 0 {
		t.Errorf("alice after the unlock: %+v, %v; want no count and no lock", a, err)
	}
	if out := mustRun(t, e, "", "users", "unlock", "alice"); !strings.Contains(out, "was not locked") {
		t.Errorf("unlocking a user who is not locked printed %q", out)
	}

	wantError(t, e, "", `user "carol" not found`, false, "users", "unlock", "carol")
	wantError(t, e, "", "expected one username", true, "users", "unlock")
	if out := mustRun(t, e, "", "users", "-h"); !strings.Contains(out, "unlock") {
		t.Errorf("users -h does not list unlock:\n%s", out)
	}
}
