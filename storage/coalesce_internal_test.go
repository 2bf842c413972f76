package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// batchLog is a coalescer's run function for tests: it records each
// batch, answers each input doubled, and blocks while gate is held.
type batchLog struct {
	mu        sync.Mutex
	batches   [][]int
	deadlines []time.Time
	gate      sync.RWMutex
	fail      error
	panicOn   int // an input that makes run panic
}

func (b *batchLog) run(ctx context.Context, in []int) ([]int, error) {
	b.mu.Lock()
	b.batches = append(b.batches, slices.Clone(in))
	d, _ := ctx.Deadline()
	b.deadlines = append(b.deadlines, d)
	b.mu.Unlock()
	b.gate.RLock()
	defer b.gate.RUnlock()
	if slices.Contains(in, b.panicOn) {
		panic("boom")
	}
	if b.fail != nil {
		return nil, b.fail
	}
	out := make([]int, len(in))
	for i, v := range in {
		out[i] = 2 * v
	}
	return out, nil
}

func (b *batchLog) seen() [][]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.batches)
}

// waitPending polls until n calls wait in c's queue.
func waitPending(t *testing.T, c *coalescer[int, int], n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		got := len(c.pending)
		c.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d calls pending, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitBatches polls until n batches have started.
func waitBatches(t *testing.T, b *batchLog, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(b.seen()) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d batches started, want %d", len(b.seen()), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestCoalescerAlone: calls made one at a time each run alone, on the
// caller's goroutine, with nothing left running after.
func TestCoalescerAlone(t *testing.T) {
	b := &batchLog{panicOn: -1}
	c := newCoalescer(2, 8, time.Hour, b.run)
	for i := range 3 {
		got, err := c.do(context.Background(), i+1)
		if err != nil || got != 2*(i+1) {
			t.Fatalf("call %d: %d, %v", i+1, got, err)
		}
	}
	if got := b.seen(); !slices.EqualFunc(got, [][]int{{1}, {2}, {3}}, slices.Equal) {
		t.Errorf("batches %v, want one per call", got)
	}
	if c.running != 0 || len(c.pending) != 0 {
		t.Errorf("after: %d running, %d pending", c.running, len(c.pending))
	}
}

// TestCoalescerBatches: calls made while the batches in flight are
// busy wait, and go together in the next batches, at most maxBatch to a
// statement and in the order they came; each gets its own result. None
// is answered by a batch that started before it was made.
func TestCoalescerBatches(t *testing.T) {
	b := &batchLog{panicOn: -1}
	c := newCoalescer(1, 4, time.Hour, b.run)
	b.gate.Lock()
	var wg sync.WaitGroup
	results := make([]int, 7)
	errs := make([]error, 7)
	call := func(i int) {
		defer wg.Done()
		results[i], errs[i] = c.do(context.Background(), i+1)
	}
	wg.Add(1)
	go call(0)
	waitBatches(t, b, 1) // the first call's, in flight (blocked on the gate)
	for i := 1; i < 7; i++ {
		wg.Add(1)
		go call(i)
		waitPending(t, c, i) // in a known order
	}
	b.gate.Unlock()
	wg.Wait()
	for i := range 7 {
		if errs[i] != nil || results[i] != 2*(i+1) {
			t.Errorf("call %d: %d, %v; want %d", i+1, results[i], errs[i], 2*(i+1))
		}
	}
	want := [][]int{{1}, {2, 3, 4, 5}, {6, 7}}
	if got := b.seen(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("batches %v, want %v", got, want)
	}
	b.mu.Lock()
	if b.deadlines[1].IsZero() {
		t.Error("a batch of callers without deadlines ran without one")
	}
	b.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running != 0 || len(c.pending) != 0 {
		t.Errorf("after: %d running, %d pending", c.running, len(c.pending))
	}
}

// TestCoalescerInFlight: up to maxInFlight batches run at once; a call
// beyond them waits rather than taking another connection.
func TestCoalescerInFlight(t *testing.T) {
	b := &batchLog{panicOn: -1}
	c := newCoalescer(2, 8, time.Hour, b.run)
	b.gate.Lock()
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := c.do(context.Background(), i+1); err != nil || got != 2*(i+1) {
				t.Errorf("call %d: %d, %v", i+1, got, err)
			}
		}()
		if i < 2 {
			waitBatches(t, b, i+1)
		}
	}
	waitPending(t, c, 1)
	if n := len(b.seen()); n != 2 {
		t.Errorf("%d batches started with two in flight, want 2", n)
	}
	b.gate.Unlock()
	wg.Wait()
	if n := len(b.seen()); n != 3 {
		t.Errorf("%d batches in all, want 3", n)
	}
}

// TestCoalescerCallerLeaves: a caller whose context ends while it waits
// gets its context's error at once, and its lookup is not run. The
// batch's deadline is the latest of its callers', so one giving up early
// does not cut the others short.
func TestCoalescerCallerLeaves(t *testing.T) {
	b := &batchLog{panicOn: -1}
	c := newCoalescer(1, 8, time.Hour, b.run)
	b.gate.Lock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := c.do(context.Background(), 1); err != nil {
			t.Errorf("first call: %v", err)
		}
	}()
	waitBatches(t, b, 1)

	leaving, leave := context.WithCancel(context.Background())
	left := make(chan error, 1)
	go func() {
		_, err := c.do(leaving, 2)
		left <- err
	}()
	waitPending(t, c, 1)
	late := time.Now().Add(time.Hour)
	lateCtx, cancel := context.WithDeadline(context.Background(), late)
	defer cancel()
	early := time.Now().Add(30 * time.Minute)
	earlyCtx, cancel2 := context.WithDeadline(context.Background(), early)
	defer cancel2()
	var wg sync.WaitGroup
	for i, ctx := range []context.Context{earlyCtx, lateCtx} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := c.do(ctx, 3+i); err != nil || got != 2*(3+i) {
				t.Errorf("call %d: %d, %v", 3+i, got, err)
			}
		}()
		waitPending(t, c, 2+i)
	}
	leave()
	if err := <-left; !errors.Is(err, context.Canceled) {
		t.Errorf("the caller that left: %v, want context.Canceled", err)
	}
	b.gate.Unlock()
	<-done
	wg.Wait()
	got := b.seen()
	if want := [][]int{{1}, {3, 4}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("batches %v, want %v (the call that left is not run)", got, want)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.deadlines[1].Equal(late) {
		t.Errorf("second batch's deadline %v, want the latest caller's, %v", b.deadlines[1], late)
	}
	if !b.deadlines[0].IsZero() {
		t.Errorf("a call alone ran with deadline %v, not its caller's (none)", b.deadlines[0])
	}
}

// TestCoalescerFailures: a batch's error reaches every call in it; a
// panic in a batch becomes its calls' error, and the coalescer goes on.
func TestCoalescerFailures(t *testing.T) {
	b := &batchLog{panicOn: 13}
	c := newCoalescer(1, 8, time.Hour, b.run)
	if _, err := c.do(context.Background(), 13); err == nil || !strings.Contains(err.Error(), "panicked: boom") {
		t.Errorf("a panicking batch: %v", err)
	}
	b.fail = fmt.Errorf("down")
	if _, err := c.do(context.Background(), 1); err == nil || err.Error() != "down" {
		t.Errorf("a failing batch: %v, want down", err)
	}
	b.fail = nil
	if got, err := c.do(context.Background(), 2); err != nil || got != 4 {
		t.Errorf("after the failures: %d, %v", got, err)
	}
	short := newCoalescer(1, 8, time.Hour, func(context.Context, []int) ([]int, error) { return nil, nil })
	if _, err := short.do(context.Background(), 1); err == nil {
		t.Error("a run that gave no result for its call: no error")
	}
}

// TestCoalescerStuck: while the batch in flight has neither ended nor
// been joined by another for stuckAfter, a new call starts one more
// batch, with what waits; once one has, calls wait again.
func TestCoalescerStuck(t *testing.T) {
	b := &batchLog{panicOn: -1}
	c := newCoalescer(1, 8, time.Minute, b.run)
	var clock atomic.Int64
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return start.Add(time.Duration(clock.Load())) }
	b.gate.Lock()
	var wg sync.WaitGroup
	call := func(v int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got, err := c.do(context.Background(), v); err != nil || got != 2*v {
				t.Errorf("call %d: %d, %v", v, got, err)
			}
		}()
	}
	call(1)
	waitBatches(t, b, 1)
	clock.Add(int64(30 * time.Second))
	call(2) // not stuck yet: waits
	waitPending(t, c, 1)
	clock.Add(int64(31 * time.Second))
	call(3) // the first batch has run 61 s: a second starts, with 2 and 3
	waitBatches(t, b, 2)
	call(4) // a batch just started: waits
	waitPending(t, c, 1)
	if got := b.seen(); !slices.EqualFunc(got, [][]int{{1}, {2, 3}}, slices.Equal) {
		t.Errorf("batches %v, want [[1] [2 3]]", got)
	}
	b.gate.Unlock()
	wg.Wait()
	if got := b.seen(); len(got) != 3 || !slices.Equal(got[2], []int{4}) {
		t.Errorf("batches %v, want 4 alone last", got)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running != 0 {
		t.Errorf("after: %d running", c.running)
	}
}
