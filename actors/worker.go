package actors

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"

	"github.com/procpool/procpool/childproc"
	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/sharedmem"
	"github.com/procpool/procpool/supervisor"
)

// workerActor wraps one worker process. It starts the process, owns its
// link, its timers (handshake, heartbeat, job overrun, departure after a
// panic) and its exit, which it reports to its router as a *workerExited
// once the link has read everything the worker wrote before it died. It
// does not stop itself: the router stops it after reading the report
// (Terminated, a system message, would otherwise overtake the report).
type workerActor struct {
	spec     *JobType
	env      *runtimeEnv
	board    *slotBoard
	counters *counters
	ws       *workerState // the router's record; only the board and atomics touch it here
	system   *actor.ActorSystem
	router   *actor.PID
	self     *actor.PID
	log      hclog.Logger

	proc    *childproc.Process
	start   *startGuard
	link    *link
	hooks   *linkHooks
	ready   bool
	started time.Time

	failure   *supervisor.Failure // set when the host decided the worker failed
	failErr   error
	stopAsked bool                // a stop was asked: the exit is not a failure
	killAsked bool                // ... and it was a kill
	exit      *childproc.ExitInfo // the process has ended
	reported  bool
	timers    []*time.Timer
	heartbeat *time.Timer
}

// startGuard hands the process that the start goroutine started over to
// the actor, or, when the actor stopped first, back to the goroutine to
// kill: a process must never outlive its actor unseen.
type startGuard struct {
	mu      sync.Mutex
	halted  bool               // the actor stopped
	started *childproc.Process // sent to the actor, maybe not yet received
	shm     *sharedmem.Host    // sent with it
}

// runtimeEnv is what every actor of one router shares: the dispatcher and
// a wait group that counts goroutines and processes not yet finished, so
// that shutdown can wait for all of them.
type runtimeEnv struct {
	dispatcher *Dispatcher
	obs        Observer // nil: nobody
	wg         sync.WaitGroup
}

// publish puts a supervision event on the actor system's event stream and
// tells the Observer.
func (env *runtimeEnv) publish(system *actor.ActorSystem, e *WorkerEvent) {
	e.Time = time.Now()
	system.EventStream.Publish(e)
	if env.obs != nil {
		env.obs.Event(e)
	}
}

// exitReadGrace bounds the wait, after the process exited, for the link to
// read what the worker wrote before it died.
const exitReadGrace = 2 * time.Second

// Messages of the worker actor.
type (
	procStarted struct {
		proc *childproc.Process
		shm  *sharedmem.Host // the worker's shared memory region, if any
		err  error
	}
	procExited struct{ info childproc.ExitInfo }
	// stopWorker asks for a graceful stop (passivation, recycling, a
	// drain): the shutdown message, the grace, then signals; or a kill.
	stopWorker struct {
		grace time.Duration
		kill  bool // kill at once, still as a requested stop
	}
	linkReady  struct{ limit int64 }
	linkClosed struct{ err error }
	// overrunCheck: job id overran its timeout and was sent a cancel; kill
	// the worker if it still runs the job after CancelGrace (overrunKill).
	overrunCheck      struct{ id uint64 }
	overrunKill       struct{ id uint64 }
	memoryOver        struct{ rss uint64 }
	workerLeaving     struct{}
	leavingTimeout    struct{}
	handshakeTimeout  struct{}
	heartbeatTick     struct{}
	exitReportTimeout struct{}
)

// Messages from a worker actor to its router.
type (
	// workerReady: the handshake is done; limit is the worker's frame limit.
	workerReady struct {
		pid     *actor.PID
		link    *link
		proc    int
		process *childproc.Process // for the router's statistics
		limit   int64
	}
	// workerFailing: the worker failed and is being killed (or leaves after
	// a panic); it gets no more jobs.
	workerFailing struct{ pid *actor.PID }
	// workerExited: the process is gone; jobs were still running on it (the
	// router owns them now).
	workerExited struct {
		pid     *actor.PID
		info    childproc.ExitInfo
		failure *supervisor.Failure // nil for a stop that was asked for
		unclean bool                // a graceful stop that did not end in exit 0
		cause   error
		jobs    []*Job
		rss     uint64
		uptime  time.Duration
		// terminated: the report stands in for one the actor never sent
		// (it stopped unexpectedly)
		terminated bool
		neverRan   bool // the process could not be started
	}
)

func newWorkerProps(spec *JobType, env *runtimeEnv, board *slotBoard, c *counters, ws *workerState) *actor.Props {
	opts := []actor.PropsOption{actor.WithSupervisor(stopOnPanic)}
	if env.dispatcher != nil {
		opts = append(opts, actor.WithDispatcher(env.dispatcher))
	}
	return actor.PropsFromProducer(func() actor.Actor {
		return &workerActor{spec: spec, env: env, board: board, counters: c, ws: ws}
	}, opts...)
}

func (w *workerActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		w.self, w.router, w.system = ctx.Self(), ctx.Parent(), ctx.ActorSystem()
		w.log = w.spec.Logger
		w.started = time.Now()
		w.startProcess()
	case *procStarted:
		w.onStarted(ctx, msg)
	case *linkReady:
		w.onReady(ctx, msg.limit)
	case *linkClosed:
		w.onLinkClosed(ctx, msg.err)
	case *handshakeTimeout:
		if !w.ready {
			w.fail(supervisor.StartupFailure, fmt.Errorf("no handshake within %v", w.spec.HandshakeTimeout))
		}
	case *heartbeatTick:
		w.onHeartbeat()
	case *overrunCheck:
		w.after(w.spec.CancelGrace, &overrunKill{id: msg.id})
	case *overrunKill:
		if w.link != nil && w.link.running(msg.id) {
			w.fail(supervisor.JobTimeoutFailure, fmt.Errorf("job %d overran its timeout by more than %v", msg.id, w.spec.CancelGrace))
		}
	case *memoryOver:
		w.fail(supervisor.MemoryFailure, fmt.Errorf("resident memory %d bytes above the ceiling of %d", msg.rss, w.spec.KillRSS))
	case *workerLeaving:
		w.after(w.spec.StopGrace, &leavingTimeout{})
	case *leavingTimeout:
		w.fail(supervisor.ProtocolFailure, fmt.Errorf("the worker answered a panic but did not exit within %v", w.spec.StopGrace))
	case *stopWorker:
		w.onStop(msg)
	case *procExited:
		w.onExited(ctx, msg.info)
	case *exitReportTimeout:
		w.report(ctx)
	case *actor.Stopping:
		// Stopped by the router (or the router itself stops): never leave
		// the process behind.
		w.stopTimers()
		w.haltStart()
		if w.proc != nil && w.exit == nil {
			_ = w.proc.Kill()
		}
		if w.link != nil {
			w.link.close() // its writer ends now, its reader at the pipe's end
		}
	}
}

func (w *workerActor) startProcess() {
	spec := w.spec.processSpec(w.log)
	self, env := w.self, w.env
	size, log := w.spec.SharedMemory, w.log
	guard := &startGuard{}
	w.start = guard
	env.wg.Add(1)
	go func() {
		defer env.wg.Done()
		var shm *sharedmem.Host
		if size > 0 {
			f, h, err := sharedmem.Create("procpool-"+spec.Name, size)
			if err != nil {
				log.Warn("starting a worker without a shared memory region", "error", err)
			} else {
				shm = h
				spec.ExtraFiles = []*os.File{f} // fd 5
				defer f.Close()                 // the worker has its copy, the host its mapping
			}
		}
		p, err := childproc.Start(spec)
		guard.mu.Lock()
		halted := guard.halted
		if (err != nil || halted) && shm != nil {
			shm.Close()
			shm = nil
		}
		if !halted {
			guard.started, guard.shm = p, shm
		}
		guard.mu.Unlock()
		if halted {
			if p != nil {
				_ = p.Kill()
				<-p.Done()
			}
			return
		}
		w.system.Root.Send(self, &procStarted{proc: p, shm: shm, err: err})
	}()
}

// haltStart makes sure that a process started for this actor, whose
// procStarted the actor may never receive now that it stops, is killed.
func (w *workerActor) haltStart() {
	g := w.start
	if g == nil {
		return
	}
	g.mu.Lock()
	g.halted = true
	p, shm := g.started, g.shm
	g.mu.Unlock()
	if p == nil || w.proc != nil {
		return // not started yet (the goroutine kills it), or ours already
	}
	// Sent but not received: the procStarted goes to the dead letters.
	_ = p.Kill()
	if shm != nil {
		shm.Close()
	}
	w.env.wg.Add(1)
	go func() {
		defer w.env.wg.Done()
		<-p.Done()
	}()
}

func (w *workerActor) onStarted(ctx actor.Context, msg *procStarted) {
	if msg.err != nil {
		// The process never ran: its "exit" is the start's error, said once
		// (as the cause), not as a wait error too.
		f := &supervisor.Failure{Kind: supervisor.StartupFailure, ExitCode: -1, Err: msg.err}
		w.reported = true
		ctx.Send(w.router, &workerExited{pid: w.self, failure: f, cause: msg.err, info: childproc.ExitInfo{Code: -1}, neverRan: true})
		return
	}
	w.proc = msg.proc
	if w.stopAsked { // asked to stop while starting
		_ = w.proc.Kill()
	}
	w.log = w.log.With("pid", w.proc.PID())
	w.hooks = &linkHooks{system: w.system, self: w.self, router: w.router, board: w.board, counters: w.counters, ws: w.ws, spec: w.spec, proc: w.proc}
	stall := w.spec.HeartbeatTimeout
	w.link = newLink(linkConfig{
		jobType: w.spec.Name, pid: w.proc.PID(), maxFrame: w.spec.MaxFrame, timeout: w.spec.JobTimeout,
		stall: stall, shm: msg.shm, counters: w.counters, offer: offeredFeatures(w.spec),
	}, w.hooks)
	w.link.start(w.proc.Input(), w.proc.Output(), &w.env.wg)
	w.after(w.spec.HandshakeTimeout, &handshakeTimeout{})
	proc, self, root := w.proc, w.self, w.system.Root
	w.env.wg.Add(1)
	go func() {
		defer w.env.wg.Done()
		<-proc.Done()
		root.Send(self, &procExited{info: proc.Exit()})
	}()
	w.log.Debug("worker started")
	w.env.publish(w.system, &WorkerEvent{Kind: EventStarted, JobType: w.spec.Name, PID: w.proc.PID()})
}

func (w *workerActor) onReady(ctx actor.Context, limit int64) {
	if w.stopAsked || w.failure != nil || w.exit != nil {
		return
	}
	w.ready = true
	w.log.Debug("worker ready", "startup", time.Since(w.started))
	ctx.Send(w.router, &workerReady{pid: w.self, link: w.link, proc: w.proc.PID(), process: w.proc, limit: limit})
	if w.spec.HeartbeatInterval > 0 {
		self, root := w.self, w.system.Root
		w.heartbeat = time.AfterFunc(w.spec.HeartbeatInterval, func() { root.Send(self, &heartbeatTick{}) })
	}
}

// offeredFeatures is what the host offers a worker of spec in its hello.
func offeredFeatures(spec *JobType) codec.Features {
	if spec.NoFeatures {
		return 0
	}
	return codec.AllFeatures
}

// after sends msg to this actor after d, and remembers the timer so that it
// is stopped with the actor.
func (w *workerActor) after(d time.Duration, msg any) {
	self, root := w.self, w.system.Root
	w.timers = append(w.timers, time.AfterFunc(d, func() { root.Send(self, msg) }))
}

func (w *workerActor) stopTimers() {
	for _, t := range w.timers {
		t.Stop()
	}
	w.timers = nil
	if w.heartbeat != nil {
		w.heartbeat.Stop()
	}
}
