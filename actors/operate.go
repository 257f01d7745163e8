package actors

import (
	"fmt"
	"slices"
	"time"
)

// Operations on a running router: waiting for readiness, resizing, and
// rolling updates. Each arrives as a request message and is answered on
// its done channel.
type (
	readyRequest  struct{ done chan error }
	resizeRequest struct {
		min, max int
		done     chan error
	}
	updateRequest struct {
		spec JobType // validated, defaults filled in
		done chan error
	}
)

// checkReady answers the Ready calls once MinWorkers workers are ready.
func (r *routerActor) checkReady() {
	if len(r.readyWaiters) == 0 {
		return
	}
	ready := 0
	for _, w := range r.workers {
		if w.phase == PhaseReady {
			ready++
		}
	}
	if ready >= r.spec.MinWorkers {
		r.answerReady(nil)
	}
}

// answerReady answers every Ready call waiting with err.
func (r *routerActor) answerReady(err error) {
	for _, c := range r.readyWaiters {
		c <- err
	}
	r.readyWaiters = nil
}

// startFailed tells the Ready calls and the rollout in progress that a
// worker failed before it was ready.
func (r *routerActor) startFailed(w *workerState, crash *CrashError) {
	err := fmt.Errorf("procpool: job type %q: a worker failed to start: %w", r.spec.Name, crash)
	r.answerReady(err)
	if ro := r.rollout; ro != nil && w.gen.n == ro.target {
		r.abortRollout(err)
	}
}

// onResize changes MinWorkers and MaxWorkers at once: the scaling plan
// starts what is missing, and workers above the new maximum retire,
// idle ones first (a retiring worker finishes its jobs).
func (r *routerActor) onResize(req *resizeRequest) {
	if r.draining || r.stopped {
		req.done <- ErrShuttingDown
		return
	}
	r.spec.MinWorkers, r.spec.MaxWorkers = req.min, req.max
	r.gate.setCapacity(r.spec.QueueCapacity + r.spec.MaxWorkers*r.spec.InFlight)
	r.retireAbove(r.spec.MaxWorkers)
	req.done <- nil
}

// retireAbove retires active workers until at most n remain: starting ones
// first, then the idle, then the least busy.
func (r *routerActor) retireAbove(n int) {
	var active []*workerState
	for _, w := range r.workers {
		if w.active() {
			active = append(active, w)
		}
	}
	if len(active) <= n {
		return
	}
	slices.SortFunc(active, func(a, b *workerState) int { return r.retireOrder(a) - r.retireOrder(b) })
	for _, w := range active[:len(active)-n] {
		r.retire(w)
	}
}

// retireOrder ranks a worker for retiring: lower goes first.
func (r *routerActor) retireOrder(w *workerState) int {
	if w.phase == PhaseStarting {
		return -1
	}
	return r.board.busy(w)
}

// rollout is an Update in progress: workers of older generations are
// replaced one at a time, each by a worker of the target generation that
// is ready before the old one retires.
type rollout struct {
	target   int         // the generation every worker must run
	previous *generation // restored if the rollout fails
	prevSpec JobType
	done     chan error
}

// onUpdate begins a rolling update to req.spec.
func (r *routerActor) onUpdate(req *updateRequest) {
	switch {
	case r.draining || r.stopped:
		req.done <- ErrShuttingDown
		return
	case r.rollout != nil:
		req.done <- fmt.Errorf("procpool: job type %q: an update is in progress already", r.spec.Name)
		return
	}
	ro := &rollout{previous: r.gen, prevSpec: r.spec, done: req.done}
	spec := req.spec
	r.spec = spec
	r.gens++
	r.gen = &generation{n: r.gens, spec: &spec}
	ro.target = r.gen.n
	r.rollout = ro
	r.gate.setCapacity(spec.QueueCapacity + spec.MaxWorkers*spec.InFlight)
	r.restarts.SetPolicy(spec.Policy)
	r.log.Info("rolling update begins", "generation", ro.target)
}

// advanceRollout moves the rollout on: when no worker of the target
// generation is starting, and the pool holds at most MaxWorkers processes,
// it starts one; a ready one lets an old worker retire (onReady); once no
// old worker is left (their last jobs done, their processes gone), the
// rollout is done.
func (r *routerActor) advanceRollout() {
	ro := r.rollout
	if ro == nil || r.workers == nil {
		return
	}
	var oldAlive, oldActive, starting, alive int
	for _, w := range r.workers {
		alive++
		switch {
		case w.gen.n != ro.target:
			oldAlive++
			if w.active() {
				oldActive++
			}
		case w.phase == PhaseStarting:
			starting++
		}
	}
	if oldAlive == 0 {
		r.rollout = nil
		r.log.Info("rolling update done", "generation", ro.target)
		ro.done <- nil
		return
	}
	if oldActive > 0 && starting == 0 && alive <= r.spec.MaxWorkers && !r.gaveUp && time.Now().After(r.spawnAfter) {
		r.spawn()
	}
}

// replaceOld retires one active worker of an older generation, the least
// busy, once a worker of the rollout's target generation is ready.
func (r *routerActor) replaceOld(ready *workerState) {
	ro := r.rollout
	if ro == nil || ready.gen.n != ro.target {
		return
	}
	var pick *workerState
	for _, w := range r.workers {
		if w.gen.n != ro.target && w.active() && (pick == nil || r.retireOrder(w) < r.retireOrder(pick)) {
			pick = w
		}
	}
	if pick != nil {
		r.retire(pick)
	}
}

// abortRollout ends a rollout that failed: new workers start from the
// previous spec again; the workers that run either spec keep serving.
func (r *routerActor) abortRollout(err error) {
	ro := r.rollout
	r.rollout = nil
	r.spec, r.gen = ro.prevSpec, ro.previous
	r.gate.setCapacity(r.spec.QueueCapacity + r.spec.MaxWorkers*r.spec.InFlight)
	r.restarts.SetPolicy(r.spec.Policy)
	r.log.Warn("rolling update aborted", "generation", ro.target, "error", err)
	ro.done <- err
}
