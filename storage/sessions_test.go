package storage_test

import (
	"errors"
	"testing"
	"time"

	"github.com/authz/authz/storage"
)

// TestStartLoginSessionEndsPrevious: a sign-in gets a new session id and
// ends the session of the cookie the browser came with, whoever's it was,
// so an id someone planted or saw before the sign-in is worth nothing
// after it (session fixation).
func TestStartLoginSessionEndsPrevious(t *testing.T) {
	t.Parallel()
	s := throttleStore(t, newFakeClock(), 4)
	ctx := t.Context()
	alice := &storage.User{Username: "alice"}
	mallory := &storage.User{Username: "mallory"}
	for _, u := range []*storage.User{alice, mallory} {
		if err := s.CreateUser(ctx, u, "correct horse battery"); err != nil {
			t.Fatal(err)
		}
	}
	planted, _, err := s.CreateLoginSession(ctx, mallory.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := s.CreateLoginSession(ctx, mallory.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fresh, sess, err := s.StartLoginSession(ctx, alice.ID, time.Hour, planted)
	if err != nil {
		t.Fatal(err)
	}
	if fresh == planted || fresh == "" || sess.UserID != alice.ID {
		t.Fatalf("StartLoginSession = %q, %+v; want a new id for alice", fresh, sess)
	}
	if _, err := s.LoginSession(ctx, planted); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the session the browser came with: %v, want it ended", err)
	}
	if u, _, err := s.SessionUser(ctx, fresh); err != nil || u.ID != alice.ID {
		t.Errorf("the new session: %v, %v; want alice's", u, err)
	}
	if _, err := s.LoginSession(ctx, other); err != nil {
		t.Errorf("another session of the planted one's user: %v, want it kept", err)
	}
	// No previous cookie, or one that names nothing: just a new session.
	for _, previous := range []string{"", "no-such-session"} {
		if c, _, err := s.StartLoginSession(ctx, alice.ID, time.Hour, previous); err != nil || c == "" {
			t.Errorf("StartLoginSession with previous %q = %q, %v", previous, c, err)
		}
	}
}
