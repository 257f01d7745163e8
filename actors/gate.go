package actors

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/sync/semaphore"
)

// gate admits jobs into one router. It bounds how many are accepted and
// unresolved at once (a semaphore unit each; the bound can change while
// jobs run, see setCapacity), keeps the ledger of every accepted job until
// it resolves (so that none is lost if the router stops with jobs in its
// mailbox, which protoactor drops), and refuses jobs once closed. It tells
// the router's Observer, if any, of every job it admits and releases.
//
// The gate knows nothing of workers: free capacity is the slotBoard's.
type gate struct {
	jobType  string
	obs      Observer // nil: nobody
	sem      *semaphore.Weighted
	shut     chan struct{}      // closed when the gate closes
	shutCtx  context.Context    // done when the gate closes
	shutDone context.CancelFunc //
	stopped  chan struct{}      // closed when the router actor stopped for good
	stopOnce sync.Once
	resizing sync.WaitGroup // shrinks still taking their units back
	counters counters
	router   atomic.Pointer[routerRef] // set once, by bind

	mu       sync.Mutex
	capacity int64             // the bound in force; the rest of maxCapacity is held back
	closed   error             // non-nil once closed: the error new jobs get
	jobs     map[*Job]struct{} // the ledger: accepted and not yet resolved
}

// maxCapacity is the semaphore's size; what the capacity in force leaves of
// it is held by the gate itself.
const maxCapacity = 1 << 40

// routerRef is where a gate's router lives.
type routerRef struct {
	system *actor.ActorSystem
	pid    *actor.PID
}

func newGate(jobType string, capacity int, obs Observer) *gate {
	g := &gate{
		jobType:  jobType,
		obs:      obs,
		sem:      semaphore.NewWeighted(maxCapacity),
		shut:     make(chan struct{}),
		stopped:  make(chan struct{}),
		capacity: int64(capacity),
		jobs:     make(map[*Job]struct{}, capacity),
	}
	g.shutCtx, g.shutDone = context.WithCancel(context.Background())
	_ = g.sem.Acquire(context.Background(), maxCapacity-g.capacity) // never waits: nothing is held yet
	return g
}

// admit takes a unit for j, waiting for one while ctx allows when block is
// set, and writes j into the ledger. It does not send j anywhere.
func (g *gate) admit(ctx context.Context, j *Job, block bool) error {
	if !g.sem.TryAcquire(1) {
		if !block {
			return ErrQueueFull
		}
		if err := g.wait(ctx); err != nil {
			return err
		}
	}
	// Set before the job enters the ledger: from then on the router may
	// resolve it (when it stops), reading them.
	j.gate = g
	j.accepted = time.Now()
	if g.obs != nil {
		j.obs = g.obs.JobAccepted(ctx, g.jobType)
	}
	g.mu.Lock()
	if g.closed != nil {
		err := g.closed
		g.mu.Unlock()
		g.sem.Release(1)
		if j.obs != nil {
			j.obs.Resolved(err)
		}
		j.gate, j.obs = nil, nil
		return err
	}
	g.jobs[j] = struct{}{}
	g.mu.Unlock()
	n := 1
	if j.batch != nil {
		n = len(j.batch.payloads) // a Map job counts as its items
	}
	g.counters.accepted.Add(uint64(n))
	return nil
}

// wait waits for a unit while ctx allows and the gate is open.
func (g *gate) wait(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(g.shutCtx, cancel)
	defer stop()
	if err := g.sem.Acquire(wctx, 1); err != nil {
		if ctx.Err() != nil {
			return cancelledBy(ctx)
		}
		return g.closedErr()
	}
	return nil
}

// setCapacity changes how many jobs may be accepted and unresolved at once.
// A larger bound holds at once; a smaller one takes its units back as jobs
// resolve (later admissions wait behind it), or when the gate closes.
func (g *gate) setCapacity(n int) {
	g.mu.Lock()
	delta := int64(n) - g.capacity
	g.capacity = int64(n)
	g.mu.Unlock()
	switch {
	case delta > 0:
		g.sem.Release(delta)
	case delta < 0:
		g.resizing.Add(1)
		go func() {
			defer g.resizing.Done()
			_ = g.sem.Acquire(g.shutCtx, -delta)
		}()
	}
}

func (g *gate) closedErr() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// release forgets a resolved job, frees its unit, and counts it once.
func (g *gate) release(j *Job, err error) {
	g.mu.Lock()
	_, ok := g.jobs[j]
	delete(g.jobs, j)
	g.mu.Unlock()
	if !ok {
		return
	}
	g.sem.Release(1)
	if j.batch == nil { // a Map job's items are counted one by one (count)
		g.count(j, err)
	}
	if j.obs != nil {
		j.obs.Resolved(err)
	}
}

// count records the outcome of a job, or of one of a Map job's items.
func (g *gate) count(j *Job, err error) {
	total, wait, run := j.times()
	g.counters.record(err, total, wait, run)
	if g.obs != nil {
		g.obs.JobResolved(g.jobType, err, wait, run)
	}
}

// countSucceeded records n of Map job j's items that succeeded, as count
// would each.
func (g *gate) countSucceeded(j *Job, n int) {
	total, wait, run := j.times()
	g.counters.recordSucceeded(uint64(n), total, wait, run)
	if g.obs != nil {
		for range n {
			g.obs.JobResolved(g.jobType, nil, wait, run)
		}
	}
}

// times returns how long j has been accepted, waited for its last
// dispatch, and run since.
func (j *Job) times() (total, wait, run time.Duration) {
	total = time.Since(j.accepted)
	wait = total
	if d := j.dispatched.Load(); d != 0 {
		wait = time.Unix(0, d).Sub(j.accepted)
		run = total - wait
	}
	return total, wait, run
}

// close refuses new jobs with err from now on.
func (g *gate) close(err error) {
	g.mu.Lock()
	if g.closed == nil {
		g.closed = err
		close(g.shut)
		g.shutDone()
	}
	g.mu.Unlock()
}

// markStopped records that the router actor is gone for good: stopped,
// and its worker actors before it.
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
