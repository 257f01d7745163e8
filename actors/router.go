package actors

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"

	"github.com/procpool/procpool/supervisor"
)

// routerActor runs one job type: it owns the queue of accepted jobs and
// the workers (its children), dispatches by work-pulling (a job goes only to
// a worker with a free slot), scales between MinWorkers and MaxWorkers, and
// applies the job type's supervision policy when a worker fails.
type routerActor struct {
	spec     JobType
	env      *runtimeEnv
	gate     *gate
	self     *actor.PID
	system   *actor.ActorSystem
	ctx      actor.Context // the current message's context, during Receive
	log      hclog.Logger
	props    *actor.Props // of its workers
	restarts *supervisor.Restarts
	rnd      *rand.Rand

	queue   jobQueue
	workers map[string]*workerState // by actor id
	dying   map[string]struct{}     // worker actors told to stop, not yet terminated

	spawnAfter time.Time   // no spawn before (restart backoff)
	owed       int         // replacements owed to failed workers
	wake       *time.Timer // fires at spawnAfter or at the end of a cool-down
	tick       *time.Timer
	gaveUp     bool // unavailable until restarts.Available

	draining bool            // a drain or abort began
	aborted  error           // set by an abort: what late jobs fail with
	waiters  []chan struct{} // closed once no worker is left
	stopped  bool            // Stopping or Restarting was received: children stop by themselves

	stats Stats // the router-owned counters of Stats
}

// Messages of the router, besides *Job, *StatsRequest and the job
// notifications.
type (
	routerTick struct{}
	routerWake struct{}
	// shutdownRequest asks the router to finish (drain) or to kill its
	// workers and fail its jobs (abort); done is closed once no worker is
	// left.
	shutdownRequest struct {
		abort bool
		err   error
		done  chan struct{}
	}
)

// RouterOptions are what a router takes from its surroundings rather than
// from its job type.
type RouterOptions struct {
	// Logger is the parent of the job type's logger (nil: no logging),
	// unless the JobType has a Logger of its own.
	Logger hclog.Logger
	// Dispatcher runs the router and its workers (nil: protoactor's default
	// dispatcher). It must outlive the router.
	Dispatcher *Dispatcher
}

// RouterProps returns the Props of a router for job type t, and a handle
// for calling it from ordinary code. Spawn the Props with any actor context
// (for example as a child of your own actor); then either send the PID *Job
// messages with Request and receive *Result answers, or Bind the handle to
// the PID and use its methods. SpawnRouter does both steps.
func RouterProps(t JobType, opts RouterOptions) (*actor.Props, *Router, error) {
	if err := t.Validate(); err != nil {
		return nil, nil, err
	}
	t = t.withDefaults(runtime.NumCPU())
	logger, dispatcher := opts.Logger, opts.Dispatcher
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if t.Logger == nil {
		t.Logger = logger.Named(t.Name)
	}
	env := &runtimeEnv{dispatcher: dispatcher}
	g := newGate(t.QueueCapacity+t.MaxWorkers*t.InFlight, t.MaxFrame)
	h := &Router{spec: t, gate: g, env: env}
	popts := []actor.PropsOption{actor.WithSupervisor(stopOnPanic)}
	if dispatcher != nil {
		popts = append(popts, actor.WithDispatcher(dispatcher))
	}
	props := actor.PropsFromProducer(func() actor.Actor {
		return &routerActor{spec: t, env: env, gate: g}
	}, popts...)
	return props, h, nil
}

func (r *routerActor) Receive(ctx actor.Context) {
	r.ctx = ctx
	defer func() { r.ctx = nil }()
	switch msg := ctx.Message().(type) {
	case *Job:
		r.accept(ctx, msg)
	case *jobDone:
		r.onDone((*Job)(msg))
	case *cancelJob:
		r.onCancel((*Job)(msg))
	case *jobTimeout:
		r.onTimeout(ctx, (*Job)(msg))
	case *workerReady:
		r.onReady(msg)
	case *workerExited:
		r.onExited(ctx, msg)
	case *actor.Terminated:
		r.onTerminated(ctx, msg)
	case *routerTick:
		r.onTick()
		r.tick.Reset(r.tickInterval())
	case *routerWake:
		r.onWake()
	case *StatsRequest:
		ctx.Respond(r.snapshot())
	case *shutdownRequest:
		r.onShutdown(msg)
	case *actor.Started:
		r.onStarted(ctx)
	case *actor.Stopping:
		r.onStopping(false)
	case *actor.Restarting:
		r.onStopping(true)
	}
	r.ensureWorkers(ctx)
	r.checkDrained()
}

func (r *routerActor) onStarted(ctx actor.Context) {
	r.self, r.system = ctx.Self(), ctx.ActorSystem()
	r.gate.bind(r.system, r.self)
	r.log = r.spec.Logger
	r.props = newWorkerProps(&r.spec, r.env, r.gate)
	r.restarts = supervisor.NewRestarts(r.spec.Policy)
	r.rnd = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x5eed))
	r.workers = make(map[string]*workerState)
	r.dying = make(map[string]struct{})
	r.stats.JobType = r.spec.Name
	self, root := r.self, r.system.Root
	r.tick = time.AfterFunc(r.tickInterval(), func() { root.Send(self, &routerTick{}) })
	r.wake = time.AfterFunc(time.Hour, func() { root.Send(self, &routerWake{}) })
	r.wake.Stop()
	r.log.Debug("router started", "min", r.spec.MinWorkers, "max", r.spec.MaxWorkers)
}

func (r *routerActor) tickInterval() time.Duration {
	d := r.spec.IdleTimeout / 4
	if r.spec.IdleTimeout < 0 {
		d = time.Second
	}
	return min(max(d, 10*time.Millisecond), time.Second)
}

// accept takes a job into the queue. Jobs from Router.Submit were admitted
// by the gate already; jobs sent straight to the PID are admitted here,
// without blocking.
func (r *routerActor) accept(ctx actor.Context, j *Job) {
	if j.gate == nil {
		if j.done == nil {
			j.done = make(chan struct{})
		}
		j.replyTo, j.system = ctx.Sender(), r.system
		if err := r.gate.admit(context.Background(), j, false); err != nil {
			j.resolve(nil, err)
			return
		}
	}
	if j.resolved() {
		return // cancelled on its way here
	}
	if r.gaveUp {
		j.resolve(nil, r.unavailableErr())
		return
	}
	if r.aborted != nil {
		j.resolve(nil, r.aborted)
		return
	}
	r.queue.pushBack(j)
	r.dispatch()
}

func (r *routerActor) unavailableErr() error {
	return fmt.Errorf("%w: %q gave up restarting workers; retry after %s",
		ErrUnavailable, r.spec.Name, r.restarts.AvailableAt().Format(time.RFC3339Nano))
}

// dispatch hands queued jobs to free slots, first come first served.
func (r *routerActor) dispatch() {
	for r.queue.len() > 0 {
		if j := r.queue.peekFront(); j.resolved() {
			r.queue.popFront()
			continue
		}
		w := r.gate.nextSlot(r.queue.len())
		if w == nil {
			return
		}
		r.run(r.queue.popFront(), w)
	}
	r.gate.setQueued(0)
}

// run starts j on w's slot; if w takes no more jobs, j goes back to the
// front of the queue.
func (r *routerActor) run(j *Job, w *workerState) {
	if !start(j, w, &r.spec, viaWriter) {
		r.queue.pushFront(j)
		r.gate.setQueued(r.queue.len())
	}
}

// finish detaches a job from its worker (the job's answer arrived, or its
// worker died).
func (r *routerActor) finish(j *Job) {
	j.worker = nil
	if j.timer != nil {
		j.timer.Stop()
		j.timer = nil
	}
}

// onDone takes back the slot of an answered job that the link could not
// return by itself (jobs were queued, the worker is retiring, or it is due
// for recycling).
func (r *routerActor) onDone(j *Job) {
	w := j.worker
	r.finish(j)
	if w == nil || r.workers[w.pid.Id] != w {
		return // a worker already gone
	}
	if n := w.served.Load(); r.spec.RecycleAfterJobs > 0 && n >= int64(r.spec.RecycleAfterJobs) {
		r.recycle(w, fmt.Sprintf("served %d jobs", n))
	}
	if w.retiring || w.status != ready {
		r.retireIfIdle(w)
		return
	}
	if next := r.nextQueued(); next != nil {
		r.run(next, w)
		return
	}
	r.gate.pushSlot(w)
}

// nextQueued pops the first live job of the queue, if any.
func (r *routerActor) nextQueued() *Job {
	for r.queue.len() > 0 {
		j := r.queue.popFront()
		r.gate.setQueued(r.queue.len())
		if !j.resolved() {
			return j
		}
	}
	return nil
}

func (r *routerActor) onCancel(j *Job) {
	if j.worker != nil {
		j.worker.link.cancel(j.id)
		return
	}
	if r.queue.remove(j) {
		r.gate.setQueued(r.queue.len())
	}
}

func (r *routerActor) onTimeout(ctx actor.Context, j *Job) {
	if j.worker == nil || j.worker.link == nil || !j.worker.link.running(j.id) {
		return // answered meanwhile
	}
	j.resolve(nil, fmt.Errorf("%w: job %d ran longer than %v on worker pid %d (attempt %d)",
		ErrJobTimeout, j.id, r.spec.JobTimeout, j.worker.proc, j.attempt))
	j.worker.link.interrupt() // its caller may be reading for it
	j.worker.link.cancel(j.id)
	ctx.Send(j.worker.pid, &overrunCheck{id: j.id})
}

func (r *routerActor) onReady(msg *workerReady) {
	w := r.workers[msg.pid.Id]
	if w == nil {
		return
	}
	w.link, w.proc = msg.link, msg.proc
	w.readyAt = time.Now()
	w.lastDone.Store(w.readyAt.UnixNano())
	r.event(EventReady, w.proc, nil, "")
	if w.status != starting {
		return // asked to stop while starting
	}
	w.status = ready
	if old := w.replaces; old != nil {
		w.replaces = nil
		old.retiring = true
		r.retireIfIdle(old)
	}
	if r.draining && r.queue.len() == 0 {
		r.stopWorker(w)
		return
	}
	for range r.spec.InFlight {
		if j := r.nextQueued(); j != nil {
			r.run(j, w)
		} else {
			r.gate.pushSlot(w)
		}
	}
}

// onExited settles a dead worker's jobs and applies the policy.
func (r *routerActor) onExited(ctx actor.Context, ex *workerExited) {
	w := r.workers[ex.pid.Id]
	if w == nil {
		return
	}
	delete(r.workers, ex.pid.Id)
	r.gate.closeWorker(w)
	if !r.stopped {
		r.dying[ex.pid.Id] = struct{}{}
		ctx.Stop(ex.pid)
	}
	r.stats.Exits++
	if w.replaces != nil {
		w.replaces.recycling = false // its replacement died: try again later
	}
	for _, j := range ex.jobs {
		r.settle(j, ex)
	}
	if ex.failure == nil || r.draining {
		r.dispatch()
		return
	}
	r.stats.Crashes++
	now := time.Now()
	if w.readyAt.IsZero() {
		r.restarts.Healthy(now, now) // never got ready: no healthy period
	} else {
		r.restarts.Healthy(now, w.readyAt)
	}
	d := r.restarts.Failed(now, *ex.failure, r.rnd.Float64())
	r.event(EventCrashed, ex.info.PID, ex.failure, exitDetail(ex))
	if d.GaveUp {
		r.giveUp(ctx, ex)
		return
	}
	r.spawnAfter = now.Add(d.Delay)
	if d.Directive == supervisor.Restart {
		r.owed++
	}
	if r.spec.Policy.Strategy == supervisor.AllForOne {
		for _, other := range r.workers {
			if other.status != stopping && !other.retiring {
				r.owed++
				r.retire(other)
			}
		}
	}
	r.dispatch()
}

func exitDetail(ex *workerExited) string {
	s := ex.info.String()
	if ex.cause != nil {
		s += ": " + ex.cause.Error()
	}
	return s
}

// settle decides the fate of a job whose worker died under it.
func (r *routerActor) settle(j *Job, ex *workerExited) {
	if j.worker != nil {
		r.finish(j)
	}
	if j.resolved() {
		return
	}
	if ex.failure == nil || r.draining {
		j.resolve(nil, fmt.Errorf("%w: worker pid %d stopped (%s) while running the job", ErrShuttingDown, ex.info.PID, ex.info.String()))
		return
	}
	j.crashes++
	crash := &CrashError{
		Cause: ErrWorkerCrashed, Reason: exitDetail(ex), PID: ex.info.PID,
		ExitCode: ex.info.Code, Signal: ex.info.Signal, StderrTail: ex.info.StderrTail,
		RSS: ex.rss, JobID: j.id, Attempt: j.attempt, Uptime: ex.uptime,
	}
	switch r.spec.Policy.Jobs.Retry(j.attempt, j.crashes) {
	case supervisor.RetryJob:
		r.stats.Retried++
		r.queue.pushFront(j)
		r.gate.setQueued(r.queue.len())
	case supervisor.Quarantine:
		crash.Cause = ErrPoisonJob
		j.resolve(nil, crash)
	default:
		j.resolve(nil, crash)
	}
}

// giveUp applies the policy's give-up action once the restart intensity
// is exceeded.
func (r *routerActor) giveUp(ctx actor.Context, ex *workerExited) {
	in := r.restarts.Policy().Intensity
	r.event(EventGaveUp, ex.info.PID, ex.failure, fmt.Sprintf("%s; policy allows %d restarts in %v",
		ex.failure.Kind, in.MaxRestarts, in.Window))
	r.gaveUp = true
	r.owed = 0
	err := r.unavailableErr()
	r.failQueued(err)
	for _, w := range r.workers {
		r.retire(w)
	}
	if r.spec.Policy.GiveUp == supervisor.EscalateToParent {
		for _, j := range r.gate.pending() {
			if j.worker == nil {
				j.resolve(nil, err)
			}
		}
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

func (r *routerActor) onTerminated(ctx actor.Context, t *actor.Terminated) {
	if _, ok := r.dying[t.Who.Id]; ok {
		delete(r.dying, t.Who.Id)
		return
	}
	w := r.workers[t.Who.Id]
	if w == nil {
		return
	}
	// The worker actor stopped without reporting its exit (it panicked):
	// its Stopping handler killed the process.
	var jobs []*Job
	if w.link != nil {
		jobs = w.link.takeAll()
		w.link.close()
	}
	f := &supervisor.Failure{Kind: supervisor.SignalFailure, ExitCode: -1, Err: errors.New("worker actor stopped unexpectedly")}
	r.onExited(ctx, &workerExited{pid: t.Who, failure: f, cause: f.Err, jobs: jobs})
}

func (r *routerActor) onTick() {
	now := time.Now()
	active := r.activeCount()
	for _, w := range r.workers {
		if w.status != ready || w.retiring {
			continue
		}
		if idle := w.idleFor(now); r.spec.IdleTimeout > 0 && active > r.spec.MinWorkers &&
			idle >= r.spec.IdleTimeout && r.queue.len() == 0 {
			active--
			r.stats.Passivations++
			r.event(EventPassivated, w.proc, nil, fmt.Sprintf("idle for %v", idle.Round(time.Millisecond)))
			r.retire(w)
			continue
		}
		if r.spec.RecycleAge > 0 && now.Sub(w.readyAt) >= r.spec.RecycleAge {
			r.recycle(w, fmt.Sprintf("age %v", now.Sub(w.readyAt).Round(time.Millisecond)))
		}
		if w.running.Load() == 0 && r.spec.MaxRSS > 0 && w.link != nil {
			if rss := w.link.rss.Load(); rss > r.spec.MaxRSS {
				r.recycle(w, fmt.Sprintf("resident memory %d bytes above %d", rss, r.spec.MaxRSS))
			}
		}
		if !w.readyAt.IsZero() {
			r.restarts.Healthy(now, w.readyAt)
		}
	}
	r.onWake()
}

// recycle retires w by plan: a replacement starts first, and w stops once
// the replacement is ready and w's running jobs are done.
func (r *routerActor) recycle(w *workerState, why string) {
	if w.recycling || w.retiring || w.status != ready {
		return
	}
	w.recycling = true
	r.stats.Recycles++
	r.event(EventRecycled, w.proc, nil, why)
	if r.draining || r.gaveUp {
		r.retire(w)
		return
	}
	nw := r.spawn()
	nw.replaces = w
}

// retire closes w for new jobs; it stops once its running jobs are
// answered. This is how every planned stop (passivation, recycling, drain,
// all-for-one) begins, so no running job is ever interrupted by one.
func (r *routerActor) retire(w *workerState) {
	w.retiring = true
	r.gate.closeWorker(w)
	r.retireIfIdle(w)
}

// retireIfIdle stops a retiring worker once it has no job left. Closing the
// link first makes "no job left" final: no caller can dispatch after it.
func (r *routerActor) retireIfIdle(w *workerState) {
	if !w.retiring || w.status == stopping {
		return
	}
	if w.link != nil && w.link.closeForJobs() > 0 {
		return // its last answer comes back to the router (onDone)
	}
	r.stopWorker(w)
}

// stopWorker asks a worker with no job to stop.
func (r *routerActor) stopWorker(w *workerState) {
	if w.status == stopping {
		return
	}
	w.status = stopping
	r.gate.closeWorker(w)
	if w.link != nil {
		w.link.closeForJobs()
	}
	r.system.Root.Send(w.pid, &stopWorker{grace: r.spec.StopGrace})
}

// activeCount is the number of workers neither stopping nor retiring.
func (r *routerActor) activeCount() int {
	n := 0
	for _, w := range r.workers {
		if w.status != stopping && !w.retiring {
			n++
		}
	}
	return n
}

// ensureWorkers starts workers for the minimum, for owed replacements and
// for queued jobs that no ready or starting worker will take, within
// MaxWorkers and the restart backoff.
//
// While draining, only queued jobs count: a job admitted before the drain
// whose message arrived after it still gets a worker.
func (r *routerActor) ensureWorkers(ctx actor.Context) {
	if r.workers == nil || r.gaveUp || r.aborted != nil || (r.draining && r.queue.len() == 0) {
		return
	}
	active, warming, free := 0, 0, 0
	for _, w := range r.workers {
		switch {
		case w.status == stopping || w.retiring:
		case w.status == starting:
			active++
			warming++
		default:
			active++
			free += r.spec.InFlight - int(w.running.Load())
		}
	}
	need := r.spec.MinWorkers - active
	if r.draining {
		need = 0
	}
	if waiting := r.queue.len() - free - warming*r.spec.InFlight; waiting > 0 {
		need = max(need, (waiting+r.spec.InFlight-1)/r.spec.InFlight)
	}
	if !r.draining {
		need = max(need, min(r.owed, r.spec.MaxWorkers-active))
	}
	// Stopping workers still hold a process: never exceed MaxWorkers alive.
	need = min(need, r.spec.MaxWorkers-len(r.workers))
	if need <= 0 {
		if active >= r.spec.MaxWorkers {
			r.owed = 0 // the pool is full: nothing left to replace
		}
		return
	}
	if now := time.Now(); now.Before(r.spawnAfter) {
		r.wake.Reset(r.spawnAfter.Sub(now))
		return
	}
	for range need {
		r.spawn()
		if r.owed > 0 {
			r.owed--
			r.stats.Restarts++
			r.event(EventRestarted, 0, nil, "replacing a failed worker")
		}
	}
}

// spawn starts one worker as a child of the router.
func (r *routerActor) spawn() *workerState {
	pid := r.ctx.Spawn(r.props)
	w := &workerState{pid: pid, status: starting, spawned: time.Now()}
	r.workers[pid.Id] = w
	r.stats.Spawns++
	return w
}

func (r *routerActor) onShutdown(req *shutdownRequest) {
	r.draining = true
	r.waiters = append(r.waiters, req.done)
	r.gate.close(ErrShuttingDown)
	if req.abort {
		err := req.err
		if err == nil {
			err = ErrShuttingDown
		}
		r.aborted = err
		r.failQueued(err)
		for _, w := range r.workers {
			w.status = stopping
			r.gate.closeWorker(w)
			r.system.Root.Send(w.pid, &stopWorker{kill: true})
		}
	}
}

// checkDrained stops idle workers once a drain has emptied the queue, and
// signals the end once no worker is left.
func (r *routerActor) checkDrained() {
	if !r.draining {
		return
	}
	if r.queue.len() == 0 {
		for _, w := range r.workers {
			if !w.retiring && w.status != stopping {
				r.retire(w)
			}
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
		// Stopped for good (by its parent, or Shutdown): later calls on its
		// handle fail at once instead of waiting on a dead mailbox.
		r.gate.close(ErrShuttingDown)
		r.gate.markStopped()
	}
	if r.tick != nil {
		r.tick.Stop()
		r.wake.Stop()
	}
	for _, w := range r.workers {
		r.gate.closeWorker(w) // a restarted router must not inherit its slots
		if w.link != nil {
			for _, j := range w.link.takeAll() {
				if j.timer != nil {
					j.timer.Stop()
				}
				j.resolve(nil, fmt.Errorf("%w: router stopped", ErrShuttingDown))
			}
		}
	}
	r.failQueued(fmt.Errorf("%w: router stopped", ErrShuttingDown))
	for _, j := range r.gate.pending() {
		j.resolve(nil, fmt.Errorf("%w: router stopped", ErrShuttingDown))
	}
	r.releaseWaiters()
}

// failQueued resolves every queued job with err.
func (r *routerActor) failQueued(err error) {
	for r.queue.len() > 0 {
		r.queue.popFront().resolve(nil, err)
	}
	r.gate.setQueued(0)
}

func (r *routerActor) releaseWaiters() {
	for _, c := range r.waiters {
		close(c)
	}
	r.waiters = nil
}

func (r *routerActor) snapshot() *Stats {
	s := r.stats
	s.Queued = r.queue.len()
	for _, w := range r.workers {
		switch w.status {
		case starting:
			s.Starting++
		case stopping:
			s.Stopping++
		default:
			if w.running.Load() > 0 {
				s.Busy++
			} else {
				s.Idle++
			}
		}
		s.Running += int(w.running.Load())
	}
	s.Available = !r.gaveUp
	c := &r.gate.counters
	s.Accepted, s.Succeeded, s.Failed = c.accepted.Load(), c.succeeded.Load(), c.failed.Load()
	s.Cancelled, s.TimedOut = c.cancelled.Load(), c.timedOut.Load()
	s.SharedRequests, s.SharedResults = c.sharedRequests.Load(), c.sharedResults.Load()
	h := c.latency.Snapshot()
	s.LatencyP50, s.LatencyP99 = h.Quantile(0.5), h.Quantile(0.99)
	return &s
}

func (r *routerActor) event(kind EventKind, pid int, f *supervisor.Failure, detail string) {
	e := &WorkerEvent{Kind: kind, JobType: r.spec.Name, PID: pid, Failure: f, Detail: detail}
	switch kind {
	case EventCrashed, EventGaveUp:
		r.log.Warn("worker "+kind.String(), "pid", pid, "detail", detail)
	default:
		r.log.Debug("worker "+kind.String(), "pid", pid, "detail", detail)
	}
	publish(r.system, e)
}
