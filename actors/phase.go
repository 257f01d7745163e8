package actors

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/procpool/procpool/childproc"
)

// WorkerPhase is where a worker is in its life, as its router sees it, in
// the manner of net/http's ConnState. The moves (phaseNext) are
//
//	Starting → Ready → Retiring → Stopping
//	Starting → Stopping, Ready → Stopping  (stopped before or without a job)
//	Starting, Ready, Retiring → Failing
//
// and never back. Whatever its phase, a worker leaves the router's books
// when its process has exited. A Stopping worker never becomes Failing:
// once it was asked to stop, its end is not a failure.
type WorkerPhase int

// The phases.
const (
	// PhaseStarting: the process is starting, or its handshake is not done.
	PhaseStarting WorkerPhase = iota + 1
	// PhaseReady: serving jobs, idle or busy.
	PhaseReady
	// PhaseRetiring: takes no new jobs and is stopped once its running jobs
	// end (passivation, recycling, a drain, all-for-one, giving up).
	PhaseRetiring
	// PhaseStopping: asked to stop; its exit is awaited.
	PhaseStopping
	// PhaseFailing: failed (the host killed it, or it answered a job with a
	// panic and is leaving); its exit is awaited and will be a failure.
	PhaseFailing
)

var phaseNames = [...]string{
	PhaseStarting: "starting", PhaseReady: "ready", PhaseRetiring: "retiring",
	PhaseStopping: "stopping", PhaseFailing: "failing",
}

// String returns the phase's name.
func (p WorkerPhase) String() string {
	if p >= PhaseStarting && int(p) < len(phaseNames) {
		return phaseNames[p]
	}
	return fmt.Sprintf("WorkerPhase(%d)", int(p))
}

// phaseNext lists the moves each phase allows.
var phaseNext = map[WorkerPhase][]WorkerPhase{
	PhaseStarting: {PhaseReady, PhaseStopping, PhaseFailing},
	PhaseReady:    {PhaseRetiring, PhaseStopping, PhaseFailing},
	PhaseRetiring: {PhaseStopping, PhaseFailing},
}

// canMove reports whether a worker in phase from may move to phase to.
func canMove(from, to WorkerPhase) bool {
	for _, p := range phaseNext[from] {
		if p == to {
			return true
		}
	}
	return false
}

// workerState is the router's record of one worker. gen, phase, link,
// proc, process, limit, spawned, readyAt and recycled belong to the
// router's goroutine; seat to the slot
// board (under its mutex); served and lastDone are updated by whoever
// settles the worker's jobs.
type workerState struct {
	pid      *actor.PID
	gen      *generation // the spec it was started from
	phase    WorkerPhase
	link     *link              // set when it becomes ready
	proc     int                // its process id, once ready
	process  *childproc.Process // once ready: its memory and CPU time, for Stats
	limit    int64              // the largest request frame it takes, once ready
	spawned  time.Time
	readyAt  time.Time
	recycled bool // retired by plan: while it finishes, its replacement may exceed MaxWorkers by one

	seat seat // guarded by the board's mutex

	served   atomic.Int64 // jobs answered
	lastDone atomic.Int64 // unix nanos of the last answer, or of readiness
}

// move changes w's phase if the move is allowed, and reports whether it
// was.
func (w *workerState) move(to WorkerPhase) bool {
	if !canMove(w.phase, to) {
		return false
	}
	w.phase = to
	return true
}

// active reports whether w serves or will serve jobs: starting or ready.
func (w *workerState) active() bool { return w.phase == PhaseStarting || w.phase == PhaseReady }

// idleFor returns how long the ready worker has had no job, given the jobs
// running on it.
func (w *workerState) idleFor(now time.Time, busy int) time.Duration {
	if busy > 0 {
		return 0
	}
	return now.Sub(time.Unix(0, w.lastDone.Load()))
}
