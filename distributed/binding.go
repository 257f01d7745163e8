package distributed

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/supervisor"
)

// binding is one router bound to its job stream on one node.
//
// Its capacity rule: the node holds at most capacity jobs of the type at
// once, counting every job from the pull request that asks for it to the
// acknowledgement that ends it. free holds one token per job the node may
// still take; the fetch loop takes all the free tokens it finds (at least
// one) and asks for that many jobs, and each job gives its token back when
// it is acknowledged or handed back, as does a request that brought fewer
// jobs than it asked for. So a busy node asks for nothing and an idle one
// asks for all it can run, which spreads the jobs over the nodes in
// proportion to their free capacity.
type binding struct {
	n        *Node
	router   *procpool.Router
	jobType  string
	cons     jetstream.Consumer
	capacity int
	free     chan struct{}
	log      hclog.Logger

	ackWait    time.Duration // the consumer's own, which may not be ours
	maxDeliver int
	backoff    supervisor.Backoff
	deadSubj   string
	replyPfx   string // every valid reply subject is replyPfx + a producer id

	stop     chan struct{} // closed (by halt): stop fetching
	stopOnce sync.Once
	// unavailable is set when the router failed a job with
	// procpool.ErrUnavailable: the fetch loop pauses until it is
	// available again, rather than pull jobs only to hand them back.
	unavailable atomic.Bool
	fetched     chan struct{} // closed when the fetch loop has returned
	jobs        sync.WaitGroup

	held                                                               atomic.Int64
	received, redelivered, succeeded, failed, retried, dead, abandoned atomic.Uint64
}

func newBinding(n *Node, r *procpool.Router, cons jetstream.Consumer, capacity int) *binding {
	t := r.JobType()
	b := &binding{
		n: n, router: r, jobType: t.Name, cons: cons, capacity: capacity,
		free:       make(chan struct{}, capacity),
		log:        n.cfg.Logger.Named(t.Name),
		ackWait:    cons.CachedInfo().Config.AckWait,
		maxDeliver: n.cfg.MaxDeliver,
		backoff:    t.Policy.Backoff,
		deadSubj:   n.cfg.DeadLetterSubject(t.Name),
		replyPfx:   n.cfg.ResultSubject(""),
		stop:       make(chan struct{}),
		fetched:    make(chan struct{}),
	}
	if b.ackWait <= 0 {
		b.ackWait = DefaultAckWait
	}
	if md := cons.CachedInfo().Config.MaxDeliver; md > 0 && md <= b.maxDeliver {
		b.log.Warn("the node consumer stops redelivering a job after its MaxDeliver, before nodes can dead-letter it; set it to -1",
			"consumer", NodeConsumer, "max_deliver", md)
	}
	for range capacity {
		b.free <- struct{}{}
	}
	return b
}

// halt stops the fetch loop; the jobs held run to their end.
func (b *binding) halt() { b.stopOnce.Do(func() { close(b.stop) }) }

// acquire takes the free tokens: it waits for one, then takes the others
// that are free without waiting. It returns 0 once the binding stops.
func (b *binding) acquire() int {
	select {
	case <-b.free:
	case <-b.stop:
		return 0
	}
	n := 1
	for n < b.capacity {
		select {
		case <-b.free:
			n++
		default:
			return n
		}
	}
	return n
}

// release gives k tokens back.
func (b *binding) release(k int) {
	for range k {
		b.free <- struct{}{}
	}
}

// fetchLoop pulls jobs while the binding runs: one pull request at a
// time, for as many jobs as the node has free capacity, each job run on a
// goroutine of its own as soon as it arrives.
func (b *binding) fetchLoop() {
	defer close(b.fetched)
	var fails int
	for {
		k := b.acquire()
		if k == 0 {
			return
		}
		if !b.waitConnected() || !b.waitAvailable() {
			b.release(k)
			return
		}
		batch, err := b.cons.Fetch(k, jetstream.FetchMaxWait(b.n.opts.PollWait))
		got := 0
		if err == nil {
			for m := range batch.Messages() {
				got++
				b.jobs.Add(1)
				go b.run(m)
			}
			err = batch.Error()
		}
		b.release(k - got)
		if err == nil || errors.Is(err, jetstream.ErrNoMessages) || errors.Is(err, nats.ErrTimeout) {
			fails = 0
			continue
		}
		// The consumer or its stream deleted, a permission missing, a
		// server restarting: log once, retry with a growing pause.
		if fails++; fails == 1 {
			b.log.Warn("could not pull jobs; retrying", "error", err)
		} else {
			b.log.Debug("could not pull jobs; retrying", "failures", fails, "error", err)
		}
		if !b.sleep(min(10*time.Millisecond<<min(fails, 7), time.Second)) {
			return
		}
		if fails >= 2 {
			b.rebind()
		}
	}
}

// rebind looks the job stream and its node consumer up again, creating
// them if they were deleted (unless NoCreate), and pulls from what it
// finds from then on. Only the fetch loop calls it.
func (b *binding) rebind() {
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	s, err := b.n.cfg.jobStream(ctx, b.n.js, b.jobType)
	if err != nil {
		b.log.Debug("rebind", "error", err)
		return
	}
	cons, err := b.n.cfg.nodeConsumer(ctx, b.n.js, s, b.jobType)
	if err != nil {
		b.log.Debug("rebind", "error", err)
		return
	}
	b.cons = cons
}

// waitConnected waits until the connection is up, so that no pull request
// is buffered while it is down (the server could deliver jobs to a
// request whose client gave up, and they would wait out their ack wait).
// It returns false once the binding stops.
func (b *binding) waitConnected() bool {
	for b.n.nc.Status() != nats.CONNECTED {
		if b.n.nc.IsClosed() {
			<-b.stop
			return false
		}
		if !b.sleep(20 * time.Millisecond) {
			return false
		}
	}
	return true
}

// waitAvailable waits while the router is unavailable (it gave up
// restarting its workers and fails jobs fast for its cool-down), so that
// the node does not pull jobs only to hand them back, using up their
// deliveries while other nodes could run them. It returns false once the
// binding stops.
func (b *binding) waitAvailable() bool {
	for b.unavailable.Load() {
		if !b.sleep(250 * time.Millisecond) {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := b.router.Stats(ctx)
		cancel()
		if err == nil && st.Available {
			b.unavailable.Store(false)
		}
	}
	return true
}

// sleep waits d, or returns false as soon as the binding stops.
func (b *binding) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-b.stop:
		return false
	}
}

func (b *binding) stats() NodeStats {
	return NodeStats{
		JobType: b.jobType, Capacity: b.capacity, Held: int(b.held.Load()),
		Received: b.received.Load(), Redelivered: b.redelivered.Load(),
		Succeeded: b.succeeded.Load(), Failed: b.failed.Load(), Retried: b.retried.Load(),
		DeadLettered: b.dead.Load(), Abandoned: b.abandoned.Load(),
	}
}
