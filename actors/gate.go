package actors

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// gate admits jobs into one router. It bounds how many are accepted and
// unresolved at once (a token each), keeps the ledger of every accepted job
// until it resolves (so that none is lost if the router stops with jobs in
// its mailbox, which protoactor drops), and refuses jobs once closed.
//
// The gate knows nothing of workers: free capacity is the slotBoard's.
type gate struct {
	tokens   chan struct{} // one per accepted, unresolved job
	shut     chan struct{} // closed when the gate closes
	stopped  chan struct{} // closed when the router actor stopped for good
	stopOnce sync.Once
	counters counters
	router   atomic.Pointer[routerRef] // set once, by bind

	mu     sync.Mutex
	closed error             // non-nil once closed: the error new jobs get
	jobs   map[*Job]struct{} // the ledger: accepted and not yet resolved
}

// routerRef is where a gate's router lives.
type routerRef struct {
	system *actor.ActorSystem
	pid    *actor.PID
}

func newGate(capacity int) *gate {
	return &gate{
		tokens:  make(chan struct{}, capacity),
		shut:    make(chan struct{}),
		stopped: make(chan struct{}),
		jobs:    make(map[*Job]struct{}, capacity),
	}
}

// admit takes a token for j, waiting for one while ctx allows when block is
// set, and writes j into the ledger. It does not send j anywhere.
func (g *gate) admit(ctx context.Context, j *Job, block bool) error {
	select {
	case g.tokens <- struct{}{}:
	default:
		if !block {
			return ErrQueueFull
		}
		select {
		case g.tokens <- struct{}{}:
		case <-g.shut:
			return g.closedErr()
		case <-ctx.Done():
			return cancelledBy(ctx)
		}
	}
	// Set before the job enters the ledger: from then on the router may
	// resolve it (when it stops), reading them.
	j.gate = g
	j.accepted = time.Now()
	g.mu.Lock()
	if g.closed != nil {
		g.mu.Unlock()
		j.gate = nil
		<-g.tokens
		return g.closed
	}
	g.jobs[j] = struct{}{}
	g.mu.Unlock()
	g.counters.accepted.Add(1)
	return nil
}

func (g *gate) closedErr() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// release forgets a resolved job and frees its token.
func (g *gate) release(j *Job, err error) {
	g.mu.Lock()
	_, ok := g.jobs[j]
	delete(g.jobs, j)
	g.mu.Unlock()
	if ok {
		<-g.tokens
		g.counters.record(err, time.Since(j.accepted))
	}
}

// close refuses new jobs with err from now on.
func (g *gate) close(err error) {
	g.mu.Lock()
	if g.closed == nil {
		g.closed = err
		close(g.shut)
	}
	g.mu.Unlock()
}

// markStopped records that the router actor is gone for good.
func (g *gate) markStopped() { g.stopOnce.Do(func() { close(g.stopped) }) }

// isStopped reports whether the router actor is gone for good.
func (g *gate) isStopped() bool {
	select {
	case <-g.stopped:
		return true
	default:
		return false
	}
}

// pending returns the accepted jobs that have not resolved yet.
func (g *gate) pending() []*Job {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*Job, 0, len(g.jobs))
	for j := range g.jobs {
		out = append(out, j)
	}
	return out
}

// bind records where the router lives; only the first call counts.
func (g *gate) bind(system *actor.ActorSystem, pid *actor.PID) {
	g.router.CompareAndSwap(nil, &routerRef{system: system, pid: pid})
}

// target returns where the router lives, nil before bind.
func (g *gate) target() *routerRef { return g.router.Load() }

// send delivers a message to the router.
func (g *gate) send(msg any) {
	if r := g.target(); r != nil {
		r.system.Root.Send(r.pid, msg)
	}
}
