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
	latency        latency.Histogram
}

func (c *counters) record(err error, took time.Duration) {
	switch {
	case err == nil:
		c.succeeded.Add(1)
		c.latency.Record(took)
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

	LatencyP50 time.Duration // accept-to-result time of successful jobs
	LatencyP99 time.Duration
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
	for _, w := range r.workers {
		busy := r.board.busy(w)
		s.Running += busy
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
	return &s
}
