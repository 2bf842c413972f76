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

	if _, err := store.NewestSigningKey(ctx, "RS256"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("NewestSigningKey on an empty table: %v, want ErrNotFound", err)
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
	cur, err := store.NewestSigningKey(ctx, "RS256")
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
	// The first key signs at once: nobody can have read keys without it.
	if !k.ActivatesAt.Equal(k.CreatedAt) || k.ActivatesAt.Location() != time.UTC {
		t.Errorf("first key activates at %v, want at its creation %v, in UTC", k.ActivatesAt, k.CreatedAt)
	}
	got, err := store.NewestSigningKey(ctx, "RS256")
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
	if _, err := store.RotateSigningKey(ctx, bad, time.Hour); err == nil {
		t.Error("stored a public JWK with a private member")
	}
	bad = fakeKey("hmac")
	bad.Algorithm = "HS256"
	if _, err := store.RotateSigningKey(ctx, bad, time.Hour); err == nil {
		t.Error("stored an HS256 key")
	}
	if _, err := store.RotateSigningKey(ctx, fakeKey("never"), 0); err == nil {
		t.Error("rotated with a zero publication period")
	}
	all, err := store.ListSigningKeys(ctx)
	if err != nil || len(all) != 1 || all[0].KID != "first" || all[0].RotatedAt != nil {
		t.Errorf("after failed rotations the keys are %v (%v), want first alone and unchanged", all, err)
	}
}

func TestSigningKeyRotation(t *testing.T) {
	t.Parallel()
	store, clock := newKeyStore(t)
	ctx := t.Context()
	t0 := clock.Now()
	const publish = 2 * time.Hour

	if _, err := store.RotateSigningKey(ctx, fakeKey("orphan"), publish); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("RotateSigningKey with no key: %v, want ErrNotFound", err)
	}
	if err := store.InsertFirstSigningKey(ctx, fakeKey("old")); err != nil {
		t.Fatal(err)
	}

	// A rotation at t0+10m whose key signs from t0+13m: the old key signs
	// until then and is published for publish after that, not after the
	// rotation.
	clock.Set(t0.Add(10 * time.Minute))
	rotatedAt := clock.Now()
	activatesAt := rotatedAt.Add(3 * time.Minute)
	retireUntil := activatesAt.Add(publish)
	next := fakeKey("new")
	next.ActivatesAt = activatesAt
	prev, err := store.RotateSigningKey(ctx, next, publish)
	if err != nil {
		t.Fatal(err)
	}
	if !next.CreatedAt.Equal(rotatedAt) || !next.ActivatesAt.Equal(activatesAt) || next.RotatedAt != nil || next.ExpiresAt != nil {
		t.Errorf("rotated-in key: created %v activates %v rotated %v expires %v; want created %v, activating %v, newest",
			next.CreatedAt, next.ActivatesAt, next.RotatedAt, next.ExpiresAt, rotatedAt, activatesAt)
	}
	if prev == nil || prev.KID != "old" || prev.RotatedAt == nil || !prev.RotatedAt.Equal(activatesAt) ||
		prev.ExpiresAt == nil || !prev.ExpiresAt.Equal(retireUntil) {
		t.Fatalf("previous key %+v; want old, signing until %v and published until %v", prev, activatesAt, retireUntil)
	}

	cur, err := store.NewestSigningKey(ctx, "RS256")
	if err != nil || cur.KID != "new" {
		t.Fatalf("newest key %v (%v), want new", cur, err)
	}
	all, err := store.ListSigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := kids(all); fmt.Sprint(got) != "[new old]" {
		t.Fatalf("ListSigningKeys = %v, want [new old]", got)
	}
	old := all[1]
	if !old.ActivatesAt.Equal(t0) || !old.RotatedAt.Equal(activatesAt) || !old.ExpiresAt.Equal(retireUntil) {
		t.Errorf("old key signs [%v, %v) and is published until %v; want [%v, %v) and %v",
			old.ActivatesAt, old.RotatedAt, old.ExpiresAt, t0, activatesAt, retireUntil)
	}
	if old.ActivatesAt.Location() != time.UTC || old.RotatedAt.Location() != time.UTC || old.ExpiresAt.Location() != time.UTC {
		t.Errorf("times not in UTC: %v %v %v", old.ActivatesAt, old.RotatedAt, old.ExpiresAt)
	}

	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{rotatedAt, "[new old]"}, // the new key is published before it signs
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

	// A rotation asking for an activation before the newest key's own
	// (a clock behind, or two rotations racing) activates with it
	// instead, so that the keys still sign one after the other; the key it
	// retires never signs.
	third := fakeKey("third")
	third.ActivatesAt = rotatedAt.Add(time.Minute)
	prev, err = store.RotateSigningKey(ctx, third, publish)
	if err != nil {
		t.Fatal(err)
	}
	if prev.KID != "new" || !third.ActivatesAt.Equal(activatesAt) || !prev.RotatedAt.Equal(activatesAt) ||
		!prev.ExpiresAt.Equal(retireUntil) {
		t.Errorf("rotation before the newest key activates: third activates %v, %s signs until %v, published until %v; want %v for both and %v",
			third.ActivatesAt, prev.KID, prev.RotatedAt, prev.ExpiresAt, activatesAt, retireUntil)
	}
}

// TestSigningKeyConcurrentRotations: racing rotations each retire the key
// newest when they win the conditional UPDATE; every one succeeds, no two
// retire the same key, and the keys' signing intervals follow one another.
func TestSigningKeyConcurrentRotations(t *testing.T) {
	t.Parallel()
	store, clock := newKeyStore(t)
	ctx := t.Context()
	if err := store.InsertFirstSigningKey(ctx, fakeKey("k0")); err != nil {
		t.Fatal(err)
	}
	const n = 5
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		errs    = make(chan error, n)
		retired = make(chan string, n)
	)
	for i := range n {
		wg.Go(func() {
			k := fakeKey(fmt.Sprintf("k%d", i+1))
			k.CreatedAt = clock.Now().Add(time.Duration(i+1) * time.Second)
			k.ActivatesAt = k.CreatedAt.Add(time.Minute)
			<-start
			prev, err := store.RotateSigningKey(ctx, k, time.Hour)
			errs <- err
			if prev != nil {
				retired <- prev.KID
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	close(retired)
	for err := range errs {
		if err != nil {
			t.Errorf("RotateSigningKey: %v", err)
		}
	}
	seen := map[string]bool{}
	for kid := range retired {
		if seen[kid] {
			t.Errorf("two rotations retired %s", kid)
		}
		seen[kid] = true
	}
	all, err := store.ListSigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	newest := 0
	stops := map[time.Time]int{}
	for _, k := range all {
		if k.RotatedAt == nil {
			newest++
			continue
		}
		if k.RotatedAt.Before(k.ActivatesAt) {
			t.Errorf("%s stops signing at %v, before it starts at %v", k.KID, k.RotatedAt, k.ActivatesAt)
		}
		stops[*k.RotatedAt]++
	}
	if len(all) != n+1 || newest != 1 || len(seen) != n {
		t.Fatalf("%d keys, %d newest, %d retired; want %d, 1 and %d", len(all), newest, len(seen), n+1, n)
	}
	// Each key but the first starts signing when another stops.
	for _, k := range all {
		if k.KID == "k0" {
			continue
		}
		if stops[k.ActivatesAt] == 0 {
			t.Errorf("%s starts signing at %v, when no key stops", k.KID, k.ActivatesAt)
		}
		stops[k.ActivatesAt]--
	}
}

func TestSigningKeyJanitor(t *testing.T) {
	t.Parallel()
	store, clock := newKeyStore(t)
	ctx := t.Context()
	if err := store.InsertFirstSigningKey(ctx, fakeKey("old")); err != nil {
		t.Fatal(err)
	}
	prev, err := store.RotateSigningKey(ctx, fakeKey("new"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	retireUntil := *prev.ExpiresAt

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
		t.Errorf("keys left: %s, want [new] (the newest key never expires)", got)
	}
}
