package actors

import (
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// workerState is the router's record of one worker, plus the counters that
// the job path updates without the router (atomics).
//
// Free capacity is published as slots: one entry per job a ready worker can
// take, kept by the gate. A caller that finds no job queued takes a slot
// and writes its request straight to the worker's pipe; the worker's link
// gives the slot back when the answer arrives, or hands it to the router
// when jobs are queued. So the router decides who may run where (it
// creates and withdraws slots, and owns the queue), while a job on an idle
// pool crosses no actor mailbox.
type workerState struct {
	pid       *actor.PID
	link      *link // nil until ready
	proc      int
	status    workerStatus
	spawned   time.Time
	readyAt   time.Time
	replaces  *workerState // the worker this one will replace once ready (recycling)
	recycling bool         // a replacement is starting for it
	retiring  bool         // gets no new jobs; stops once idle

	closed bool // guarded by gate.mu: its slots are void

	running  atomic.Int32 // jobs dispatched and not answered
	served   atomic.Int64 // jobs answered
	lastDone atomic.Int64 // unix nanos of the last answer (or of readiness)
}

type workerStatus int

const (
	starting workerStatus = iota
	ready
	stopping
)

// idleFor returns how long the worker has had no job, zero if it has one.
func (w *workerState) idleFor(now time.Time) time.Duration {
	if w.running.Load() > 0 {
		return 0
	}
	return now.Sub(time.Unix(0, w.lastDone.Load()))
}

// takeSlot pops a free slot for a job that arrives while nothing is queued;
// nil when a job is queued (first come, first served) or no slot is free.
func (g *gate) takeSlot() *workerState {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.queued > 0 {
		return nil
	}
	return g.popSlotLocked()
}

// nextSlot is the router's take: it records that waiting jobs are queued and
// pops a slot for the first of them, if any is free.
func (g *gate) nextSlot(waiting int) *workerState {
	g.mu.Lock()
	defer g.mu.Unlock()
	w := g.popSlotLocked()
	if w != nil {
		waiting--
	}
	g.queued = waiting
	return w
}

func (g *gate) popSlotLocked() *workerState {
	for n := len(g.slots); n > 0; n = len(g.slots) {
		w := g.slots[n-1]
		g.slots[n-1] = nil
		g.slots = g.slots[:n-1]
		if !w.closed {
			return w
		}
	}
	return nil
}

// setQueued records the router's queue length.
func (g *gate) setQueued(n int) {
	g.mu.Lock()
	g.queued = n
	g.mu.Unlock()
}

// giveSlot returns a slot after a job ended. It refuses (the caller must
// tell the router) when jobs are queued or the worker is closed.
func (g *gate) giveSlot(w *workerState) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.queued > 0 || w.closed {
		return false
	}
	g.slots = append(g.slots, w)
	return true
}

// pushSlot publishes a free slot (router only).
func (g *gate) pushSlot(w *workerState) {
	g.mu.Lock()
	if !w.closed {
		g.slots = append(g.slots, w)
	}
	g.mu.Unlock()
}

// closeWorker voids w's slots: no new job goes to it.
func (g *gate) closeWorker(w *workerState) {
	g.mu.Lock()
	defer g.mu.Unlock()
	w.closed = true
	kept := g.slots[:0]
	for _, s := range g.slots {
		if s != w {
			kept = append(kept, s)
		}
	}
	clear(g.slots[len(kept):])
	g.slots = kept
}

// sendMode says how a job's request goes out and who reads its answer.
type sendMode int

const (
	// viaWriter: the link's writer goroutine sends it (the router, which
	// must never block on a pipe); the background reader reads the answer.
	viaWriter sendMode = iota
	// direct: the calling goroutine writes it; the background reader reads
	// the answer (Submit: nobody waits yet).
	direct
	// directSelfRead: the calling goroutine writes it and then tries to
	// read the answer itself (Call).
	directSelfRead
)

// start binds j to w and sends its request as mode says. It reports false,
// undoing everything, when the worker takes no more jobs.
func start(j *Job, w *workerState, spec *JobType, mode sendMode) bool {
	l := w.link
	j.worker = w
	j.id = l.nextID.Add(1)
	j.attempt++
	j.started = time.Now()
	w.running.Add(1)
	if spec.JobTimeout > 0 {
		j.timer = time.AfterFunc(spec.JobTimeout, func() { j.gate.send((*jobTimeout)(j)) })
	}
	if !l.dispatch(j, spec.JobTimeout, mode) {
		if j.timer != nil {
			j.timer.Stop()
			j.timer = nil
		}
		w.running.Add(-1)
		j.worker = nil
		j.attempt--
		return false
	}
	return true
}
