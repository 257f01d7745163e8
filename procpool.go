package procpool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/evanphx/go-hclog-slog/hclogslog"
	"github.com/hashicorp/go-hclog"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/procpool/procpool/actors"
	"github.com/procpool/procpool/childproc"
	"github.com/procpool/procpool/internal/telemetry"
	"github.com/procpool/procpool/sandbox"
)

// JobType describes a job type and the pool of workers that runs it; see
// actors.JobType for every field and its default.
type JobType = actors.JobType

// Sandbox lists the controls every worker of a job type runs under
// (JobType.Sandbox); see package sandbox and docs/isolation.md.
type Sandbox = sandbox.Sandbox

// Stats is a snapshot of one job type's queue, workers and job counts.
type Stats = actors.Stats

// Job is an accepted job, returned by Submit: wait for it with Wait or Done.
type Job = actors.Job

// Router is the handle of one job type's router.
type Router = actors.Router

// PayloadKind says how a payload crosses to the worker.
type PayloadKind = actors.PayloadKind

// Payload kinds: Blob sends the caller's bytes as they are, Value sends one
// msgpack-encoded value.
const (
	Blob  = actors.Blob
	Value = actors.Value
)

// WorkerEvent is a supervision event, published on the actor system's event
// stream.
type WorkerEvent = actors.WorkerEvent

// Config configures a System.
type Config struct {
	// Logger receives the pool's log lines and the workers' stdout and
	// stderr (default: no logging). protoactor's own logs go to its
	// "actor" sub-logger at Warn and above.
	Logger hclog.Logger
	// Dispatcher goroutines running the actors (0: 2 x GOMAXPROCS, at
	// least 4).
	DispatcherGoroutines int
	// MeterProvider receives the pool's metrics, listed in
	// docs/metrics.md (nil: otel.GetMeterProvider(), the global one,
	// which reports nothing until the application sets it; a
	// metric/noop provider turns them off).
	MeterProvider metric.MeterProvider
	// TracerProvider receives a span per job, a child of the span in the
	// caller's context (nil: otel.GetTracerProvider(), the global one;
	// until the application sets it, a job records nothing and only
	// passes its caller's trace context on to the worker).
	TracerProvider trace.TracerProvider
}

// System is a running procpool: an actor system with a root supervisor
// whose children are the routers of the job types spawned into it.
type System struct {
	logger     hclog.Logger
	actors     *actor.ActorSystem
	dispatcher *actors.Dispatcher
	root       *actor.PID
	telemetry  *telemetry.Telemetry

	mu      sync.RWMutex
	routers map[string]*Router
	closed  bool
}

// NewSystem starts a System.
func NewSystem(cfg Config) *System {
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	actorLog := logger.Named("actor")
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(minLevel{Handler: hclogslog.Adapt(actorLog), min: slog.LevelWarn})
	}))
	s := &System{
		logger:     logger,
		actors:     system,
		dispatcher: actors.NewDispatcher(cfg.DispatcherGoroutines),
		routers:    make(map[string]*Router),
		telemetry:  newTelemetry(cfg.MeterProvider, cfg.TracerProvider, logger),
	}
	s.root = system.Root.Spawn(supervisorProps(s.dispatcher))
	return s
}

// ActorSystem returns the underlying protoactor system, for users who
// spawn routers in their own actor tree or subscribe to its event stream.
func (s *System) ActorSystem() *actor.ActorSystem { return s.actors }

// Dispatcher returns the dispatcher the system's actors run on, for
// RouterProps in a user's own tree.
func (s *System) Dispatcher() *actors.Dispatcher { return s.dispatcher }

// Spawn starts a router for job type t under the system's root supervisor.
// MinWorkers workers are started at once (Spawn does not wait for them:
// see SpawnReady and Router.Ready). The job type's name must be unique
// among the system's live routers; the name of a router that was shut
// down may be spawned again.
func (s *System) Spawn(t JobType) (*Router, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrShuttingDown
	}
	if r, ok := s.routers[t.Name]; ok && !stopped(r) {
		return nil, fmt.Errorf("%w %q: already spawned", ErrInvalidJobType, t.Name)
	}
	props, r, err := actors.RouterProps(t, actors.RouterOptions{Logger: s.logger, Dispatcher: s.dispatcher,
		Observer: s.telemetry.Observer(t.Name)})
	if err != nil {
		return nil, err
	}
	pid, err := spawnUnder(s.actors, s.root, props, "router-"+t.Name)
	if err != nil {
		return nil, err
	}
	r.Bind(s.actors, pid)
	s.telemetry.Watch(t.Name, r.Stats)
	s.routers[t.Name] = r
	return r, nil
}

// SpawnReady is Spawn, then Router.Ready: it returns once t's MinWorkers
// workers are ready. If a worker fails to start first, or ctx ends, it
// shuts the router down and returns why (a failed start carries a
// *CrashError whose Err is the start's own error).
func (s *System) SpawnReady(ctx context.Context, t JobType) (*Router, error) {
	r, err := s.Spawn(t)
	if err != nil {
		return nil, err
	}
	if err := r.Ready(ctx); err != nil {
		_ = r.ShutdownWith(context.Background(), Abort)
		return nil, err
	}
	return r, nil
}

// stopped reports whether a router has stopped for good (Router.Shutdown).
func stopped(r *Router) bool {
	select {
	case <-r.Done():
		return true
	default:
		return false
	}
}

// Router returns the router of a spawned job type. It fails with
// ErrUnknownJobType for a name never spawned, and with ErrShuttingDown for
// one whose router was shut down (its name may be spawned again).
func (s *System) Router(jobType string) (*Router, error) {
	s.mu.RLock()
	r, ok := s.routers[jobType]
	closed := s.closed
	s.mu.RUnlock()
	switch {
	case closed:
		return nil, ErrShuttingDown
	case !ok:
		return nil, fmt.Errorf("%w: %q", ErrUnknownJobType, jobType)
	case stopped(r):
		return nil, fmt.Errorf("%w: the router of %q was shut down", ErrShuttingDown, jobType)
	}
	return r, nil
}

// Call runs a BLOB job of the named type and waits for its result.
func (s *System) Call(ctx context.Context, jobType string, payload []byte) ([]byte, error) {
	r, err := s.Router(jobType)
	if err != nil {
		return nil, err
	}
	return r.Call(ctx, Blob, payload)
}

// Submit accepts a BLOB job of the named type and returns it without
// waiting for its result.
func (s *System) Submit(ctx context.Context, jobType string, payload []byte) (*Job, error) {
	r, err := s.Router(jobType)
	if err != nil {
		return nil, err
	}
	return r.Submit(ctx, Blob, payload)
}

// TrySubmit is Submit that fails at once with ErrQueueFull when the job
// type's queue is full.
func (s *System) TrySubmit(ctx context.Context, jobType string, payload []byte) (*Job, error) {
	r, err := s.Router(jobType)
	if err != nil {
		return nil, err
	}
	return r.TrySubmit(ctx, Blob, payload)
}

// Stats returns a snapshot of the named job type.
func (s *System) Stats(ctx context.Context, jobType string) (*Stats, error) {
	r, err := s.Router(jobType)
	if err != nil {
		return nil, err
	}
	return r.Stats(ctx)
}

// JobTypes returns the names of the spawned job types whose routers have
// not been shut down, sorted.
func (s *System) JobTypes() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	names := make([]string, 0, len(s.routers))
	for n, r := range s.routers {
		if !stopped(r) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// Shutdown stops the system gracefully: new jobs fail with ErrShuttingDown,
// queued and running jobs finish, then every worker stops. If ctx ends
// first, remaining workers are killed and unfinished jobs fail with an error
// matching ErrShuttingDown; Shutdown then returns ctx's error. When it
// returns, no worker process, actor or goroutine of the system is left.
// Calling it again returns nil at once.
func (s *System) Shutdown(ctx context.Context) error { return s.ShutdownWith(ctx, Drain) }

// ShutdownWith stops every router as mode says (Drain, CancelQueued or
// Abort; see Router.ShutdownWith); if ctx ends first, it aborts them.
// When it returns, no worker process, actor or goroutine of the system is
// left. Calling it again returns nil at once.
func (s *System) ShutdownWith(ctx context.Context, mode ShutdownMode) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	routers := make([]*Router, 0, len(s.routers))
	names := make([]string, 0, len(s.routers))
	for name, r := range s.routers {
		routers = append(routers, r)
		names = append(names, name)
	}
	s.mu.Unlock()

	errs := make([]error, len(routers))
	var wg sync.WaitGroup
	for i, r := range routers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.ShutdownWith(ctx, mode)
		}()
	}
	wg.Wait()
	waitChildless(s.actors, s.root, 5*time.Second)
	_ = s.actors.Root.StopFuture(s.root).Wait()
	s.dispatcher.Close()
	s.actors.Shutdown()
	s.telemetry.Close()
	if len(names) > 0 {
		// What was kept ready for this system's job types; another
		// system's are its own.
		childproc.ReleaseSpares(names...)
	}
	return errors.Join(uniq(errs)...)
}

func uniq(errs []error) []error {
	var out []error
	for _, e := range errs {
		if e != nil && (len(out) == 0 || !errors.Is(out[0], e)) {
			out = append(out, e)
		}
	}
	return out
}

// minLevel drops records below a level.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.Handler.Enabled(ctx, l)
}

func (m minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{Handler: m.Handler.WithAttrs(a), min: m.min}
}

func (m minLevel) WithGroup(g string) slog.Handler {
	return minLevel{Handler: m.Handler.WithGroup(g), min: m.min}
}
