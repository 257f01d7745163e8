package actors

import (
	"context"
	"errors"
	"fmt"
	"io"
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
// link (pipes and jobs in flight), its timers (handshake, heartbeat, job
// overrun) and observes its exit, which it reports to its parent router as
// a *workerExited before stopping itself.
type workerActor struct {
	spec   *JobType
	env    *runtimeEnv
	gate   *gate
	system *actor.ActorSystem
	router *actor.PID
	self   *actor.PID
	log    hclog.Logger

	proc    *childproc.Process
	start   *startGuard
	link    *link
	ready   bool
	started time.Time
	rss     uint64 // last reading

	failure   *supervisor.Failure // set when we decided the worker failed
	failErr   error
	stopping  bool // a graceful stop was asked
	exitSent  bool
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

// runtimeEnv is what every actor of one system shares: the dispatcher and
// a wait group that counts goroutines and processes not yet finished, so
// that shutdown can wait for all of them.
type runtimeEnv struct {
	dispatcher *Dispatcher
	wg         sync.WaitGroup
}

// Messages of the worker actor.
type (
	procStarted struct {
		proc *childproc.Process
		shm  *sharedmem.Host // the worker's shared memory region, if any
		err  error
	}
	procExited struct{ info childproc.ExitInfo }
	// stopWorker asks for a graceful stop (passivation, recycling,
	// shutdown): shutdown message, grace, then signals.
	stopWorker struct {
		grace time.Duration
		kill  bool // kill at once, still as a requested stop
	}
	// overrunCheck kills the worker if job id is still running.
	// overrunCheck: job id overran its timeout and was sent a cancel; kill
	// the worker if it still runs the job after CancelGrace.
	overrunCheck     struct{ id uint64 }
	overrunKill      struct{ id uint64 }
	handshakeTimeout struct{}
	heartbeatTick    struct{}
)

// workerReady tells the router that a worker finished its handshake.
type workerReady struct {
	pid  *actor.PID
	link *link
	proc int
}

// workerExited tells the router a worker's process is gone, with the jobs
// that were running on it (now owned by the router).
type workerExited struct {
	pid       *actor.PID
	info      childproc.ExitInfo
	failure   *supervisor.Failure // nil for a requested stop
	cause     error
	jobs      []*Job
	rss       uint64
	uptime    time.Duration
	handshook bool
}

func newWorkerProps(spec *JobType, env *runtimeEnv, g *gate) *actor.Props {
	opts := []actor.PropsOption{actor.WithSupervisor(stopOnPanic)}
	if env.dispatcher != nil {
		opts = append(opts, actor.WithDispatcher(env.dispatcher))
	}
	return actor.PropsFromProducer(func() actor.Actor {
		return &workerActor{spec: spec, env: env, gate: g}
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
		w.onReady(ctx, msg)
	case *linkClosed:
		w.onLinkClosed(msg)
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
	case *stopWorker:
		if msg.kill {
			w.stopping = true
			if w.link != nil {
				w.link.closeForJobs()
			}
			if w.proc != nil {
				_ = w.proc.Kill()
			}
			break
		}
		w.stop(msg.grace)
	case *procExited:
		w.onExited(ctx, msg.info)
	case *actor.Stopping:
		// Stopped by the router (or the router itself stops): never leave
		// the process behind.
		w.stopTimers()
		w.haltStart()
		if w.proc != nil && !w.exitSent {
			_ = w.proc.Kill()
		}
		if w.link != nil {
			w.link.close() // its writer ends now, its reader at the pipe's EOF
		}
	}
}

func (w *workerActor) startProcess() {
	spec := w.spec.processSpec(w.log)
	self := w.self
	system := w.env
	w.env.wg.Add(1)
	size, log := w.spec.SharedMemory, w.log
	guard := &startGuard{}
	w.start = guard
	go func() {
		defer system.wg.Done()
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
		w.sendSelf(self, &procStarted{proc: p, shm: shm, err: err})
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

// sendSelf delivers a message to this actor from another goroutine.
func (w *workerActor) sendSelf(self *actor.PID, msg any) {
	w.system.Root.Send(self, msg)
}

func (w *workerActor) onStarted(ctx actor.Context, msg *procStarted) {
	if msg.err != nil {
		f := supervisor.Failure{Kind: supervisor.StartupFailure, ExitCode: -1, Err: msg.err}
		w.failure, w.failErr = &f, msg.err
		w.exitSent = true
		ctx.Send(w.router, &workerExited{pid: w.self, failure: &f, cause: msg.err, info: childproc.ExitInfo{Code: -1, Err: msg.err}})
		return
	}
	w.proc = msg.proc
	if w.stopping { // asked to stop while starting
		_ = w.proc.Kill()
	}
	w.log = w.log.With("pid", w.proc.PID())
	w.link = newLink(w.system, w.spec, w.gate, w.self, w.router, msg.shm)
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
	publish(w.system, &WorkerEvent{Kind: EventStarted, JobType: w.spec.Name, PID: w.proc.PID()})
}

func (w *workerActor) onReady(ctx actor.Context, msg *linkReady) {
	if msg.msg.Version != codec.Version {
		w.fail(supervisor.StartupFailure, fmt.Errorf("%w: worker speaks protocol version %d, host %d", errProtocol, msg.msg.Version, codec.Version))
		return
	}
	if !servesJobType(msg.msg.JobTypes, w.spec.Name) {
		w.fail(supervisor.StartupFailure, fmt.Errorf("%w: worker serves %v, not %q", errProtocol, msg.msg.JobTypes, w.spec.Name))
		return
	}
	if w.stopping || w.failure != nil {
		return
	}
	w.ready = true
	w.log.Debug("worker ready", "startup", time.Since(w.started))
	ctx.Send(w.router, &workerReady{pid: w.self, link: w.link, proc: w.proc.PID()})
	if w.spec.HeartbeatInterval > 0 {
		self, root := w.self, w.system.Root
		w.heartbeat = time.AfterFunc(w.spec.HeartbeatInterval, func() { root.Send(self, &heartbeatTick{}) })
	}
}

func servesJobType(types []string, name string) bool {
	for _, t := range types {
		if t == name {
			return true
		}
	}
	return false
}

func (w *workerActor) onLinkClosed(msg *linkClosed) {
	if errors.Is(msg.err, io.EOF) {
		return // the process is exiting; its exit tells the rest
	}
	if w.stopping && w.failure == nil && errors.Is(msg.err, codec.ErrTruncated) {
		return
	}
	w.fail(supervisor.ProtocolFailure, msg.err)
}

func (w *workerActor) onHeartbeat() {
	if w.link == nil || w.failure != nil || w.stopping {
		return
	}
	silent := time.Since(time.Unix(0, w.link.lastHeard.Load()))
	if silent > w.spec.HeartbeatTimeout {
		w.fail(supervisor.HeartbeatFailure, fmt.Errorf("no frame from the worker for %v", silent.Round(time.Millisecond)))
		return
	}
	if rss, err := w.memory(); err == nil {
		w.rss = rss
		w.link.rss.Store(rss)
		if w.spec.KillRSS > 0 && rss > w.spec.KillRSS {
			w.fail(supervisor.MemoryFailure, fmt.Errorf("resident memory %d bytes above the ceiling of %d", rss, w.spec.KillRSS))
			return
		}
	}
	w.link.ping(uint64(time.Now().UnixNano()))
	w.heartbeat.Reset(w.spec.HeartbeatInterval)
}

// memory returns the worker's resident memory less its shared memory: the
// pages of the shared memory region, which the host maps too and
// SharedMemory bounds, are no sign of a leak.
func (w *workerActor) memory() (uint64, error) {
	m, err := w.proc.Memory()
	if err != nil {
		return 0, err
	}
	return m.RSS - min(m.Shmem, m.RSS), nil
}

// fail records the first failure and kills the process; its exit is then
// reported as that failure.
func (w *workerActor) fail(kind supervisor.FailureKind, err error) {
	if w.failure != nil || w.exitSent {
		return
	}
	w.failure = &supervisor.Failure{Kind: kind, ExitCode: -1, Err: err}
	w.failErr = err
	w.log.Warn("killing worker", "failure", kind, "error", err)
	if w.link != nil {
		w.link.closeForJobs() // the router dispatches nothing more here
	}
	if w.proc != nil {
		if rss, e := w.memory(); e == nil {
			w.rss = rss
		}
		_ = w.proc.Kill()
	}
}

// stop asks the worker to finish its jobs and exit.
func (w *workerActor) stop(grace time.Duration) {
	if w.stopping || w.exitSent {
		return
	}
	w.stopping = true
	if w.proc == nil {
		return // onStarted sees stopping and kills the process
	}
	proc, l := w.proc, w.link
	w.env.wg.Add(1)
	go func() {
		defer w.env.wg.Done()
		// The shutdown frame must reach the pipe before Stop closes it.
		if l != nil {
			l.writeNow(&codec.Message{Kind: codec.KindShutdown, Grace: grace})
		}
		proc.Stop(context.Background(), grace)
	}()
}

func (w *workerActor) onExited(ctx actor.Context, info childproc.ExitInfo) {
	if w.exitSent {
		return
	}
	w.exitSent = true
	w.stopTimers()
	var jobs []*Job
	if w.link != nil {
		jobs = w.link.takeAll()
		w.link.close()
	}
	failure := w.failure
	if failure == nil && !w.stopping {
		failure = classifyExit(info, w.ready)
	}
	if failure != nil {
		failure.ExitCode, failure.Signal = info.Code, info.Signal
		if failure.Err == nil {
			failure.Err = errors.New(info.String())
		}
	}
	ex := &workerExited{
		pid: w.self, info: info, failure: failure, cause: w.failErr,
		jobs: jobs, rss: w.rss, uptime: time.Since(w.started), handshook: w.ready,
	}
	if failure != nil {
		w.log.Warn("worker failed", "failure", failure.Kind, "exit", info.String(), "jobs_lost", len(jobs))
	} else {
		w.log.Debug("worker exited", "exit", info.String())
	}
	// The router stops this actor once it has read the report: stopping
	// here would let Terminated (a system message, delivered first) reach
	// the router before the report.
	ctx.Send(w.router, ex)
}

// classifyExit turns an exit nobody asked for into a failure. An OOM kill
// in the worker's cgroup (its Sandbox.Memory, counted by the kernel) is a
// MemoryFailure, whenever it happened.
func classifyExit(info childproc.ExitInfo, handshook bool) *supervisor.Failure {
	switch {
	case info.OOMKills > 0:
		return &supervisor.Failure{Kind: supervisor.MemoryFailure}
	case !handshook:
		return &supervisor.Failure{Kind: supervisor.StartupFailure}
	case info.Signal != 0:
		return &supervisor.Failure{Kind: supervisor.SignalFailure}
	default:
		return &supervisor.Failure{Kind: supervisor.ExitFailure}
	}
}

// after sends msg to this actor after d, and remembers the timer so that it
// is stopped with the actor.
func (w *workerActor) after(d time.Duration, msg any) *time.Timer {
	self, root := w.self, w.system.Root
	t := time.AfterFunc(d, func() { root.Send(self, msg) })
	w.timers = append(w.timers, t)
	return t
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
