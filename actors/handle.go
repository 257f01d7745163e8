package actors

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Router is a handle for calling a router actor from ordinary code. It is
// safe for concurrent use. Obtain one from RouterProps and Bind it to the
// spawned PID, or from SpawnRouter, which does both.
type Router struct {
	cur   atomic.Pointer[JobType] // the job type in force, with defaults filled in
	gate  *gate
	board *slotBoard
	env   *runtimeEnv
}

func (h *Router) spec() *JobType     { return h.cur.Load() }
func (h *Router) setSpec(t *JobType) { h.cur.Store(t) }
func defaultWorkers() int            { return runtime.NumCPU() }

// errUnbound reports a handle used before Bind.
var errUnbound = errors.New("procpool: router handle used before Bind")

// SpawnRouter spawns a router for t as a child of parent (any actor
// context, or an ActorSystem's Root) and returns its bound handle.
func SpawnRouter(parent actor.SpawnerContext, t JobType, opts RouterOptions) (*Router, *actor.PID, error) {
	props, h, err := RouterProps(t, opts)
	if err != nil {
		return nil, nil, err
	}
	pid, err := parent.SpawnNamed(props, "router-"+t.Name)
	if err != nil {
		return nil, nil, fmt.Errorf("procpool: spawn router %q: %w", t.Name, err)
	}
	h.Bind(parent.ActorSystem(), pid)
	return h, pid, nil
}

// Bind tells the handle which spawned actor it calls. Call it once, right
// after spawning the Props returned with it.
func (h *Router) Bind(system *actor.ActorSystem, pid *actor.PID) {
	h.gate.bind(system, pid)
}

// PID returns the router's actor PID, nil before Bind.
func (h *Router) PID() *actor.PID {
	if r := h.gate.target(); r != nil {
		return r.pid
	}
	return nil
}

// Done returns a channel closed once the router's actor has stopped for
// good (Shutdown, or its parent stopped it): its calls then fail with
// ErrShuttingDown.
func (h *Router) Done() <-chan struct{} { return h.gate.stopped }

// JobType returns the router's job type, with defaults filled in (after
// Resize and Update, the one in force).
func (h *Router) JobType() JobType { return *h.spec() }

// Call runs one job and waits for its result. If ctx ends first, the job is
// cancelled and Call returns an error matching ErrCancelled, ctx.Err() and
// context.Cause(ctx), without waiting for the worker.
func (h *Router) Call(ctx context.Context, kind PayloadKind, payload []byte) ([]byte, error) {
	j, err := h.admit(ctx, kind, payload, true)
	if err != nil {
		return nil, err
	}
	// Fast path: nothing queued and a slot free: write the request and read
	// the answer from this goroutine, crossing no actor mailbox.
	if w := h.takeSlot(j); w != nil {
		var stop func() bool
		if ctx.Done() != nil {
			stop = context.AfterFunc(ctx, w.link.interrupt)
		}
		if h.startOn(j, w, directSelfRead) {
			w.link.readFor(j)
		}
		if stop != nil {
			stop()
		}
	}
	return j.Wait(ctx)
}

// Submit accepts a job and returns it at once; wait for it with Job.Wait or
// Job.Done. When the queue is full, Submit waits for room while ctx allows
// (and at most the job type's QueueWait). If ctx ends before the job
// resolves, the job is cancelled.
func (h *Router) Submit(ctx context.Context, kind PayloadKind, payload []byte) (*Job, error) {
	return h.submit(ctx, kind, payload, true)
}

// TrySubmit is Submit without waiting: a full queue fails at once with
// ErrQueueFull.
func (h *Router) TrySubmit(ctx context.Context, kind PayloadKind, payload []byte) (*Job, error) {
	return h.submit(ctx, kind, payload, false)
}

func (h *Router) submit(ctx context.Context, kind PayloadKind, payload []byte, block bool) (*Job, error) {
	j, err := h.admit(ctx, kind, payload, block)
	if err != nil {
		return nil, err
	}
	if w := h.takeSlot(j); w != nil {
		var stop func() bool
		if ctx.Done() != nil {
			stop = context.AfterFunc(ctx, w.link.interrupt) // bounds the write
		}
		h.startOn(j, w, direct)
		if stop != nil {
			stop()
		}
	}
	j.cancelWith(ctx)
	return j, nil
}

// admit checks a job's payload and admits it: the job is accepted (and must
// resolve) once admit returns it.
func (h *Router) admit(ctx context.Context, kind PayloadKind, payload []byte, block bool) (*Job, error) {
	if ctx.Err() != nil {
		return nil, cancelledBy(ctx)
	}
	if err := h.checkSize(len(payload)); err != nil {
		return nil, err
	}
	if err := checkValue(kind, payload); err != nil {
		return nil, err
	}
	return h.enter(ctx, NewJob(kind, payload), block)
}

// admitSize admits a job whose payload of n bytes is yet to be written.
func (h *Router) admitSize(ctx context.Context, kind PayloadKind, n int) (*Job, error) {
	if ctx.Err() != nil {
		return nil, cancelledBy(ctx)
	}
	if err := h.checkSize(n); err != nil {
		return nil, err
	}
	return h.enter(ctx, NewJob(kind, nil), true)
}

// checkSize refuses a payload of n bytes whose request frame cannot fit in
// the job type's MaxFrame.
func (h *Router) checkSize(n int) error {
	if spec := h.spec(); !requestFits(spec.Name, n, int64(spec.MaxFrame)) {
		return fmt.Errorf("%w: %d bytes, frame limit %d", ErrPayloadTooLarge, n, spec.MaxFrame)
	}
	return nil
}

// enter admits j through the gate, waiting for room when block is set (at
// most QueueWait, if set).
func (h *Router) enter(ctx context.Context, j *Job, block bool) (*Job, error) {
	if h.gate.target() == nil {
		return nil, errUnbound
	}
	if dl, ok := ctx.Deadline(); ok {
		j.deadline, j.ctx = dl, ctx
	}
	spec := h.spec()
	var err error
	if block && spec.QueueWait > 0 {
		err = h.gate.admit(ctx, j, false)
		if errors.Is(err, ErrQueueFull) {
			wctx, cancel := context.WithTimeout(ctx, spec.QueueWait)
			err = h.gate.admit(wctx, j, true)
			cancel()
			if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("%w: no slot within %v", ErrQueueFull, spec.QueueWait)
			}
		}
	} else {
		err = h.gate.admit(ctx, j, block)
	}
	if err != nil {
		return nil, err
	}
	return j, nil
}

// takeSlot takes a free slot for j when nothing is queued; otherwise it
// sends j to the router's queue and returns nil.
func (h *Router) takeSlot(j *Job) *workerState {
	w, due := h.board.take(requestSize(h.gate.jobType, j.payloadLen()))
	if w == nil {
		h.gate.send(j)
		return nil
	}
	if due {
		h.gate.send((*budgetSpent)(w))
	}
	return w
}

// startOn starts j on the slot of w it took, from the caller's goroutine;
// if w takes no more jobs, j goes to the router's queue.
func (h *Router) startOn(j *Job, w *workerState, mode sendMode) bool {
	if start(j, w, mode) {
		return true
	}
	h.board.abandon(w)
	h.gate.send(j)
	return false
}

// Stats asks the router for a snapshot. It fails with ErrShuttingDown once
// the router has stopped.
func (h *Router) Stats(ctx context.Context) (*Stats, error) {
	r := h.gate.target()
	if r == nil {
		return nil, errUnbound
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name := h.gate.jobType
	if h.gate.isStopped() {
		return nil, fmt.Errorf("procpool: stats of %q: %w", name, ErrShuttingDown)
	}
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	res, err := r.system.Root.RequestFuture(r.pid, &StatsRequest{}, timeout).Result()
	if err != nil {
		if h.gate.isStopped() {
			err = ErrShuttingDown
		}
		return nil, fmt.Errorf("procpool: stats of %q: %w", name, err)
	}
	s, ok := res.(*Stats)
	if !ok {
		return nil, fmt.Errorf("procpool: stats of %q: unexpected answer %T", name, res)
	}
	return s, nil
}
