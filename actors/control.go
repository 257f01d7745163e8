package actors

import (
	"context"
	"fmt"
	"time"

	"github.com/procpool/procpool/childproc"
)

// ShutdownMode says what a shutdown does with the jobs it finds.
type ShutdownMode int

const (
	// Drain refuses new jobs, lets the queued and running ones finish, then
	// stops the workers. It is what Shutdown does.
	Drain ShutdownMode = iota
	// CancelQueued refuses new jobs and fails the queued ones at once with
	// ErrShuttingDown (Python's cancel_futures); the running ones finish.
	CancelQueued
	// Abort fails every unfinished job with ErrShuttingDown and kills the
	// workers at once.
	Abort
)

// String returns the mode's name.
func (m ShutdownMode) String() string {
	switch m {
	case Drain:
		return "drain"
	case CancelQueued:
		return "cancel queued"
	case Abort:
		return "abort"
	}
	return fmt.Sprintf("ShutdownMode(%d)", int(m))
}

// Shutdown stops the router gracefully (Drain): it refuses new jobs with
// ErrShuttingDown, lets queued and running jobs finish, then stops its
// workers. If ctx ends first, it kills the workers, fails every unfinished
// job with an error matching ErrShuttingDown, and returns ctx's error.
// Either way, when Shutdown returns the router's actor has stopped and
// every worker process has been reaped.
func (h *Router) Shutdown(ctx context.Context) error { return h.ShutdownWith(ctx, Drain) }

// ShutdownWith stops the router as mode says; if ctx ends first, it aborts.
// When it returns, the router's actor has stopped and every worker process
// has been reaped.
func (h *Router) ShutdownWith(ctx context.Context, mode ShutdownMode) error {
	r := h.gate.target()
	if r == nil {
		return nil
	}
	h.gate.close(ErrShuttingDown)
	req := &shutdownRequest{mode: mode, err: fmt.Errorf("%w: shutdown aborted", ErrShuttingDown), done: make(chan struct{})}
	r.system.Root.Send(r.pid, req)
	var err error
	select {
	case <-req.done:
	case <-h.gate.stopped: // already stopped by its parent
	case <-ctx.Done():
		err = ctx.Err()
		abort := &shutdownRequest{mode: Abort, err: fmt.Errorf("%w: shutdown deadline passed", ErrShuttingDown), done: make(chan struct{})}
		r.system.Root.Send(r.pid, abort)
		select {
		case <-abort.done:
		case <-h.gate.stopped:
		case <-time.After(30 * time.Second):
		}
	}
	if !h.gate.isStopped() {
		_ = r.system.Root.StopFuture(r.pid).Wait()
	}
	for _, j := range h.gate.pending() {
		j.resolve(nil, fmt.Errorf("%w: router stopped", ErrShuttingDown))
	}
	h.env.wg.Wait()
	h.gate.resizing.Wait()
	childproc.ReleaseSpares(h.gate.jobType) // no start is coming from this router
	return err
}

// Ready waits until the job type's MinWorkers workers are ready (at once
// when MinWorkers is 0), and returns nil; or until a worker fails to
// start, and returns why: an error matching ErrWorkerCrashed that carries
// a *CrashError, whose Err is the start's own error (errors.As finds an
// *exec.Error or *fs.PathError for a missing binary). It returns
// ErrShuttingDown once the router stops, and ctx's error if ctx ends first.
func (h *Router) Ready(ctx context.Context) error {
	req := &readyRequest{done: make(chan error, 1)}
	return h.ask(ctx, req, req.done)
}

// Resize changes MinWorkers and MaxWorkers at once: missing workers start
// now, and workers above the new maximum retire (idle ones first; a
// retiring worker finishes its jobs). The queue's bound follows
// (QueueCapacity + max × InFlight). It returns once the router has applied
// it, not once the workers have started or stopped.
func (h *Router) Resize(ctx context.Context, minWorkers, maxWorkers int) error {
	if minWorkers < 0 || maxWorkers < 1 || minWorkers > maxWorkers {
		return fmt.Errorf("%w %q: Resize(%d, %d): want 0 <= min <= max, max >= 1", ErrInvalidJobType, h.spec().Name, minWorkers, maxWorkers)
	}
	req := &resizeRequest{min: minWorkers, max: maxWorkers, done: make(chan error, 1)}
	if err := h.ask(ctx, req, req.done); err != nil {
		return err
	}
	spec := *h.spec()
	spec.MinWorkers, spec.MaxWorkers = minWorkers, maxWorkers
	h.setSpec(&spec)
	return nil
}

// Update replaces every worker with one started from t, in a rolling
// reload: t is validated first (its Name must be the router's); then, one
// at a time, a worker started from t is made ready before an old one
// retires, so the pool never holds more than MaxWorkers + 1 processes,
// running jobs finish on the old workers, and no job is lost. A worker of
// t that fails to start aborts the rollout: new workers start from the
// previous spec again, the old ones keep serving, and Update returns the
// failure (an error carrying a *CrashError). Update returns nil once no
// worker runs the old spec. If ctx ends first it returns ctx's error, and
// the rollout goes on.
func (h *Router) Update(ctx context.Context, t JobType) error {
	cur := h.spec()
	if t.Name != cur.Name {
		return fmt.Errorf("%w %q: Update cannot rename the job type to %q", ErrInvalidJobType, cur.Name, t.Name)
	}
	if err := t.Validate(); err != nil {
		return err
	}
	t = t.withDefaults(defaultWorkers())
	if t.Logger == nil {
		t.Logger = cur.Logger
	}
	req := &updateRequest{spec: t, done: make(chan error, 1)}
	h.setSpec(&t)
	err := h.ask(ctx, req, req.done)
	if err != nil && ctx.Err() == nil {
		h.setSpec(cur)
	}
	return err
}

// ask sends req to the router and waits for its answer on done.
func (h *Router) ask(ctx context.Context, req any, done <-chan error) error {
	r := h.gate.target()
	if r == nil {
		return errUnbound
	}
	if h.gate.isStopped() {
		return ErrShuttingDown
	}
	r.system.Root.Send(r.pid, req)
	select {
	case err := <-done:
		return err
	case <-h.gate.stopped:
		return ErrShuttingDown
	case <-ctx.Done():
		return ctx.Err()
	}
}
