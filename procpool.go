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

	"github.com/procpool/procpool/actors"
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
}

// System is a running procpool: an actor system with a root supervisor
// whose children are the routers of the job types spawned into it.
type System struct {
	logger     hclog.Logger
	actors     *actor.ActorSystem
	dispatcher *actors.Dispatcher
	root       *actor.PID

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
	}
	s.root = system.Root.Spawn(actors.SupervisorProps(s.dispatcher))
	return s
}

// ActorSystem returns the underlying protoactor system, for users who
// spawn routers in their own actor tree or subscribe to its event stream.
func (s *System) ActorSystem() *actor.ActorSystem { return s.actors }

// Dispatcher returns the dispatcher the system's actors run on, for
// RouterProps in a user's own tree.
func (s *System) Dispatcher() *actors.Dispatcher { return s.dispatcher }

// Spawn starts a router for job type t under the system's root supervisor.
// MinWorkers workers are started at once. The job type's name must be
// unique within the system.
func (s *System) Spawn(t JobType) (*Router, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrShuttingDown
	}
	if _, ok := s.routers[t.Name]; ok {
		return nil, fmt.Errorf("%w %q: already spawned", ErrInvalidJobType, t.Name)
	}
	props, r, err := actors.RouterProps(t, actors.RouterOptions{Logger: s.logger, Dispatcher: s.dispatcher})
	if err != nil {
		return nil, err
	}
	pid, err := actors.SpawnChild(s.actors, s.root, props, "router-"+t.Name)
	if err != nil {
		return nil, err
	}
	r.Bind(s.actors, pid)
	s.routers[t.Name] = r
	return r, nil
}

// Router returns the router of a spawned job type.
func (s *System) Router(jobType string) (*Router, error) {
	s.mu.RLock()
	r, ok := s.routers[jobType]
	closed := s.closed
	s.mu.RUnlock()
	if !ok {
		if closed {
			return nil, ErrShuttingDown
		}
		return nil, fmt.Errorf("%w: %q", ErrUnknownJobType, jobType)
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

// JobTypes returns the names of the spawned job types, sorted.
func (s *System) JobTypes() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	names := make([]string, 0, len(s.routers))
	for n := range s.routers {
		names = append(names, n)
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
func (s *System) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	routers := make([]*Router, 0, len(s.routers))
	for _, r := range s.routers {
		routers = append(routers, r)
	}
	s.mu.Unlock()

	errs := make([]error, len(routers))
	var wg sync.WaitGroup
	for i, r := range routers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.Shutdown(ctx)
		}()
	}
	wg.Wait()
	actors.WaitChildless(s.actors, s.root, 5*time.Second)
	_ = s.actors.Root.StopFuture(s.root).Wait()
	s.dispatcher.Close()
	s.actors.Shutdown()
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
