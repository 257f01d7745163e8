package actors

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/procpool/procpool/codec"
)

// Job is one unit of work for a router. Send a *Job to a router's PID (with
// Request, so that the router knows whom to answer) to run it; the router
// answers the sender with a *Result once the job has resolved. Code that is
// not an actor uses NewJob, Router.Submit and Job.Wait instead.
//
// Every Job a router accepts resolves exactly once: with a result, or with
// an error matching one of the package's Err values.
type Job struct {
	// Payload is the argument: raw bytes for codec.Blob, one msgpack-encoded
	// value for codec.Value.
	Payload []byte
	// Kind says how Payload is encoded.
	Kind PayloadKind

	state  atomic.Uint32 // jobPending, then jobResolved
	done   chan struct{}
	result []byte
	err    error

	// Set once before the job reaches the router.
	gate     *gate
	replyTo  *actor.PID
	system   *actor.ActorSystem
	accepted time.Time

	// Owned by the router's goroutine (and by the worker it is dispatched
	// to while it runs).
	id      uint64       // the job's id on its current worker
	worker  *workerState // where it runs, nil while queued
	attempt int          // runs so far, from 1 once dispatched
	crashes int          // workers that died running it
	timer   *time.Timer  // per-job timeout, nil if none
	started time.Time    // when it was last dispatched

	ctxStop atomic.Pointer[func() bool] // detaches a context.AfterFunc, if any
}

// PayloadKind says how a payload is encoded: Blob (raw bytes) or Value
// (one msgpack-encoded value).
type PayloadKind = codec.PayloadKind

// The payload kinds.
const (
	Blob  = codec.Blob
	Value = codec.Value
)

const (
	jobPending uint32 = iota
	jobResolved
)

// NewJob returns a job for payload, ready to be submitted.
func NewJob(kind PayloadKind, payload []byte) *Job {
	return &Job{Payload: payload, Kind: kind, done: make(chan struct{})}
}

// Done returns a channel that is closed once the job has resolved.
func (j *Job) Done() <-chan struct{} { return j.done }

// Result returns the job's outcome. It is valid only after Done is closed.
func (j *Job) Result() ([]byte, error) { return j.result, j.err }

// Wait waits until the job resolves or ctx ends. When ctx ends first the job
// is cancelled (removed from the queue, or a cancel message is sent to its
// worker) and Wait returns an error matching ErrCancelled and ctx.Err().
func (j *Job) Wait(ctx context.Context) ([]byte, error) {
	select {
	case <-j.done:
		return j.result, j.err
	default:
	}
	select {
	case <-j.done:
		return j.result, j.err
	case <-ctx.Done():
		j.Cancel(context.Cause(ctx))
		<-j.done
		return j.result, j.err
	}
}

// Cancel resolves the job with an error matching ErrCancelled and cause, if
// it has not resolved yet, and tells its router to drop it from the queue or
// to send a cancel message to its worker.
func (j *Job) Cancel(cause error) {
	if j.resolve(nil, Cancelled(cause)) && j.gate != nil {
		j.gate.send((*cancelJob)(j))
	}
}

// cancelWith ties the job to ctx: when ctx ends before the job resolves,
// the job is cancelled. The watch is dropped when the job resolves.
func (j *Job) cancelWith(ctx context.Context) {
	if ctx.Done() == nil {
		return
	}
	stop := context.AfterFunc(ctx, func() { j.Cancel(context.Cause(ctx)) })
	j.ctxStop.Store(&stop)
	if j.resolved() { // resolved before the watch was stored: drop it here
		if p := j.ctxStop.Swap(nil); p != nil {
			(*p)()
		}
	}
}

// resolve records the outcome if the job has not resolved yet, and reports
// whether it did. Exactly one call per job returns true.
func (j *Job) resolve(result []byte, err error) bool {
	if !j.state.CompareAndSwap(jobPending, jobResolved) {
		return false
	}
	j.result, j.err = result, err
	if stop := j.ctxStop.Swap(nil); stop != nil {
		(*stop)()
	}
	if j.gate != nil {
		j.gate.release(j, err) // first: a woken caller sees the counts
	}
	close(j.done)
	if j.replyTo != nil && j.system != nil {
		j.system.Root.Send(j.replyTo, &Result{Job: j, Payload: result, Err: err})
	}
	return true
}

// resolved reports whether the job has resolved.
func (j *Job) resolved() bool { return j.state.Load() == jobResolved }

// Result is what a router answers to the sender of a *Job.
type Result struct {
	Job     *Job
	Payload []byte
	Err     error
}

// Messages the router receives about jobs. They are conversions of *Job, so
// reporting a job's progress allocates nothing.
type (
	cancelJob  Job // the job's caller cancelled it
	jobDone    Job // its worker answered
	jobTimeout Job // its per-job timer fired
)

// gate admits jobs into one router: it bounds how many are accepted at once,
// remembers every unresolved one (so that none is lost if the router stops
// with jobs in its mailbox), and refuses jobs once closed.
type gate struct {
	tokens   chan struct{} // one per accepted, unresolved job
	shut     chan struct{} // closed when the gate closes
	stopped  chan struct{} // closed when the router actor stopped for good
	stopOnce sync.Once
	counters counters
	// frameLimit is the largest request frame the workers accept: the job
	// type's MaxFrame, lowered to what a worker announces if less.
	frameLimit atomic.Int64

	mu     sync.Mutex
	slots  []*workerState // free capacity on ready workers, most recent last
	queued int            // jobs in the router's queue
	system *actor.ActorSystem
	pid    *actor.PID        // the router, once bound
	closed error             // non-nil once closed: the error new jobs get
	jobs   map[*Job]struct{} // accepted and not yet resolved
}

func newGate(capacity, frameLimit int) *gate {
	g := &gate{
		tokens:  make(chan struct{}, capacity),
		shut:    make(chan struct{}),
		stopped: make(chan struct{}),
		jobs:    make(map[*Job]struct{}, capacity),
	}
	g.frameLimit.Store(int64(frameLimit))
	return g
}

// checkSize refuses a payload whose request frame would exceed the workers'
// frame limit, whether or not it would travel through the shared memory
// region: the region changes how a payload travels, never whether it may.
func (g *gate) checkSize(jobType string, payload []byte) error {
	if limit := g.frameLimit.Load(); !requestFits(jobType, len(payload), limit) {
		return fmt.Errorf("%w: %d bytes, frame limit %d", ErrPayloadTooLarge, len(payload), limit)
	}
	return nil
}

// lowerFrameLimit lowers the frame limit to n, a worker's own.
func (g *gate) lowerFrameLimit(n int64) {
	for {
		cur := g.frameLimit.Load()
		if n >= cur || g.frameLimit.CompareAndSwap(cur, n) {
			return
		}
	}
}

// admit takes a slot for j, waiting for one while ctx allows when block is
// set, and registers j. It does not send j anywhere.
func (g *gate) admit(ctx context.Context, j *Job, block bool) error {
	select {
	case g.tokens <- struct{}{}:
	default:
		if !block {
			return ErrQueueFull
		}
		select {
		case g.tokens <- struct{}{}:
		case <-g.shut:
			return g.closedErr()
		case <-ctx.Done():
			return Cancelled(ctx.Err())
		}
	}
	g.mu.Lock()
	if g.closed != nil {
		g.mu.Unlock()
		<-g.tokens
		return g.closed
	}
	g.jobs[j] = struct{}{}
	g.mu.Unlock()
	j.gate = g
	j.accepted = time.Now()
	g.counters.accepted.Add(1)
	return nil
}

func (g *gate) closedErr() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// release forgets a resolved job and frees its slot.
func (g *gate) release(j *Job, err error) {
	g.mu.Lock()
	_, ok := g.jobs[j]
	delete(g.jobs, j)
	g.mu.Unlock()
	if ok {
		<-g.tokens
		g.counters.record(err, time.Since(j.accepted))
	}
}

// close refuses new jobs with err from now on.
func (g *gate) close(err error) {
	g.mu.Lock()
	if g.closed == nil {
		g.closed = err
		close(g.shut)
	}
	g.mu.Unlock()
}

// markStopped records that the router actor is gone.
func (g *gate) markStopped() { g.stopOnce.Do(func() { close(g.stopped) }) }

// pending returns the accepted jobs that have not resolved yet.
func (g *gate) pending() []*Job {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*Job, 0, len(g.jobs))
	for j := range g.jobs {
		out = append(out, j)
	}
	return out
}

// bind records the router's system and PID, once.
func (g *gate) bind(system *actor.ActorSystem, pid *actor.PID) {
	g.mu.Lock()
	if g.pid == nil {
		g.system, g.pid = system, pid
	}
	g.mu.Unlock()
}

// target returns the router's system and PID, nil before bind.
func (g *gate) target() (*actor.ActorSystem, *actor.PID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.system, g.pid
}

// send delivers a message to the router.
func (g *gate) send(msg any) {
	if system, pid := g.target(); pid != nil {
		system.Root.Send(pid, msg)
	}
}
