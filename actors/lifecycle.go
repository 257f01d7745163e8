package actors

import (
	"fmt"
	"time"
)

// onReady opens a worker that finished its handshake: its slots run queued
// jobs first, the rest are published for callers.
func (r *routerActor) onReady(msg *workerReady) {
	w := r.workers[msg.pid.Id]
	if w == nil {
		return
	}
	w.link, w.proc, w.process, w.limit = msg.link, msg.proc, msg.process, msg.limit
	w.readyAt = time.Now()
	w.lastDone.Store(w.readyAt.UnixNano())
	r.event(EventReady, w.proc, nil, "")
	if !w.move(PhaseReady) {
		return // asked to stop, or failed, while starting
	}
	if r.draining && r.queue.len() == 0 {
		r.stopWorker(w)
		return
	}
	budget := -1
	if n := w.gen.spec.RecycleAfterJobs; n > 0 {
		budget = n
	}
	r.board.open(w, w.gen.spec.InFlight, budget, w.limit)
	r.fill(w)
	r.replaceOld(w)
	r.dispatch() // the queue's head may now be known to fit no worker
}

// onFailing marks a worker that failed (the host kills it, or it leaves
// after a panic); it already gets no new job.
func (r *routerActor) onFailing(msg *workerFailing) {
	if w := r.workers[msg.pid.Id]; w != nil && w.move(PhaseFailing) {
		r.board.close(w)
		r.dispatch()
	}
}

// retire closes w for new jobs; it is stopped once its running jobs end.
// Every planned stop (passivation, recycling, drain, all-for-one, giving
// up) begins here, so none interrupts a job.
func (r *routerActor) retire(w *workerState) {
	switch w.phase {
	case PhaseStarting:
		r.stopWorker(w)
	case PhaseReady:
		w.move(PhaseRetiring)
		r.board.close(w)
		r.stopIfIdle(w)
	}
}

// stopIfIdle stops a retiring worker once no job runs on it.
func (r *routerActor) stopIfIdle(w *workerState) {
	if w.phase == PhaseRetiring && r.board.busy(w) == 0 {
		r.stopWorker(w)
	}
}

// stopWorker asks w to stop: the shutdown message, its grace, then signals.
func (r *routerActor) stopWorker(w *workerState) {
	if !w.move(PhaseStopping) {
		return
	}
	r.board.close(w)
	if w.link != nil {
		w.link.closeForJobs()
	}
	r.system.Root.Send(w.pid, &stopWorker{grace: r.spec.StopGrace})
}

// recycle retires w by plan (its job budget is spent, it is too old, or
// its memory too large): it gets no new job at once, its running jobs
// finish, and its replacement may start before it is gone. Recycling is
// not a failure.
func (r *routerActor) recycle(w *workerState, why string) {
	if r.workers[w.pid.Id] != w || w.recycled || w.phase != PhaseReady {
		return
	}
	w.recycled = true
	r.stats.Recycles++
	r.event(EventRecycled, w.proc, nil, why)
	r.retire(w)
}

// onTick passivates idle workers and recycles old ones.
func (r *routerActor) onTick() {
	now := time.Now()
	var serving []*workerState
	var idle []time.Duration
	for _, w := range r.workers {
		if w.phase != PhaseReady {
			continue
		}
		if age := now.Sub(w.readyAt); r.spec.RecycleAge > 0 && age >= r.spec.RecycleAge {
			r.recycle(w, fmt.Sprintf("age %v", age.Round(time.Millisecond)))
			continue
		}
		serving = append(serving, w)
		idle = append(idle, w.idleFor(now, r.board.busy(w)))
		r.restarts.Healthy(now, w.readyAt)
	}
	for _, i := range planPassivations(r.spec.MinWorkers, r.activeCount(), r.queue.len(), r.spec.IdleTimeout, idle) {
		w := serving[i]
		r.stats.Passivations++
		r.event(EventPassivated, w.proc, nil, fmt.Sprintf("idle for %v", idle[i].Round(time.Millisecond)))
		r.retire(w)
	}
	r.onWake()
}

// activeCount is the number of workers starting or ready.
func (r *routerActor) activeCount() int {
	n := 0
	for _, w := range r.workers {
		if w.active() {
			n++
		}
	}
	return n
}

// ensureWorkers starts the workers the scaling plan asks for (planSpawns),
// once the restart backoff has passed.
func (r *routerActor) ensureWorkers() {
	if r.workers == nil || r.stopped || r.gaveUp || r.aborted != nil {
		return
	}
	in := scaleInput{
		Min: r.spec.MinWorkers, Max: r.spec.MaxWorkers, InFlight: r.spec.InFlight,
		Queued: r.queue.len(), Owed: len(r.owed), Draining: r.draining,
	}
	for _, w := range r.workers {
		in.Alive++
		if w.recycled {
			in.Recycled++
		}
		switch w.phase {
		case PhaseStarting:
			in.Starting++
		case PhaseReady:
			if open, free := r.board.capacity(w); open {
				in.Serving++
				in.Free += free
			}
		}
	}
	spawn, full := planSpawns(in)
	if spawn <= 0 {
		if full {
			r.owed = nil // the pool is full: nothing left to replace
		}
		return
	}
	if now := time.Now(); now.Before(r.spawnAfter) {
		r.wake.Reset(r.spawnAfter.Sub(now))
		return
	}
	for range spawn {
		r.spawn()
		if len(r.owed) > 0 {
			o := r.owed[0]
			r.owed = r.owed[1:]
			r.stats.Restarts++
			r.event(EventRestarted, o.pid, o.failure, fmt.Sprintf("replacing failed worker %d", o.pid))
		}
	}
}
