package actors

import (
	"math/rand/v2"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"

	"github.com/procpool/procpool/supervisor"
)

// routerActor runs one job type: it owns the queue of accepted jobs and
// the workers (its children). Its concerns live in files of their own:
//
//	dispatch.go     admission into the queue, work-pulling dispatch, cancels
//	lifecycle.go    readiness, scaling (scaling.go plans it), passivation,
//	                recycling, retiring and stopping workers
//	supervision.go  exits, the fate of a dead worker's jobs, restarts,
//	                giving up
//	shutdown.go     drain, abort, and the router's own stop
type routerActor struct {
	spec     JobType     // the job type in force; its MinWorkers and MaxWorkers follow Resize
	gen      *generation // what new workers start from
	gens     int         // generations made so far
	env      *runtimeEnv
	gate     *gate
	board    *slotBoard
	self     *actor.PID
	system   *actor.ActorSystem
	ctx      actor.Context // the current message's context, during Receive
	log      hclog.Logger
	restarts *supervisor.Restarts
	rnd      *rand.Rand

	queue   jobQueue
	workers map[string]*workerState // by actor id
	dying   map[string]struct{}     // worker actors told to stop, not yet terminated

	spawnAfter time.Time   // no spawn before (restart backoff)
	owed       []owed      // replacements owed to failed workers
	wake       *time.Timer // fires at spawnAfter or at the end of a cool-down
	tick       *time.Timer
	gaveUp     bool // unavailable until restarts.Available

	draining bool            // a drain or abort began
	aborted  error           // set by an abort: what late jobs fail with
	dropping error           // set by a shutdown that cancels queued jobs: what late jobs fail with
	waiters  []chan struct{} // closed once no worker is left
	stopped  bool            // Stopping or Restarting was received: children stop by themselves

	readyWaiters []chan error // Ready calls waiting for MinWorkers
	rollout      *rollout     // the Update in progress, if any
	lastCrash    *CrashError  // the last worker failure, for ErrUnavailable

	stats Stats // the router-owned counters of Stats
}

// owed is a replacement owed to a failed worker.
type owed struct {
	pid     int
	failure *supervisor.Failure
}

// generation is one version of a job type's spec: Update starts a new one.
// Its spec is never changed once made; each worker keeps the one it was
// started from.
type generation struct {
	n    int
	spec *JobType
}

// Messages of the router, besides *Job, *StatsRequest and the messages
// about workers and slots.
type (
	routerTick struct{}
	routerWake struct{}
	// shutdownRequest asks the router to finish as mode says; done is
	// closed once no worker is left.
	shutdownRequest struct {
		mode ShutdownMode
		err  error // what an abort fails jobs with
		done chan struct{}
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
	// Observer is told about the router's jobs and workers, for metrics and
	// traces (nil: nobody).
	Observer Observer
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
	t = t.withDefaults(defaultWorkers())
	logger, dispatcher := opts.Logger, opts.Dispatcher
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if t.Logger == nil {
		t.Logger = logger.Named(t.Name)
	}
	env := &runtimeEnv{dispatcher: dispatcher, obs: opts.Observer}
	g := newGate(t.Name, t.QueueCapacity+t.MaxWorkers*t.InFlight, opts.Observer)
	board := newSlotBoard()
	h := &Router{gate: g, board: board, env: env}
	spec := t
	h.setSpec(&spec)
	popts := []actor.PropsOption{actor.WithSupervisor(stopOnPanic)}
	if dispatcher != nil {
		popts = append(popts, actor.WithDispatcher(dispatcher))
	}
	props := actor.PropsFromProducer(func() actor.Actor {
		return &routerActor{spec: t, env: env, gate: g, board: board}
	}, popts...)
	return props, h, nil
}

func (r *routerActor) Receive(ctx actor.Context) {
	r.ctx = ctx
	defer func() { r.ctx = nil }()
	switch msg := ctx.Message().(type) {
	case *Job:
		r.accept(ctx, msg)
	case *slotFreed:
		r.onSlotFreed((*workerState)(msg))
	case *budgetSpent:
		r.recycle((*workerState)(msg), "it ran its last job")
	case *recycleDue:
		r.recycle(msg.w, msg.why)
	case *cancelJob:
		r.onCancel((*Job)(msg))
	case *batchMore:
		if j := (*Job)(msg); !j.resolved() {
			r.queue.pushFront(j)
			r.dispatch()
		}
	case *workerReady:
		r.onReady(msg)
	case *workerFailing:
		r.onFailing(msg)
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
	case *readyRequest:
		r.readyWaiters = append(r.readyWaiters, msg.done)
	case *resizeRequest:
		r.onResize(msg)
	case *updateRequest:
		r.onUpdate(msg)
	case *actor.Started:
		r.onStarted(ctx)
	case *actor.Stopping:
		r.onStopping(false)
	case *actor.Restarting:
		r.onStopping(true)
	case *actor.Stopped:
		// Stopped for good, its worker actors (children) stopped before it,
		// their processes reaped.
		r.gate.markStopped()
	}
	r.ensureWorkers()
	r.advanceRollout()
	r.checkReady()
	r.checkDrained()
}

func (r *routerActor) onStarted(ctx actor.Context) {
	r.self, r.system = ctx.Self(), ctx.ActorSystem()
	r.gate.bind(r.system, r.self)
	r.log = r.spec.Logger
	spec := r.spec
	r.gens = 1
	r.gen = &generation{n: r.gens, spec: &spec}
	r.restarts = supervisor.NewRestarts(r.spec.Policy)
	r.rnd = rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x5eed))
	r.queue = jobQueue{board: r.board}
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

// spawn starts one worker as a child of the router.
func (r *routerActor) spawn() *workerState {
	w := &workerState{phase: PhaseStarting, gen: r.gen, spawned: time.Now()}
	w.pid = r.ctx.Spawn(newWorkerProps(r.gen.spec, r.env, r.board, &r.gate.counters, w))
	r.workers[w.pid.Id] = w
	r.stats.Spawns++
	return w
}

func (r *routerActor) event(kind EventKind, pid int, f *supervisor.Failure, detail string) {
	e := &WorkerEvent{Kind: kind, JobType: r.spec.Name, PID: pid, Failure: f, Detail: detail}
	switch kind {
	case EventCrashed, EventGaveUp, EventUncleanStop:
		r.log.Warn("worker "+kind.String(), "pid", pid, "detail", detail)
	default:
		r.log.Debug("worker "+kind.String(), "pid", pid, "detail", detail)
	}
	r.env.publish(r.system, e)
}
