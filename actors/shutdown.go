package actors

import (
	"fmt"
)

// Every way a router ends but a drain goes through failAll, which fails
// whatever is left with one cause:
//
//	drain     (Router.Shutdown, Drain) no job is failed: the gate closes, the
//	          queue keeps being dispatched, each worker retires once the
//	          queue is empty, and the drain ends when no worker is left
//	          (checkDrained).
//	cancel    (CancelQueued) the queued jobs fail with ErrShuttingDown, then
//	          a drain lets the running ones finish.
//	abort     (Abort, or a drain's deadline passed) failAll with
//	          ErrShuttingDown, and every worker is killed.
//	give up   with EscalateToParent: failAll with ErrUnavailable, then the
//	          router panics so that its parent's strategy decides.
//	stopped   (by its parent, by Shutdown, or restarted) failAll with
//	          ErrShuttingDown; its workers stop with it, as its children.

// onShutdown begins a drain, a drain without the queued jobs, or an abort.
func (r *routerActor) onShutdown(req *shutdownRequest) {
	r.draining = true
	r.waiters = append(r.waiters, req.done)
	r.gate.close(ErrShuttingDown)
	r.answerReady(ErrShuttingDown)
	if ro := r.rollout; ro != nil {
		r.rollout = nil
		ro.done <- fmt.Errorf("%w: the update was interrupted", ErrShuttingDown)
	}
	switch req.mode {
	case CancelQueued:
		r.dropping = fmt.Errorf("%w: the shutdown cancelled the jobs still queued", ErrShuttingDown)
		r.failQueued(r.dropping)
	case Abort:
		err := req.err
		if err == nil {
			err = ErrShuttingDown
		}
		r.aborted = err
		r.failAll(err)
		for _, w := range r.workers {
			w.move(PhaseStopping)
			r.board.close(w)
			r.system.Root.Send(w.pid, &stopWorker{kill: true})
		}
	}
}

// checkDrained retires the workers once a drain has emptied the queue, and
// signals the end once no worker is left.
func (r *routerActor) checkDrained() {
	if !r.draining {
		return
	}
	if r.queue.len() == 0 {
		for _, w := range r.workers {
			r.retire(w)
		}
	}
	if len(r.workers) == 0 && len(r.dying) == 0 {
		r.releaseWaiters()
	}
}

// onStopping cleans up when the router itself stops or restarts: its
// workers are children and stop with it (killing their processes), and
// every job it accepted fails.
func (r *routerActor) onStopping(restarting bool) {
	r.stopped = true
	if !restarting {
		// Stopping for good (by its parent, or Shutdown): later calls on
		// its handle fail at once instead of waiting on a dead mailbox.
		// The gate is marked stopped once the actor is (actor.Stopped).
		r.gate.close(ErrShuttingDown)
	}
	if r.tick != nil {
		r.tick.Stop()
		r.wake.Stop()
	}
	for _, w := range r.workers {
		r.board.close(w) // a restarted router must not inherit its slots
	}
	r.failAll(fmt.Errorf("%w: router stopped", ErrShuttingDown))
	r.answerReady(ErrShuttingDown)
	if ro := r.rollout; ro != nil {
		r.rollout = nil
		ro.done <- fmt.Errorf("%w: router stopped", ErrShuttingDown)
	}
	r.releaseWaiters()
}

// failAll resolves with err every job the router accepted and that has not
// resolved: queued, running on a worker, or still in its mailbox (the
// gate's ledger has them all).
func (r *routerActor) failAll(err error) {
	r.failQueued(err)
	for _, w := range r.workers {
		if w.link == nil {
			continue
		}
		for _, j := range w.link.takeAll() {
			j.stopTimer()
			j.resolve(nil, err)
		}
	}
	for _, j := range r.gate.pending() {
		j.resolve(nil, err)
	}
}

// failQueued resolves every queued job with err.
func (r *routerActor) failQueued(err error) {
	for r.queue.len() > 0 {
		r.queue.popFront().resolve(nil, err)
	}
}

func (r *routerActor) releaseWaiters() {
	for _, c := range r.waiters {
		close(c)
	}
	r.waiters = nil
}
