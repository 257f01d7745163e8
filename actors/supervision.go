package actors

import (
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/procpool/procpool/childproc"
	"github.com/procpool/procpool/supervisor"
)

// onExited settles a dead worker's jobs and applies the policy.
func (r *routerActor) onExited(ctx actor.Context, ex *workerExited) {
	w := r.workers[ex.pid.Id]
	if w == nil {
		return
	}
	delete(r.workers, ex.pid.Id)
	r.board.close(w)
	if !r.stopped && !ex.terminated {
		r.dying[ex.pid.Id] = struct{}{}
		ctx.Stop(ex.pid)
	}
	r.stats.Exits++
	if ex.unclean {
		r.stats.UncleanStops++
		r.event(EventUncleanStop, ex.info.PID, nil, fmt.Sprintf("asked to stop, it ended with %s", ex.info.String()))
	}
	for _, j := range ex.jobs {
		r.settle(j, ex)
	}
	if ex.failure == nil || r.draining {
		r.dispatch()
		return
	}
	r.stats.Crashes++
	r.lastCrash = crashOf(ex)
	if w.readyAt.IsZero() {
		r.startFailed(w, r.lastCrash)
	}
	now := time.Now()
	if w.readyAt.IsZero() {
		r.restarts.Healthy(now, now) // never got ready: no healthy period
	} else {
		r.restarts.Healthy(now, w.readyAt)
	}
	d := r.restarts.Failed(now, *ex.failure, r.rnd.Float64())
	r.event(EventCrashed, ex.info.PID, ex.failure, exitDetail(ex))
	if d.GaveUp {
		r.giveUp(ex)
		return
	}
	r.spawnAfter = now.Add(d.Delay)
	if d.Directive == supervisor.Restart {
		r.owed = append(r.owed, owed{pid: ex.info.PID, failure: ex.failure})
	}
	if r.spec.Policy.Strategy == supervisor.AllForOne {
		for _, other := range r.workers {
			if other.active() {
				r.owed = append(r.owed, owed{pid: other.proc, failure: ex.failure})
				r.retire(other)
			}
		}
	}
	r.dispatch()
}

// crashOf returns the forensics of a worker's failure, for its jobs and
// for ErrUnavailable.
func crashOf(ex *workerExited) *CrashError {
	return &CrashError{
		Cause: ErrWorkerCrashed, Reason: exitDetail(ex), PID: ex.info.PID,
		ExitCode: ex.info.Code, Signal: ex.info.Signal, StderrTail: ex.info.StderrTail,
		RSS: ex.rss, Uptime: ex.uptime, Err: ex.cause,
	}
}

// exitDetail says in a line how a worker ended: its exit and the failure
// the host found, or, for a process that never ran, why it did not start.
func exitDetail(ex *workerExited) string {
	if ex.neverRan {
		return "did not start: " + ex.cause.Error()
	}
	s := ex.info.String()
	if ex.cause != nil {
		s += ": " + ex.cause.Error()
	}
	return s
}

// settle decides the fate of a job whose worker died under it: retried at
// the front of the queue, quarantined, or failed, as Policy.Jobs says.
func (r *routerActor) settle(j *Job, ex *workerExited) {
	j.stopTimer()
	j.worker = nil
	if j.resolved() {
		return
	}
	if ex.failure == nil || r.draining {
		j.resolve(nil, fmt.Errorf("%w: worker pid %d stopped (%s) while running the job", ErrShuttingDown, ex.info.PID, ex.info.String()))
		return
	}
	if j.batch != nil {
		r.settleItems(j, ex)
		return
	}
	j.crashes++
	crash := crashOf(ex)
	crash.JobID, crash.Attempt = j.id.Load(), j.attempt
	retry := r.spec.Policy.Jobs.Retry(j.attempt, j.crashes)
	if retry == supervisor.RetryJob && j.noRetry {
		retry = supervisor.FailJob // its payload went with the worker
	}
	switch retry {
	case supervisor.RetryJob:
		r.stats.Retried++
		r.queue.pushFront(j)
	case supervisor.Quarantine:
		crash.Cause = ErrPoisonJob
		j.resolve(nil, crash)
	default:
		j.resolve(nil, crash)
	}
}

// settleItems decides, item by item, the fate of a Map job's items that
// were running on a worker that died: each is retried, quarantined or
// failed as Policy.Jobs says; the job goes back to the queue while items
// are left, and resolves once none is.
func (r *routerActor) settleItems(j *Job, ex *workerExited) {
	b := j.batch
	retry := false
	for k, item := range b.sent {
		if !r.itemUnanswered(j, item) {
			continue
		}
		b.crashes[item]++
		crash := crashOf(ex)
		crash.JobID, crash.Attempt = b.ids[k], int(b.attempts[item])
		switch r.spec.Policy.Jobs.Retry(int(b.attempts[item]), int(b.crashes[item])) {
		case supervisor.RetryJob:
			retry = true
		case supervisor.Quarantine:
			crash.Cause = ErrPoisonJob
			b.give(item, nil, crash)
		default:
			b.give(item, nil, crash)
		}
	}
	if b.allDone() {
		j.resolve(nil, nil)
		return
	}
	if retry {
		r.stats.Retried++
	}
	b.oneByOne.Store(true)
	r.queue.pushFront(j) // the items retried, and those not sent yet
}

// itemUnanswered reports whether item of Map job j has no outcome yet.
func (r *routerActor) itemUnanswered(j *Job, item int) bool {
	j.batch.mu.Lock()
	defer j.batch.mu.Unlock()
	return !j.batch.done[item]
}

// giveUp applies the policy's give-up action once the restart intensity
// is exceeded: every job waiting fails with ErrUnavailable and every
// worker retires; then the router cools down, or escalates to its parent.
func (r *routerActor) giveUp(ex *workerExited) {
	in := r.restarts.Policy().Intensity
	r.event(EventGaveUp, ex.info.PID, ex.failure, fmt.Sprintf("%s; policy allows %d restarts in %v",
		ex.failure.Kind, in.MaxRestarts, in.Window))
	r.gaveUp = true
	r.owed = nil
	err := r.unavailableErr()
	r.failQueued(err)
	for _, w := range r.workers {
		r.retire(w)
	}
	if r.spec.Policy.GiveUp == supervisor.EscalateToParent {
		// The router restarts or stops, and its workers with it: every job
		// it accepted fails now, with the reason.
		r.failAll(err)
		// A panic is how a protoactor actor reports a failure to its
		// parent's supervisor strategy.
		panic(fmt.Errorf("%w: %s", ErrUnavailable, exitDetail(ex)))
	}
	r.wake.Reset(time.Until(r.restarts.AvailableAt()))
}

// onWake runs at the end of a restart backoff or of a cool-down.
func (r *routerActor) onWake() {
	if r.gaveUp && r.restarts.Available(time.Now()) {
		r.gaveUp = false
		r.restarts.Reset()
		r.spawnAfter = time.Time{}
		r.event(EventRecovered, 0, nil, "cool-down over")
	}
}

// onTerminated forgets a stopped worker actor, or, if it stopped without
// reporting its exit (it panicked; its Stopping handler killed the
// process), treats it as a failure.
func (r *routerActor) onTerminated(ctx actor.Context, t *actor.Terminated) {
	if _, ok := r.dying[t.Who.Id]; ok {
		delete(r.dying, t.Who.Id)
		return
	}
	w := r.workers[t.Who.Id]
	if w == nil {
		return
	}
	var jobs []*Job
	if w.link != nil {
		jobs = w.link.takeAll()
		w.link.close()
	}
	f := &supervisor.Failure{Kind: supervisor.SignalFailure, ExitCode: -1, Err: errors.New("worker actor stopped unexpectedly")}
	info := childproc.ExitInfo{PID: w.proc, Code: -1, Err: f.Err}
	r.onExited(ctx, &workerExited{pid: t.Who, info: info, failure: f, cause: f.Err, jobs: jobs, terminated: true})
}
