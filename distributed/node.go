package distributed

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/procpool/procpool"
)

// DefaultPollWait is how long a node's pull request waits for jobs.
const DefaultPollWait = time.Second

// NodeOptions configures one Node.
type NodeOptions struct {
	// Name identifies the node in results and dead letters (default: the
	// host name and the process id, "host-1234").
	Name string
	// PollWait bounds each pull request (default 1s): how long an idle
	// node's request for jobs waits at the server, and so how long a
	// graceful Shutdown may wait for the last request to end.
	PollWait time.Duration
	// ExtractHeaders is called with each job's message headers and
	// returns the context the job runs with, derived from ctx: it reads
	// the trace context ProducerOptions.InjectHeaders wrote. Nil: W3C
	// trace context.
	ExtractHeaders func(ctx context.Context, h nats.Header) context.Context
}

// BindOptions configures the binding of one router to its job stream.
type BindOptions struct {
	// Capacity is how many jobs the node holds at once for this job type
	// (default: the router's MaxWorkers × InFlight, so that every job it
	// holds has a worker slot and none waits in the pool's queue).
	Capacity int
}

// Node runs jobs from JetStream on local routers: each bound router pulls
// the jobs of its type from their stream, as many as it has free capacity,
// runs them, publishes their results and acknowledges them. Many nodes may
// serve the same job types; each job runs on one of them at a time. It is
// safe for concurrent use.
type Node struct {
	cfg      Config
	opts     NodeOptions
	nc       *nats.Conn
	js       jetstream.JetStream
	results  jetstream.Stream
	resLimit int64

	// ctx ends when the node stops hard: jobs still held are cancelled and
	// given back to the stream.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	bindings []*binding
	closed   bool
}

// NewNode starts a node on nc; bind routers to it with Bind. It looks up
// the result and dead-letter streams, creating them if missing (unless
// Config.NoCreate).
func NewNode(ctx context.Context, nc *nats.Conn, cfg Config, opts NodeOptions) (*Node, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if opts.Name == "" {
		host, _ := os.Hostname()
		opts.Name = host + "-" + strconv.Itoa(os.Getpid())
	}
	if opts.PollWait <= 0 {
		opts.PollWait = DefaultPollWait
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("distributed: %w", err)
	}
	n := &Node{cfg: cfg, opts: opts, nc: nc, js: js}
	if n.results, err = cfg.resultStream(ctx, js); err != nil {
		return nil, err
	}
	if _, err = cfg.deadLetterStream(ctx, js); err != nil {
		return nil, err
	}
	n.resLimit = messageLimit(n.results, nc.MaxPayload())
	n.ctx, n.cancel = context.WithCancel(context.Background())
	return n, nil
}

// Name returns the node's name.
func (n *Node) Name() string { return n.opts.Name }

// Bind binds a router to its job type's stream (created if missing,
// unless Config.NoCreate) through the stream's shared pull consumer, and
// starts pulling jobs for it. The router's job type name must be 1 to 64
// letters, digits, '-' and '_'. A router is bound once; the node's
// Shutdown shuts it down.
func (n *Node) Bind(ctx context.Context, r *procpool.Router, opts BindOptions) error {
	t := r.JobType()
	if err := checkJobType(t.Name); err != nil {
		return err
	}
	capacity := opts.Capacity
	if capacity <= 0 {
		capacity = max(1, t.MaxWorkers*max(1, t.InFlight))
	}
	n.mu.Lock()
	closed := n.closed
	for _, b := range n.bindings {
		if b.jobType == t.Name {
			n.mu.Unlock()
			return fmt.Errorf("%w: job type %s is bound already", ErrInvalidConfig, t.Name)
		}
	}
	n.mu.Unlock()
	if closed {
		return fmt.Errorf("%w: node %s is shut down", procpool.ErrShuttingDown, n.opts.Name)
	}
	s, err := n.cfg.jobStream(ctx, n.js, t.Name)
	if err != nil {
		return err
	}
	cons, err := n.cfg.nodeConsumer(ctx, n.js, s, t.Name)
	if err != nil {
		return err
	}
	b := newBinding(n, r, cons, capacity)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return fmt.Errorf("%w: node %s is shut down", procpool.ErrShuttingDown, n.opts.Name)
	}
	for _, o := range n.bindings {
		if o.jobType == t.Name {
			return fmt.Errorf("%w: job type %s is bound already", ErrInvalidConfig, t.Name)
		}
	}
	n.bindings = append(n.bindings, b)
	go b.fetchLoop()
	return nil
}

// Shutdown stops the node gracefully: it stops pulling jobs (the pull
// requests in flight end within PollWait), lets the jobs it holds finish,
// publishes their results and acknowledges them, then shuts the bound
// routers down. If ctx ends first, the jobs still held are cancelled and
// handed back to their streams at once (negative acks) for other nodes to
// run, the routers are shut down with the expired ctx (which kills their
// workers), and Shutdown returns ctx's error. It flushes the connection but
// does not close it. Calling it again returns nil at once.
func (n *Node) Shutdown(ctx context.Context) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	bindings := n.bindings
	n.mu.Unlock()

	for _, b := range bindings {
		b.halt()
	}
	drained := make(chan struct{})
	go func() {
		for _, b := range bindings {
			<-b.fetched
			b.jobs.Wait()
		}
		close(drained)
	}()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = ctx.Err()
		n.cancel()
		<-drained
	}
	n.cancel()
	errs := []error{err}
	for _, b := range bindings {
		if rerr := b.router.Shutdown(ctx); rerr != nil && !errors.Is(rerr, ctx.Err()) {
			errs = append(errs, fmt.Errorf("distributed: shut down router %s: %w", b.jobType, rerr))
		}
	}
	if ferr := n.nc.FlushTimeout(5 * time.Second); ferr != nil && !errors.Is(ferr, nats.ErrConnectionClosed) {
		errs = append(errs, fmt.Errorf("distributed: flush acks: %w", ferr))
	}
	return errors.Join(errs...)
}

// NodeStats counts what a node did for one job type.
type NodeStats struct {
	JobType  string
	Capacity int // jobs it may hold at once
	Held     int // jobs it holds now

	Received     uint64 // deliveries received
	Redelivered  uint64 // of which redeliveries (delivery 2 and later)
	Succeeded    uint64 // jobs answered with a result
	Failed       uint64 // jobs answered with an error (dead letters not included)
	Retried      uint64 // jobs handed back for a delayed redelivery after a retryable error
	DeadLettered uint64 // jobs moved to the dead-letter subject
	Abandoned    uint64 // jobs handed back at once, unfinished: a hard stop, or the router stopping
}

// Stats returns one NodeStats per bound job type, sorted by name.
func (n *Node) Stats() []NodeStats {
	n.mu.Lock()
	bindings := append([]*binding(nil), n.bindings...)
	n.mu.Unlock()
	out := make([]NodeStats, 0, len(bindings))
	for _, b := range bindings {
		out = append(out, b.stats())
	}
	sort.Slice(out, func(i, k int) bool { return out[i].JobType < out[k].JobType })
	return out
}
