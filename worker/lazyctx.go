package worker

import (
	"context"
	"errors"
	"sync"
	"time"
)

// lazyContext is a job's cancellable context, with an optional deadline,
// that costs nothing until a handler asks for more than Err or Deadline.
// The rule it keeps: it behaves as context.WithDeadline over
// context.WithCancelCause of its parent would (Done, Err, Deadline, Value
// and context.Cause all agree with that), but the real contexts, with
// their registration in the parent and their timer, are made only when
// Done or Value is first called (materialize). Until then Err is computed
// from what is known: the job's own cancel, the deadline against the
// clock, the parent's Err. A handler that only computes, as most of a
// batch's do, thus costs no allocation, lock in the parent or timer.
//
// Once cancelled (cancel, the deadline, the parent), its Err never
// changes; cancel after the end is a no-op, as a CancelCauseFunc's is.
type lazyContext struct {
	parent   context.Context
	deadline time.Duration // since epoch, on the monotonic clock, if hasDeadline

	mu          sync.Mutex
	hasDeadline bool    // a deadline of its own
	ended       endKind // set once ended, before materializing
	own         bool    // ended by end, not by the parent or the deadline
	cause       error
	real        *realContexts // once materialized
}

// endKind is how a lazyContext ended, before it was materialized: its Err.
// A lazyContext is one per job, so its fields are kept small: an Err is
// one of the two errors the standard contexts end with.
type endKind uint8

const (
	live endKind = iota
	canceled
	deadlineExceeded
)

// err returns the error of the end k.
func (k endKind) err() error {
	switch k {
	case canceled:
		return context.Canceled
	case deadlineExceeded:
		return context.DeadlineExceeded
	}
	return nil
}

// endOf returns the endKind of a context's Err: DeadlineExceeded, or else
// Canceled (the standard contexts end with no other).
func endOf(err error) endKind {
	if errors.Is(err, context.DeadlineExceeded) {
		return deadlineExceeded
	}
	return canceled
}

// epoch is the origin of the lazyContexts' deadlines: a monotonic clock
// reading, so that a deadline is a plain duration since.
var epoch = time.Now()

// realContexts are a lazyContext's standard contexts, once made.
type realContexts struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	stop   context.CancelFunc // the deadline's timer, if any
}

// begin readies c as a child of parent ending at deadline (zero: none).
func (c *lazyContext) begin(parent context.Context, deadline time.Time) {
	c.parent = parent
	if !deadline.IsZero() {
		c.deadline, c.hasDeadline = deadline.Sub(epoch), true
	}
}

// deadlineTime returns c's own deadline as a time, with its monotonic
// clock reading.
func (c *lazyContext) deadlineTime() time.Time { return epoch.Add(c.deadline) }

// Deadline returns the earlier of its own deadline and its parent's.
func (c *lazyContext) Deadline() (time.Time, bool) {
	pd, ok := c.parent.Deadline()
	switch {
	case !c.hasDeadline:
		return pd, ok
	case ok && pd.Before(c.deadlineTime()):
		return pd, true
	}
	return c.deadlineTime(), true
}

// Done returns the channel closed when the context ends; it materializes c.
func (c *lazyContext) Done() <-chan struct{} { return c.materialize().Done() }

// Err returns nil while the context lives, else why it ended.
func (c *lazyContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.real != nil {
		return c.real.ctx.Err()
	}
	c.observe()
	return c.ended.err()
}

// observe records an end that happened without a call to cancel: the
// parent's, or the deadline's. c.mu is held and c not materialized.
func (c *lazyContext) observe() {
	if c.ended != live {
		return
	}
	if err := c.parent.Err(); err != nil {
		c.ended, c.cause = endOf(err), context.Cause(c.parent)
		return
	}
	if c.hasDeadline && time.Since(epoch) >= c.deadline {
		c.ended, c.cause = deadlineExceeded, context.DeadlineExceeded
	}
}

// Value materializes c, so that context.Cause finds its cancel cause, and
// returns what the real context holds for key.
func (c *lazyContext) Value(key any) any { return c.materialize().Value(key) }

// materialize makes the real contexts, ended already if c has ended: by
// its own cancel (made again first, so that a deadline past since does
// not take its place), the parent's (inherited) or the deadline.
func (c *lazyContext) materialize() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.real != nil {
		return c.real.ctx
	}
	c.observe()
	ctx, cancel := context.WithCancelCause(c.parent)
	r := &realContexts{cancel: cancel}
	if c.own {
		cancel(c.cause)
	}
	if c.hasDeadline {
		ctx, r.stop = context.WithDeadline(ctx, c.deadlineTime())
	}
	r.ctx = ctx
	c.real = r
	return ctx
}

// end cancels c with cause (nil: context.Canceled) if it has not ended,
// and releases its timer; a cause passed after the end is not recorded.
func (c *lazyContext) end(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.real; r != nil {
		r.cancel(cause)
		if r.stop != nil {
			r.stop()
		}
		return
	}
	c.observe()
	if c.ended == live {
		if cause == nil {
			cause = context.Canceled
		}
		c.ended, c.cause, c.own = canceled, cause, true
	}
}

// causeErr returns context.Cause of c without materializing it.
func (c *lazyContext) causeErr() error {
	c.mu.Lock()
	real := c.real
	if real == nil {
		c.observe()
		cause := c.cause
		c.mu.Unlock()
		return cause
	}
	c.mu.Unlock()
	return context.Cause(real.ctx)
}
