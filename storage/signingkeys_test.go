package storage_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authz/authz/storage"
	"github.com/authz/authz/storage/pgtest"
)

// keyClock is a settable clock for the store.
type keyClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *keyClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *keyClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func newKeyStore(t *testing.T) (*storage.Store, *keyClock) {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	clock := &keyClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	return storage.New(pool, storage.WithClock(clock.Now)), clock
}

// fakeKey is a row as the key manager would write it; storage does not look
// inside the key material.
func fakeKey(kid string) *storage.SigningKey {
	return &storage.SigningKey{
		KID:               kid,
		Algorithm:         "RS256",
		PublicJWK:         []byte(`{"kty":"RSA","kid":"` + kid + `","n":"AQAB","e":"AQAB"}`),
		PrivateKey:        []byte("sealed:" + kid),
		SecretFingerprint: "0badf00d",
	}
}

func kids(ks []*storage.SigningKey) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.KID
	}
	return out
}

func TestSigningKeyFirstInsertRace(t *testing.T) {
	t.Parallel()
	store, _ := newKeyStore(t)
	ctx := t.Context()

	if _, err := store.CurrentSigningKey(ctx); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("CurrentSigningKey on an empty table: %v, want ErrNotFound", err)
	}

	const n = 10
	var (
		wg       sync.WaitGroup
		won      atomic.Int32
		lost     atomic.Int32
		winner   atomic.Value
		start    = make(chan struct{})
		failures = make(chan error, n)
	)
	for i := range n {
		wg.Go(func() {
			k := fakeKey(fmt.Sprintf("kid-%d", i))
			<-start
			switch err := store.InsertFirstSigningKey(ctx, k); {
			case err == nil:
				won.Add(1)
				winner.Store(k.KID)
			case errors.Is(err, storage.ErrAlreadyExists):
				lost.Add(1)
			default:
				failures <- err
			}
		})
	}
	close(start)
	wg.Wait()
	close(failures)
	for err := range failures {
		t.Errorf("InsertFirstSigningKey: %v", err)
	}
	if won.Load() != 1 || lost.Load() != n-1 {
		t.Fatalf("%d inserts won and %d got ErrAlreadyExists, want 1 and %d", won.Load(), lost.Load(), n-1)
	}
	cur, err := store.CurrentSigningKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cur.KID != winner.Load() {
		t.Errorf("current key is %s, want the winner %s", cur.KID, winner.Load())
	}
	all, err := store.ListSigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 {
		t.Errorf("%d keys stored (%v), want 1", len(all), kids(all))
	}
}

func TestSigningKeyRoundTrip(t *testing.T) {
	t.Parallel()
	store, clock := newKeyStore(t)
	ctx := t.Context()

	k := fakeKey("first")
	if err := store.InsertFirstSigningKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if !k.CreatedAt.Equal(clock.Now()) || k.CreatedAt.Location() != time.UTC {
		t.Errorf("created_at %v, want the store's clock %v in UTC", k.CreatedAt, clock.Now())
	}
	got, err := store.CurrentSigningKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.KID != "first" || got.Algorithm != "RS256" || string(got.PrivateKey) != "sealed:first" ||
		got.SecretFingerprint != "0badf00d" || got.RotatedAt != nil || got.ExpiresAt != nil {
		t.Errorf("read back %+v", got)
	}
	if got.CreatedAt.Location() != time.UTC {
		t.Errorf("created_at %v is not in UTC", got.CreatedAt)
	}

	// The schema keeps private members out of the public JWK and
	// algorithms to the supported ones.
	bad := fakeKey("leaky")
	bad.PublicJWK = []byte(`{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQAB"}`)
	if err := store.RotateSigningKey(ctx, bad, clock.Now().Add(time.Hour)); err == nil {
		t.Error("stored a public JWK with a private member")
	}
	bad = fakeKey("hmac")
	bad.Algorithm = "HS256"
	if err := store.RotateSigningKey(ctx, bad, clock.Now().Add(time.Hour)); err == nil {
		t.Error("stored an HS256 key")
	}
	if cur, err := store.CurrentSigningKey(ctx); err != nil || cur.KID != "first" {
		t.Errorf("after failed rotations the current key is %v (%v), want first unchanged", cur, err)
	}
}

func TestSigningKeyRotation(t *testing.T) {
	t.Parallel()
	store, clock := newKeyStore(t)
	ctx := t.Context()
	t0 := clock.Now()

	if err := store.RotateSigningKey(ctx, fakeKey("orphan"), t0.Add(time.Hour)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("RotateSigningKey with no current key: %v, want ErrNotFound", err)
	}
	if err := store.InsertFirstSigningKey(ctx, fakeKey("old")); err != nil {
		t.Fatal(err)
	}

	clock.Set(t0.Add(10 * time.Minute))
	rotatedAt := clock.Now()
	retireUntil := rotatedAt.Add(2 * time.Hour)
	next := fakeKey("new")
	if err := store.RotateSigningKey(ctx, next, retireUntil); err != nil {
		t.Fatal(err)
	}
	if !next.CreatedAt.Equal(rotatedAt) || next.RotatedAt != nil {
		t.Errorf("rotated-in key: created %v rotated %v, want created %v and current", next.CreatedAt, next.RotatedAt, rotatedAt)
	}

	cur, err := store.CurrentSigningKey(ctx)
	if err != nil || cur.KID != "new" {
		t.Fatalf("current key %v (%v), want new", cur, err)
	}
	all, err := store.ListSigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := kids(all); fmt.Sprint(got) != "[new old]" {
		t.Fatalf("ListSigningKeys = %v, want [new old]", got)
	}
	old := all[1]
	if old.RotatedAt == nil || !old.RotatedAt.Equal(rotatedAt) || old.ExpiresAt == nil || !old.ExpiresAt.Equal(retireUntil) {
		t.Errorf("old key rotated_at %v expires_at %v, want %v and %v", old.RotatedAt, old.ExpiresAt, rotatedAt, retireUntil)
	}
	if old.RotatedAt.Location() != time.UTC || old.ExpiresAt.Location() != time.UTC {
		t.Errorf("times not in UTC: %v %v", old.RotatedAt, old.ExpiresAt)
	}

	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{rotatedAt, "[new old]"},
		{retireUntil.Add(-time.Second), "[new old]"},
		{retireUntil, "[new]"},
		{retireUntil.Add(time.Hour), "[new]"},
	} {
		pub, err := store.PublishedSigningKeys(ctx, tc.at)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(kids(pub)); got != tc.want {
			t.Errorf("PublishedSigningKeys at retire%+v = %s, want %s", tc.at.Sub(retireUntil), got, tc.want)
		}
	}
}

// TestSigningKeyConcurrentRotations: rotations take turns on the current
// row's lock; every one succeeds and retires the key current at its turn.
func TestSigningKeyConcurrentRotations(t *testing.T) {
	t.Parallel()
	store, clock := newKeyStore(t)
	ctx := t.Context()
	if err := store.InsertFirstSigningKey(ctx, fakeKey("k0")); err != nil {
		t.Fatal(err)
	}
	const n = 5
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			k := fakeKey(fmt.Sprintf("k%d", i+1))
			k.CreatedAt = clock.Now().Add(time.Duration(i+1) * time.Second)
			errs <- store.RotateSigningKey(ctx, k, clock.Now().Add(time.Hour))
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("RotateSigningKey: %v", err)
		}
	}
	all, err := store.ListSigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	current := 0
	for _, k := range all {
		if k.RotatedAt == nil {
			current++
		}
	}
	if len(all) != n+1 || current != 1 {
		t.Errorf("%d keys, %d current; want %d and 1", len(all), current, n+1)
	}
}

func TestSigningKeyJanitor(t *testing.T) {
	t.Parallel()
	store, clock := newKeyStore(t)
	ctx := t.Context()
	if err := store.InsertFirstSigningKey(ctx, fakeKey("old")); err != nil {
		t.Fatal(err)
	}
	retireUntil := clock.Now().Add(time.Hour)
	if err := store.RotateSigningKey(ctx, fakeKey("new"), retireUntil); err != nil {
		t.Fatal(err)
	}

	deleted, err := store.DeleteExpired(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if deleted["signing_keys"] != 0 {
		t.Errorf("deleted %d signing keys before any expired", deleted["signing_keys"])
	}

	clock.Set(retireUntil.Add(time.Second))
	deleted, err = store.DeleteExpired(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if deleted["signing_keys"] != 1 {
		t.Errorf("deleted %d signing keys after the old one expired, want 1", deleted["signing_keys"])
	}
	all, err := store.ListSigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(kids(all)); got != "[new]" {
		t.Errorf("keys left: %s, want [new] (the current key never expires)", got)
	}
}
