package actors

import (
	"context"
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
	// value for codec.Value. It is not copied: do not modify it until the
	// job has resolved.
	Payload []byte
	// Kind says how Payload is encoded. The result must come back in the
	// same kind, or the job fails with ErrBadResult.
	Kind PayloadKind

	state  atomic.Uint32 // jobPending, then jobResolved
	done   chan struct{}
	result []byte
	err    error

	// Set once, before the job reaches its router.
	gate     *gate
	replyTo  *actor.PID
	system   *actor.ActorSystem
	accepted time.Time
	deadline time.Time       // the caller's context's deadline, if any
	ctx      context.Context // that context, when it has a deadline
	obs      JobObserver     // follows the job for the router's Observer, or nil

	// Where the job runs. A job has one owner at a time (see inflight): the
	// caller that admitted it, the router while it is queued, or the
	// in-flight table of the link it runs on. worker, attempt and crashes
	// are written by the owner that dispatches it, before it enters a
	// table, and read by whoever takes it out.
	worker     *workerState // where it runs; nil while queued
	attempt    int          // runs so far, from 1 once dispatched
	crashes    int          // workers that died running it
	byDeadline bool         // the time budget sent with it is the caller's deadline's
	noRetry    bool         // its payload lived in a dead worker's region only (CallFill)
	batch      *batch       // the items of a Map job, nil for a job of one payload
	stream     *stream      // a streamed job's partial results, or nil

	// Read by other goroutines while it runs (to cancel it or time it out).
	link  atomic.Pointer[link]       // the link it last ran on
	id    atomic.Uint64              // its id on that link
	timer atomic.Pointer[time.Timer] // its timeout, while it runs
	// dispatched is when it was last dispatched, unix nanos (0: never).
	dispatched atomic.Int64

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
// worker) and Wait returns an error matching ErrCancelled, ctx.Err() and
// context.Cause(ctx).
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
		j.cancel(cancelledBy(ctx))
		<-j.done
		return j.result, j.err
	}
}

// Cancel resolves the job with an error matching ErrCancelled and cause, if
// it has not resolved yet, and tells its router to drop it from the queue or
// to send a cancel message to its worker.
func (j *Job) Cancel(cause error) { j.cancel(Cancelled(cause)) }

func (j *Job) cancel(err error) {
	if j.resolve(nil, err) && j.gate != nil {
		j.gate.send((*cancelJob)(j))
	}
}

// cancelWith ties the job to ctx: when ctx ends before the job resolves,
// the job is cancelled. The watch is dropped when the job resolves.
func (j *Job) cancelWith(ctx context.Context) {
	if ctx.Done() == nil {
		return
	}
	stop := context.AfterFunc(ctx, func() { j.cancel(cancelledBy(ctx)) })
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
	if j.batch != nil && err != nil {
		j.batch.failRest(err)
	}
	if j.stream != nil {
		j.stream.close()
	}
	close(j.done)
	if j.replyTo != nil && j.system != nil {
		j.system.Root.Send(j.replyTo, &Result{Job: j, Payload: result, Err: err})
	}
	return true
}

// resolved reports whether the job has resolved.
func (j *Job) resolved() bool { return j.state.Load() == jobResolved }

// stopTimer stops the job's timeout, if it has one running.
func (j *Job) stopTimer() {
	if t := j.timer.Swap(nil); t != nil {
		t.Stop()
	}
}

// Result is what a router answers to the sender of a *Job.
type Result struct {
	Job     *Job
	Payload []byte
	Err     error
}
