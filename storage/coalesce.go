package storage

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// coalescer runs concurrent calls of one kind (introspection lookups,
// inserts) as batches, each one statement. A call that finds fewer than
// maxInFlight batches running starts one at once, on the caller's own
// goroutine, with itself and whatever else waits; otherwise it waits, and
// the next batch to start takes it. A batch
// that ends with calls waiting starts the next one. Nothing ever waits for
// a batch to fill: one call at a time runs alone, as it would without the
// coalescer. Under load, the calls that arrive while the database answers
// others share the next round trip, so the database runs one statement
// where it would have run many, and no more than maxInFlight connections
// serve the calls however many requests make them.
//
// A batch that takes longer than stuckAfter (a connection gone silent, a
// stalled database) would hold up every call behind it; while no batch
// has started or ended for that long, a call starts one more regardless,
// at most one per stuckAfter, and the pool bounds them as it bounds any
// query.
//
// A batch's statement starts after every call it carries was made, so it
// sees everything committed before any of them: a token revoked before
// the request came is never read as active.
type coalescer[In, Out any] struct {
	run         func(ctx context.Context, in []In) ([]Out, error)
	maxInFlight int
	maxBatch    int
	stuckAfter  time.Duration
	now         func() time.Time

	mu      sync.Mutex
	pending []*call[In, Out]
	running int
	// moved is when a batch last started or ended.
	moved time.Time
}

// call is one call waiting for its batch.
type call[In, Out any] struct {
	in       In
	ctx      context.Context
	deadline time.Time   // the caller's; zero when it has none
	gone     atomic.Bool // the caller stopped waiting: not worth a lookup
	done     chan struct{}
	out      Out
	err      error
}

// coalescedTimeout bounds a batch whose callers set no deadline of their
// own. HTTP requests always have one (authz's guardDatabase).
const coalescedTimeout = 10 * time.Second

func newCoalescer[In, Out any](maxInFlight, maxBatch int, stuckAfter time.Duration, run func(ctx context.Context, in []In) ([]Out, error)) *coalescer[In, Out] {
	return &coalescer[In, Out]{run: run, maxInFlight: maxInFlight, maxBatch: maxBatch, stuckAfter: stuckAfter, now: time.Now}
}

// do returns in's result: what its batch's run gave for it, or the
// batch's error. A caller whose ctx ends first gets ctx's error and its
// call is dropped if its batch has not started.
func (c *coalescer[In, Out]) do(ctx context.Context, in In) (Out, error) {
	cl := &call[In, Out]{in: in, ctx: ctx, done: make(chan struct{})}
	cl.deadline, _ = ctx.Deadline()
	c.mu.Lock()
	c.pending = append(c.pending, cl)
	if c.running < c.maxInFlight || c.stuckLocked() {
		// Run on this goroutine: at low load no other one is woken.
		c.running++
		c.moved = c.now()
		batch := c.takeLocked()
		c.mu.Unlock()
		c.drain(batch, true)
	} else {
		c.mu.Unlock()
	}
	select {
	case <-cl.done:
		return cl.out, cl.err
	case <-ctx.Done():
		select {
		case <-cl.done: // both: the result is the truth
			return cl.out, cl.err
		default:
		}
		cl.gone.Store(true)
		var zero Out
		return zero, ctx.Err()
	}
}

// stuckLocked reports whether no batch has started or ended for
// stuckAfter while some run.
func (c *coalescer[In, Out]) stuckLocked() bool {
	return c.running > 0 && c.now().Sub(c.moved) > c.stuckAfter
}

// takeLocked removes up to maxBatch calls still waited for from the head
// of the queue.
func (c *coalescer[In, Out]) takeLocked() []*call[In, Out] {
	var batch []*call[In, Out]
	n := 0
	for _, cl := range c.pending {
		n++
		if cl.gone.Load() {
			continue
		}
		batch = append(batch, cl)
		if len(batch) == c.maxBatch {
			break
		}
	}
	rest := copy(c.pending, c.pending[n:])
	clear(c.pending[rest:])
	c.pending = c.pending[:rest]
	return batch
}

// drain runs batch, then keeps taking what waits until nothing does, when
// it gives back its place among the batches in flight. Called by a
// request (inline), it runs one batch only and hands what waits after it
// to a goroutine of its own, so that the request's answer is not held
// back by others' lookups.
func (c *coalescer[In, Out]) drain(batch []*call[In, Out], inline bool) {
	for {
		c.execute(batch)
		c.mu.Lock()
		c.moved = c.now()
		batch = c.takeLocked()
		if len(batch) == 0 {
			c.running--
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		if inline {
			go c.drain(batch, false)
			return
		}
	}
}

// execute runs one batch and hands each call its result. A call alone
// runs under its caller's context, as it would without the coalescer.
// A batch's deadline is the latest of its callers': one caller giving up
// early does not fail the others' lookups.
func (c *coalescer[In, Out]) execute(batch []*call[In, Out]) {
	if len(batch) == 0 {
		return
	}
	in := make([]In, len(batch))
	ctx := batch[0].ctx
	if len(batch) > 1 {
		var deadline time.Time
		for i, cl := range batch {
			in[i] = cl.in
			d := cl.deadline
			if d.IsZero() {
				d = time.Now().Add(coalescedTimeout)
			}
			if d.After(deadline) {
				deadline = d
			}
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(context.Background(), deadline)
		defer cancel()
	} else {
		in[0] = batch[0].in
	}
	out, err := c.runSafely(ctx, in)
	for i, cl := range batch {
		if err != nil {
			cl.err = err
		} else {
			cl.out = out[i]
		}
		cl.ctx = nil
		close(cl.done)
	}
}

// runSafely turns a panic in run into every caller's error: a batch may
// run on a goroutine of its own, where a panic would end the process, and
// its callers would otherwise wait out their deadlines.
func (c *coalescer[In, Out]) runSafely(ctx context.Context, in []In) (out []Out, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("storage: a batched lookup panicked: %v\n%s", p, debug.Stack())
		}
	}()
	out, err = c.run(ctx, in)
	if err == nil && len(out) != len(in) {
		err = fmt.Errorf("storage: a batched lookup gave %d results for %d calls", len(out), len(in))
	}
	return out, err
}
