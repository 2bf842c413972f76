package storage_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/authz/authz/storage"
	"github.com/authz/authz/storage/pgtest"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// throttleStore is a store on a fresh database with room for conns
// concurrent statements, on clock.
func throttleStore(t *testing.T, clock *fakeClock, conns int32) *storage.Store {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = conns
	pool, err := pgxpool.NewWithConfig(t.Context(), storage.PoolConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return storage.New(pool, storage.WithClock(clock.Now))
}

// count counts one attempt and fails the test on an error.
func count(t *testing.T, s *storage.Store, key string, p storage.ThrottlePolicy) storage.Attempt {
	t.Helper()
	a, err := s.CountAttempt(t.Context(), key, p)
	if err != nil {
		t.Fatalf("CountAttempt(%q): %v", key, err)
	}
	return a
}

// TestCountAttemptExactUnderConcurrency: attempts sent all at once are let
// through exactly up to the limit, with and without delays. Counting with
// a read and a later write lets every simultaneous attempt see a count
// below the limit.
func TestCountAttemptExactUnderConcurrency(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		policy storage.ThrottlePolicy
		want   int
	}{
		{"limit of 10", storage.ThrottlePolicy{Window: time.Minute, LockAfter: 10, LockFor: time.Minute}, 10},
		{"3 free, then delays", storage.ThrottlePolicy{Window: time.Minute, FreeFailures: 3, BaseDelay: time.Second, MaxDelay: time.Minute, LockAfter: 10, LockFor: time.Minute}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const n = 20
			s := throttleStore(t, newFakeClock(), n)
			// Open every connection first, so the attempts meet at the
			// row, not at the pool.
			conns := make([]*pgxpool.Conn, n)
			for i := range conns {
				c, err := s.Pool().Acquire(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				conns[i] = c
			}
			for _, c := range conns {
				c.Release()
			}
			start := make(chan struct{})
			results := make(chan storage.Attempt, n)
			errs := make(chan error, n)
			var wg sync.WaitGroup
			for range n {
				wg.Go(func() {
					<-start
					a, err := s.CountAttempt(context.Background(), "user:alice", tc.policy)
					if err != nil {
						errs <- err
						return
					}
					results <- a
				})
			}
			close(start)
			wg.Wait()
			close(results)
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			admitted, maxFailures := 0, 0
			for a := range results {
				if a.Admitted {
					admitted++
				} else if a.RetryAfter <= 0 {
					t.Errorf("a refused attempt says retry after %s, want a positive wait", a.RetryAfter)
				}
				maxFailures = max(maxFailures, a.Failures)
			}
			if admitted != tc.want || maxFailures != tc.want {
				t.Errorf("%d simultaneous attempts: %d admitted, count %d; want exactly %d", n, admitted, maxFailures, tc.want)
			}
		})
	}
}

// TestCountAttemptDelays: after the free failures each attempt waits
// twice as long as the one before, up to the maximum; at the limit the key
// is locked; refused attempts do not count; the lock's end starts over.
func TestCountAttemptDelays(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := throttleStore(t, clock, 4)
	p := storage.ThrottlePolicy{Window: time.Hour, FreeFailures: 2, BaseDelay: time.Second, MaxDelay: 4 * time.Second,
		LockAfter: 7, LockFor: 15 * time.Minute}
	const key = "user:bob"
	for i := 1; i <= 2; i++ {
		if a := count(t, s, key, p); !a.Admitted || a.Failures != i {
			t.Fatalf("free attempt %d: %+v, want admitted as failure %d", i, a, i)
		}
	}
	for i, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second} {
		failures := 2 + i
		a := count(t, s, key, p)
		if a.Admitted || a.RetryAfter != wait || a.Failures != failures {
			t.Fatalf("attempt right after failure %d: %+v, want refused for %s with the count still %d", failures, a, wait, failures)
		}
		clock.Advance(wait - time.Millisecond)
		if a := count(t, s, key, p); a.Admitted || a.RetryAfter != time.Millisecond {
			t.Fatalf("attempt 1ms before the wait after failure %d ends: %+v, want refused", failures, a)
		}
		clock.Advance(time.Millisecond)
		if a := count(t, s, key, p); !a.Admitted || a.Failures != failures+1 {
			t.Fatalf("attempt once the wait after failure %d is over: %+v, want admitted as failure %d", failures, a, failures+1)
		}
	}
	a := count(t, s, key, p)
	if a.Admitted || a.RetryAfter != 15*time.Minute || a.Failures != 7 {
		t.Fatalf("attempt after 7 failures: %+v, want locked for 15m", a)
	}
	clock.Advance(15 * time.Minute)
	if a := count(t, s, key, p); !a.Admitted || a.Failures != 1 {
		t.Fatalf("attempt once the lock is over: %+v, want a fresh count of 1", a)
	}
}

// TestCountAttemptWindow: failures older than the window are forgotten.
func TestCountAttemptWindow(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := throttleStore(t, clock, 4)
	p := storage.ThrottlePolicy{Window: time.Minute, LockAfter: 3, LockFor: time.Hour}
	count(t, s, "addr:192.0.2.1", p)
	clock.Advance(30 * time.Second)
	if a := count(t, s, "addr:192.0.2.1", p); a.Failures != 2 {
		t.Fatalf("second attempt within the window: %+v, want count 2", a)
	}
	clock.Advance(30 * time.Second)
	a := count(t, s, "addr:192.0.2.1", p)
	if !a.Admitted || a.Failures != 1 || !a.WindowStart.Equal(clock.Now()) {
		t.Fatalf("attempt a window after the first: %+v, want a new window with count 1", a)
	}
	// Keys are counted apart.
	if a := count(t, s, "addr:192.0.2.2", p); a.Failures != 1 {
		t.Fatalf("another key: %+v, want count 1", a)
	}
}

// TestUncountAttempt: a success takes back its own attempt, lifting the
// lock it set, but not in a later window.
func TestUncountAttempt(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := throttleStore(t, clock, 4)
	ctx := t.Context()
	p := storage.ThrottlePolicy{Window: time.Minute, LockAfter: 2, LockFor: time.Hour}
	const key = "addr:198.51.100.7"
	count(t, s, key, p)
	last := count(t, s, key, p)
	if a := count(t, s, key, p); a.Admitted {
		t.Fatalf("attempt after reaching the limit: %+v, want refused", a)
	}
	if err := s.UncountAttempt(ctx, key, last.WindowStart); err != nil {
		t.Fatal(err)
	}
	if a := count(t, s, key, p); !a.Admitted || a.Failures != 2 {
		t.Fatalf("attempt after the last one was taken back: %+v, want admitted as failure 2", a)
	}
	if err := s.UncountAttempt(ctx, key, last.WindowStart.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if a := count(t, s, key, p); a.Admitted {
		t.Fatalf("taking back an attempt of another window changed the count: %+v", a)
	}
}

// TestResetThrottle: an operator's unlock and a success forget the count;
// usernames are one key whatever their case.
func TestResetThrottle(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := throttleStore(t, clock, 4)
	ctx := t.Context()
	p := storage.ThrottlePolicy{Window: time.Minute, LockAfter: 1, LockFor: time.Hour}
	count(t, s, storage.UserThrottleKey("Carol"), p)
	if a := count(t, s, storage.UserThrottleKey("CAROL"), p); a.Admitted {
		t.Fatalf("CAROL after Carol reached the limit: %+v, want refused", a)
	}
	if locked, err := s.UnlockUser(ctx, "carol"); err != nil || !locked {
		t.Fatalf("UnlockUser(carol) = %v, %v; want true", locked, err)
	}
	if a := count(t, s, storage.UserThrottleKey("carol"), p); !a.Admitted || a.Failures != 1 {
		t.Fatalf("carol after the unlock: %+v, want admitted as failure 1", a)
	}
	clock.Advance(2 * time.Hour)
	if locked, err := s.ResetThrottle(ctx, storage.UserThrottleKey("carol")); err != nil || locked {
		t.Fatalf("ResetThrottle of a lock that has ended = %v, %v; want false", locked, err)
	}
	if locked, err := s.ResetThrottle(ctx, "user:nobody"); err != nil || locked {
		t.Fatalf("ResetThrottle of a key never counted = %v, %v; want false", locked, err)
	}
}

// TestPeekAttempts: a peek says whether an attempt would be admitted and
// counts nothing.
func TestPeekAttempts(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := throttleStore(t, clock, 4)
	ctx := t.Context()
	p := storage.ThrottlePolicy{Window: time.Minute, LockAfter: 2, LockFor: time.Minute}
	const key = "client:app"
	for i := range 3 {
		a, err := s.PeekAttempts(ctx, key)
		if err != nil || !a.Admitted {
			t.Fatalf("peek %d before the limit: %+v, %v; want admitted", i, a, err)
		}
		if i < 2 {
			count(t, s, key, p)
		}
		if i == 1 {
			break
		}
	}
	a, err := s.PeekAttempts(ctx, key)
	if err != nil || a.Admitted || a.RetryAfter != time.Minute || a.Failures != 2 {
		t.Fatalf("peek at the limit: %+v, %v; want refused for 1m with count 2", a, err)
	}
	clock.Advance(time.Minute)
	if a, err := s.PeekAttempts(ctx, key); err != nil || !a.Admitted {
		t.Fatalf("peek after the lock: %+v, %v; want admitted", a, err)
	}
}

// TestThrottleKeys: a username PostgreSQL's text cannot hold is counted
// like any other.
func TestThrottleKeys(t *testing.T) {
	t.Parallel()
	s := throttleStore(t, newFakeClock(), 4)
	p := storage.ThrottlePolicy{Window: time.Minute, LockAfter: 5, LockFor: time.Minute}
	for _, name := range []string{"al\x00ice", "al\xffice"} {
		key := storage.UserThrottleKey(name)
		if key != "user:al?ice" {
			t.Errorf("UserThrottleKey(%q) = %q, want user:al?ice", name, key)
		}
		count(t, s, key, p)
	}
	if got, want := storage.ClientThrottleKey("app\x00"), "client:app?"; got != want {
		t.Errorf("ClientThrottleKey = %q, want %q", got, want)
	}
}

// TestDeleteExpiredThrottle: the janitor deletes counters whose window and
// lock are over, in batches, and keeps the others.
func TestDeleteExpiredThrottle(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := throttleStore(t, clock, 4)
	short := storage.ThrottlePolicy{Window: time.Minute, LockAfter: 1, LockFor: time.Minute}
	long := storage.ThrottlePolicy{Window: time.Minute, LockAfter: 1, LockFor: time.Hour}
	for i := range 5 {
		count(t, s, fmt.Sprintf("addr:192.0.2.%d", i), short)
	}
	count(t, s, "user:locked", long)
	clock.Advance(2 * time.Minute)
	deleted, err := s.DeleteExpired(t.Context(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if deleted["login_throttle"] != 5 {
		t.Errorf("janitor deleted %d counters, want the 5 expired ones (%v)", deleted["login_throttle"], deleted)
	}
	if a := count(t, s, "user:locked", long); a.Admitted {
		t.Errorf("the janitor deleted a counter whose lock runs for another 58 minutes: %+v", a)
	}
}
