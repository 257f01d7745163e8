package actors

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/procpool/procpool/internal/latency"
)

// counters are the job outcome counts of one router. They are updated by
// whichever goroutine resolves a job, so they are atomics rather than
// router state.
type counters struct {
	accepted  atomic.Uint64
	succeeded atomic.Uint64
	failed    atomic.Uint64
	cancelled atomic.Uint64
	timedOut  atomic.Uint64
	// Payloads that crossed through a shared memory region.
	sharedRequests atomic.Uint64
	sharedResults  atomic.Uint64
	latency        latency.Histogram // acceptance to result, of the jobs that succeeded
	queueWait      latency.Histogram // acceptance to the last dispatch, of every job
	runTime        latency.Histogram // the last dispatch to the resolution, of the jobs dispatched
	itemRun        latency.Histogram // a Map batch's run time on its worker, per item: sizes batches
}

// record counts a resolved job: total is its life from acceptance, wait
// the part before its last dispatch, run the rest.
// recordSucceeded records n jobs that succeeded alike.
func (c *counters) recordSucceeded(n uint64, total, wait, run time.Duration) {
	c.queueWait.RecordN(wait, n)
	if run > 0 {
		c.runTime.RecordN(run, n)
	}
	c.succeeded.Add(n)
	c.latency.RecordN(total, n)
}

func (c *counters) record(err error, total, wait, run time.Duration) {
	c.queueWait.Record(wait)
	if run > 0 {
		c.runTime.Record(run)
	}
	switch {
	case err == nil:
		c.succeeded.Add(1)
		c.latency.Record(total)
	case errors.Is(err, ErrCancelled):
		c.cancelled.Add(1)
	case errors.Is(err, ErrJobTimeout):
		c.timedOut.Add(1)
		c.failed.Add(1)
	default:
		c.failed.Add(1)
	}
}

// Stats is a snapshot of one job type. Ask a router for it by sending
// *StatsRequest; it answers *Stats.
type Stats struct {
	JobType string

	Queued    int // jobs waiting for a worker
	Running   int // jobs dispatched to a worker and not yet answered
	Starting  int // workers started and not yet through the handshake
	Idle      int // ready workers with no job
	Busy      int // ready workers with at least one job
	Retiring  int // workers that take no new job and stop once their jobs end
	Stopping  int // workers asked to stop (passivation, recycling, shutdown)
	Failing   int // workers that failed and are being killed, or leave after a panic
	Available bool

	Accepted  uint64 // jobs accepted
	Succeeded uint64 // jobs that returned a result
	Failed    uint64 // jobs that ended with an error other than cancellation
	Cancelled uint64 // jobs cancelled by their caller
	TimedOut  uint64 // jobs that overran their timeout (also counted in Failed)
	Retried   uint64 // re-dispatches after a worker died

	Spawns       uint64 // worker processes started
	Exits        uint64 // worker processes that ended, for any reason
	Crashes      uint64 // exits that were failures
	Restarts     uint64 // replacements started after a failure
	Passivations uint64 // idle workers stopped
	Recycles     uint64 // workers retired by plan (job count, age, memory)
	UncleanStops uint64 // workers asked to stop that did not exit with status 0 in time

	// SharedRequests and SharedResults count the payloads that crossed
	// through a worker's shared memory region instead of a frame.
	SharedRequests uint64
	SharedResults  uint64

	// PerWorker has a line per live worker, in no particular order.
	PerWorker []WorkerStats
	// LastFailure is the last worker failure's forensics, nil if none.
	LastFailure *CrashError

	LatencyP50 time.Duration // accept-to-result time of successful jobs
	LatencyP99 time.Duration
	// QueueWait is the time from acceptance to the last dispatch to a
	// worker, of every resolved job; RunTime the time from that dispatch to
	// the resolution, of the jobs that were dispatched (as piscina's
	// waitTime and runTime).
	QueueWaitP50, QueueWaitP99 time.Duration
	RunTimeP50, RunTimeP99     time.Duration
}

// WorkerStats is one worker's line in a Stats snapshot.
type WorkerStats struct {
	PID        int // 0 while it starts
	Phase      WorkerPhase
	Generation int           // the spec it runs: 1, then one more per Update
	JobsDone   uint64        // jobs it answered
	InFlight   int           // jobs running on it
	RSS        uint64        // resident memory less shared pages, in bytes (0 while it starts)
	CPU        time.Duration // CPU time used, user and system
	Uptime     time.Duration // since it was spawned
	Recycled   bool          // retired by plan
	// Containment is how its process tree is held, the tier in force
	// (see childproc.Containment and docs/isolation.md); "" while it
	// starts.
	Containment string
}

// Workers returns the number of live worker processes.
func (s *Stats) Workers() int {
	return s.Starting + s.Idle + s.Busy + s.Retiring + s.Stopping + s.Failing
}

// StatsRequest asks a router for a *Stats snapshot.
type StatsRequest struct{}

func (r *routerActor) snapshot() *Stats {
	s := r.stats
	s.Queued = r.queue.len()
	now := time.Now()
	s.PerWorker = make([]WorkerStats, 0, len(r.workers))
	if r.lastCrash != nil {
		c := *r.lastCrash
		s.LastFailure = &c
	}
	for _, w := range r.workers {
		busy := r.board.busy(w)
		s.Running += busy
		ws := WorkerStats{
			PID: w.proc, Phase: w.phase, Generation: w.gen.n, JobsDone: uint64(w.served.Load()),
			InFlight: busy, Uptime: now.Sub(w.spawned), Recycled: w.recycled,
		}
		if w.process != nil {
			if m, err := w.process.Memory(); err == nil {
				ws.RSS = m.RSS - min(m.Shmem, m.RSS)
			}
			ws.CPU, _ = w.process.CPUTime()
			ws.Containment = w.process.Containment().String()
		}
		s.PerWorker = append(s.PerWorker, ws)
		switch w.phase {
		case PhaseStarting:
			s.Starting++
		case PhaseRetiring:
			s.Retiring++
		case PhaseStopping:
			s.Stopping++
		case PhaseFailing:
			s.Failing++
		default:
			if busy > 0 {
				s.Busy++
			} else {
				s.Idle++
			}
		}
	}
	s.Available = !r.gaveUp
	c := &r.gate.counters
	s.Accepted, s.Succeeded, s.Failed = c.accepted.Load(), c.succeeded.Load(), c.failed.Load()
	s.Cancelled, s.TimedOut = c.cancelled.Load(), c.timedOut.Load()
	s.SharedRequests, s.SharedResults = c.sharedRequests.Load(), c.sharedResults.Load()
	h := c.latency.Snapshot()
	s.LatencyP50, s.LatencyP99 = h.Quantile(0.5), h.Quantile(0.99)
	h = c.queueWait.Snapshot()
	s.QueueWaitP50, s.QueueWaitP99 = h.Quantile(0.5), h.Quantile(0.99)
	h = c.runTime.Snapshot()
	s.RunTimeP50, s.RunTimeP99 = h.Quantile(0.5), h.Quantile(0.99)
	return &s
}
