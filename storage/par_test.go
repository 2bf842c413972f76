package storage_test

import (
	"errors"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/authz/authz/storage"
)

// pushRequest stores a pushed request of client app under uri, valid for
// a minute from clock's now.
func pushRequest(t *testing.T, s *storage.Store, clock *fakeClock, uri string) {
	t.Helper()
	ar := fosite.NewAuthorizeRequest()
	ar.Client = &storage.Client{ID: "app"}
	ar.Form = url.Values{"client_id": {"app"}, "scope": {"openid"}, "resource": {"https://a.example", "https://b.example"}}
	sess := &fosite.DefaultSession{}
	sess.SetExpiresAt(fosite.PushedAuthorizeRequestContext, clock.Now().Add(time.Minute))
	ar.Session = sess
	if err := s.CreatePARSession(t.Context(), uri, ar); err != nil {
		t.Fatal(err)
	}
}

func parStore(t *testing.T, clock *fakeClock) *storage.Store {
	t.Helper()
	s := throttleStore(t, clock, 8)
	if err := s.CreateClient(t.Context(), &storage.Client{ID: "app", GrantTypes: []string{"authorization_code"}, ResponseTypes: []string{"code"},
		TokenEndpointAuthMethod: "none", Public: true}); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPushedRequestLifecycle: a pushed request is claimed by the first
// browser only, resolves again there, lives past its first-use expiry
// once claimed, and is spent once.
func TestPushedRequestLifecycle(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := parStore(t, clock)
	ctx := t.Context()
	const uri = "urn:ietf:params:oauth:request_uri:one"
	pushRequest(t, s, clock, uri)

	got, err := s.GetPARSession(ctx, uri)
	if err != nil || got.GetClient().GetID() != "app" || got.GetRequestForm().Get("scope") != "openid" {
		t.Fatalf("GetPARSession = %v, %v", got, err)
	}
	if _, err := s.ClaimPAR(ctx, uri, "other-client", "browser-a", clock.Now().Add(time.Hour)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("claim by another client: %v, want ErrNotFound", err)
	}
	form, err := s.ClaimPAR(ctx, uri, "app", "browser-a", clock.Now().Add(time.Hour))
	if err != nil || len(form["resource"]) != 2 || form.Get("scope") != "openid" {
		t.Fatalf("first claim = %v, %v; want the pushed form", form, err)
	}
	if _, err := s.ClaimPAR(ctx, uri, "app", "browser-b", clock.Now().Add(time.Hour)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("claim from another browser: %v, want ErrNotFound", err)
	}
	if _, err := s.GetPARSession(ctx, uri); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("GetPARSession of a claimed request: %v, want ErrNotFound", err)
	}
	// Claimed, it outlives the minute it had to wait for its first use.
	clock.Advance(10 * time.Minute)
	if _, err := s.ClaimPAR(ctx, uri, "app", "browser-a", clock.Now().Add(time.Hour)); err != nil {
		t.Fatalf("claim again from the same browser: %v", err)
	}
	if err := s.ConsumePAR(ctx, uri, "browser-b"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("consume from another browser: %v, want ErrNotFound", err)
	}
	if err := s.ConsumePAR(ctx, uri, "browser-a"); err != nil {
		t.Fatalf("consume: %v", err)
	}
	if err := s.ConsumePAR(ctx, uri, "browser-a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("consume twice: %v, want ErrNotFound", err)
	}
	if _, err := s.ClaimPAR(ctx, uri, "app", "browser-a", clock.Now().Add(time.Hour)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("claim after it was spent: %v, want ErrNotFound", err)
	}
}

// TestPushedRequestExpiry: an unclaimed request expires after its
// lifespan, and the janitor deletes it.
func TestPushedRequestExpiry(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := parStore(t, clock)
	ctx := t.Context()
	const uri = "urn:ietf:params:oauth:request_uri:old"
	pushRequest(t, s, clock, uri)
	pushRequest(t, s, clock, "urn:ietf:params:oauth:request_uri:claimed")
	if _, err := s.ClaimPAR(ctx, "urn:ietf:params:oauth:request_uri:claimed", "app", "b", clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute + time.Second)
	if _, err := s.ClaimPAR(ctx, uri, "app", "browser-a", clock.Now().Add(time.Hour)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("claim of an expired request: %v, want ErrNotFound", err)
	}
	deleted, err := s.DeleteExpired(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if n := deleted["pushed_authorization_requests"]; n != 1 {
		t.Fatalf("janitor deleted %d pushed requests, want the expired one only", n)
	}
	var left int
	if err := s.QueryRowForTest(ctx, `SELECT count(*) FROM pushed_authorization_requests`).Scan(&left); err != nil || left != 1 {
		t.Fatalf("rows left: %d, %v; want the claimed one", left, err)
	}
}

// TestPushedRequestConcurrentClaims: of browsers racing for one
// request_uri, exactly one wins.
func TestPushedRequestConcurrentClaims(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := parStore(t, clock)
	const uri = "urn:ietf:params:oauth:request_uri:race"
	pushRequest(t, s, clock, uri)
	const n = 6
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
	)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := s.ClaimPAR(t.Context(), uri, "app", "browser-"+string(rune('a'+i)), clock.Now().Add(time.Hour))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, storage.ErrNotFound):
				t.Errorf("claim: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d browsers claimed the request, want exactly 1", wins)
	}
}
