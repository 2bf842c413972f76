package authz

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/authz/authz/storage"
	"github.com/authz/authz/storage/pgtest"
)

// countingHasher counts the comparisons it makes.
type countingHasher struct {
	fosite.Hasher
	mu    sync.Mutex
	calls int
}

func (h *countingHasher) Compare(ctx context.Context, hash, data []byte) error {
	h.mu.Lock()
	h.calls++
	h.mu.Unlock()
	return h.Hasher.Compare(ctx, hash, data)
}

func (h *countingHasher) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls
}

// TestClientThrottleSkipsArgon2: while a client with an operator-chosen
// secret is locked for its failures, its secret is not compared at all,
// right or wrong: the Argon2id work is what a guesser makes the server
// spend. A generated (SHA-256) secret is never throttled.
func TestClientThrottleSkipsArgon2(t *testing.T) {
	t.Parallel()
	pool, err := storage.NewPool(t.Context(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	var (
		mu  sync.Mutex
		now = time.Now()
	)
	store := storage.New(pool, storage.WithClock(func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}))
	chosen, err := storage.HashPassword("an operator chose this")
	if err != nil {
		t.Fatal(err)
	}
	generated := storage.HashGeneratedSecret("generated")
	hasher := &countingHasher{Hasher: storage.SecretHasher{}}
	// authenticate compares the way fosite does: through the hasher, with
	// the client's stored hash.
	authenticate := func(id, hash, secret string) error {
		r := httptest.NewRequest("POST", "/oauth2/token", nil)
		r.SetBasicAuth(id, secret)
		share := func(*http.Request) shareKey { return shareKey{nil, "192.0.2.1"} }
		s := withClientThrottle(store, share, func(ctx context.Context, _ *http.Request, _ url.Values) (fosite.Client, error) {
			if err := (throttledHasher{hasher}).Compare(ctx, []byte(hash), []byte(secret)); err != nil {
				return nil, fosite.ErrInvalidClient.WithWrap(err)
			}
			return &fosite.DefaultClient{ID: id}, nil
		})
		_, err := s(t.Context(), r, url.Values{})
		return err
	}

	for i := range 10 {
		if err := authenticate("app", chosen, "guess"); !errors.Is(err, fosite.ErrInvalidClient) {
			t.Fatalf("wrong secret %d: %v, want invalid_client", i+1, err)
		}
	}
	if n := hasher.count(); n != 10 {
		t.Fatalf("%d comparisons for 10 wrong secrets, want 10", n)
	}
	err = authenticate("app", chosen, "an operator chose this")
	if d, ok := retryAfterOf(err); !errors.Is(err, fosite.ErrInvalidClient) || !ok || d != time.Minute {
		t.Fatalf("the right secret after 10 wrong ones: %v (retry after %s, %v), want invalid_client for a minute", err, d, ok)
	}
	if n := hasher.count(); n != 10 {
		t.Fatalf("the locked client's secret was compared: %d comparisons, want still 10", n)
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	if err := authenticate("app", chosen, "an operator chose this"); err != nil {
		t.Fatalf("the right secret once the minute is over: %v", err)
	}

	for range 15 {
		_ = authenticate("generated", generated, "guess")
	}
	if err := authenticate("generated", generated, "generated"); err != nil {
		t.Fatalf("a generated secret after 15 wrong ones: %v, want it accepted", err)
	}
}

// TestShares: each key gets at most its share of slots, waits for one at
// most as long as asked or until its context ends, and does not hold up
// other keys. Idle keys take no memory.
func TestShares(t *testing.T) {
	t.Parallel()
	s := newShares(2)
	a, b := shareKey{addr: "198.51.100.1"}, shareKey{addr: "203.0.113.1"}
	r1, ok1 := s.acquire(t.Context(), a, time.Second)
	r2, ok2 := s.acquire(t.Context(), a, time.Second)
	if !ok1 || !ok2 {
		t.Fatal("the first two slots of a key were refused")
	}
	if _, ok := s.acquire(t.Context(), a, time.Millisecond); ok {
		t.Fatal("a third slot for one key was granted")
	}
	rb, ok := s.acquire(t.Context(), b, time.Millisecond)
	if !ok {
		t.Fatal("another key was held up by a full one")
	}
	rb()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, ok := s.acquire(ctx, a, time.Hour); ok {
		t.Fatal("a slot was granted after the context ended")
	}
	done := make(chan bool)
	go func() {
		r3, ok := s.acquire(t.Context(), a, time.Minute)
		if ok {
			r3()
		}
		done <- ok
	}()
	r1()
	if !<-done {
		t.Fatal("a waiter did not get the slot given back")
	}
	r2()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) != 0 {
		t.Errorf("%d keys kept after every slot was given back", len(s.m))
	}
}

// blockingHasher holds every comparison until release is closed.
type blockingHasher struct {
	started chan struct{}
	release chan struct{}
}

func (h *blockingHasher) Hash(context.Context, []byte) ([]byte, error) { return nil, nil }

func (h *blockingHasher) Compare(context.Context, []byte, []byte) error {
	h.started <- struct{}{}
	<-h.release
	return errors.New("wrong secret")
}

// TestClientSecretShare: one address gets no more concurrent Argon2id
// client secret checks than its share; another address still gets one.
func TestClientSecretShare(t *testing.T) {
	hasher := &blockingHasher{started: make(chan struct{}, 8), release: make(chan struct{})}
	argon := []byte("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA")
	if !storage.ThrottledSecret(string(argon)) {
		t.Fatal("the test's hash is not an Argon2id one")
	}
	owner := &Handler{}
	compare := func(addr string) error {
		check := &secretCheck{key: "client:x", peeked: true, share: shareKey{owner, addr}}
		ctx := context.WithValue(t.Context(), secretCheckKey{}, check)
		return throttledHasher{hasher}.Compare(ctx, argon, []byte("guess"))
	}
	done := make(chan error, 3)
	for range hashesPerAddress {
		go func() { done <- compare("198.51.100.7") }()
		<-hasher.started
	}
	// The flooding address's share is taken: its next check waits for it,
	// then gives up as busy, without hashing.
	if err := compare("198.51.100.7"); !errors.Is(err, storage.ErrBusy) {
		t.Fatalf("a third concurrent check from one address: %v, want ErrBusy", err)
	}
	// Another address is not held up by that flood.
	go func() { done <- compare("203.0.113.9") }()
	<-hasher.started
	close(hasher.release)
	for range hashesPerAddress + 1 {
		<-done
	}
}
