package actors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/procpool/procpool/codec"
)

// Router is a handle for calling a router actor from ordinary code. It is
// safe for concurrent use. Obtain one from RouterProps and Bind it to the
// spawned PID, or from SpawnRouter, which does both.
type Router struct {
	spec JobType
	gate *gate
	env  *runtimeEnv
}

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
	_, pid := h.gate.target()
	return pid
}

// JobType returns the router's job type, with defaults filled in.
func (h *Router) JobType() JobType { return h.spec }

// Submit accepts a job and returns it at once; wait for it with Job.Wait or
// Job.Done. When the queue is full, Submit waits for a slot while ctx
// allows (and at most the job type's QueueWait). If ctx ends before the job
// resolves, the job is cancelled.
func (h *Router) Submit(ctx context.Context, kind PayloadKind, payload []byte) (*Job, error) {
	j, _, err := h.submit(ctx, kind, payload, true, direct)
	if err != nil {
		return nil, err
	}
	j.cancelWith(ctx)
	return j, nil
}

// TrySubmit is Submit without waiting: a full queue fails at once with
// ErrQueueFull.
func (h *Router) TrySubmit(ctx context.Context, kind PayloadKind, payload []byte) (*Job, error) {
	j, _, err := h.submit(ctx, kind, payload, false, direct)
	if err != nil {
		return nil, err
	}
	j.cancelWith(ctx)
	return j, nil
}

// Call runs one job and waits for its result. If ctx ends first, the job is
// cancelled and Call returns an error matching ErrCancelled and ctx.Err().
func (h *Router) Call(ctx context.Context, kind PayloadKind, payload []byte) ([]byte, error) {
	j, w, err := h.submit(ctx, kind, payload, true, directSelfRead)
	if err != nil {
		return nil, err
	}
	if w != nil && w.link.takeRole() {
		w.link.readFor(ctx, j)
	}
	return j.Wait(ctx)
}

// maxEnvelope bounds the bytes a request frame adds to its payload.
const maxEnvelope = 64 + 255

// requestFits reports whether the request frame of a payload of n bytes for
// jobType stays within limit.
func requestFits(jobType string, n int, limit int64) bool {
	return int64(n+len(jobType)+maxEnvelope) <= limit
}

// submit admits a job and dispatches it: straight to a free worker (which
// it returns) when nothing is queued, else through the router.
func (h *Router) submit(ctx context.Context, kind PayloadKind, payload []byte, block bool, mode sendMode) (*Job, *workerState, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, Cancelled(err)
	}
	if err := h.gate.checkSize(h.spec.Name, payload); err != nil {
		return nil, nil, err
	}
	if kind == Value {
		if err := codec.CheckValue(payload); err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrBadPayload, err)
		}
	}
	system, pid := h.gate.target()
	if pid == nil {
		return nil, nil, errors.New("procpool: router handle used before Bind")
	}
	j := NewJob(kind, payload)
	var err error
	if block && h.spec.QueueWait > 0 {
		err = h.gate.admit(ctx, j, false)
		if errors.Is(err, ErrQueueFull) {
			wctx, cancel := context.WithTimeout(ctx, h.spec.QueueWait)
			err = h.gate.admit(wctx, j, true)
			cancel()
			if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("%w: no slot within %v", ErrQueueFull, h.spec.QueueWait)
			}
		}
	} else {
		err = h.gate.admit(ctx, j, block)
	}
	if err != nil {
		return nil, nil, err
	}
	// Fast path: nothing queued and a slot free: write the request from
	// this goroutine, without crossing the router's mailbox.
	if w := h.gate.takeSlot(); w != nil && start(j, w, &h.spec, mode) {
		return j, w, nil
	}
	system.Root.Send(pid, j)
	return j, nil, nil
}

// Stats asks the router for a snapshot.
func (h *Router) Stats(ctx context.Context) (*Stats, error) {
	system, pid := h.gate.target()
	if pid == nil {
		return nil, errors.New("procpool: router handle used before Bind")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	res, err := system.Root.RequestFuture(pid, &StatsRequest{}, timeout).Result()
	if err != nil {
		return nil, fmt.Errorf("procpool: stats of %q: %w", h.spec.Name, err)
	}
	s, ok := res.(*Stats)
	if !ok {
		return nil, fmt.Errorf("procpool: stats of %q: unexpected answer %T", h.spec.Name, res)
	}
	return s, nil
}

// Shutdown stops the router gracefully: it refuses new jobs with
// ErrShuttingDown, lets queued and running jobs finish, then stops its
// workers. If ctx ends first, it kills the workers, fails every unfinished
// job with an error matching ErrShuttingDown, and returns ctx's error.
// Either way, when Shutdown returns the router's actor has stopped and
// every worker process has been reaped.
func (h *Router) Shutdown(ctx context.Context) error {
	system, pid := h.gate.target()
	if pid == nil {
		return nil
	}
	h.gate.close(ErrShuttingDown)
	drain := &shutdownRequest{done: make(chan struct{})}
	system.Root.Send(pid, drain)
	var err error
	select {
	case <-drain.done:
	case <-h.gate.stopped: // already stopped by its parent
	case <-ctx.Done():
		err = ctx.Err()
		abort := &shutdownRequest{abort: true, err: fmt.Errorf("%w: shutdown deadline passed", ErrShuttingDown), done: make(chan struct{})}
		system.Root.Send(pid, abort)
		select {
		case <-abort.done:
		case <-h.gate.stopped:
		case <-time.After(30 * time.Second):
		}
	}
	select {
	case <-h.gate.stopped:
	default:
		_ = system.Root.StopFuture(pid).Wait()
	}
	for _, j := range h.gate.pending() {
		j.resolve(nil, fmt.Errorf("%w: router stopped", ErrShuttingDown))
	}
	h.env.wg.Wait()
	return err
}
