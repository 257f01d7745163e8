package actors

import (
	"cmp"
	"slices"
	"time"
)

// scaleInput is what the scaling plan looks at: one router's workers and
// queue at one moment.
type scaleInput struct {
	Min, Max, InFlight int

	Starting int // workers starting
	Serving  int // ready workers that take jobs
	Alive    int // worker processes, in any phase
	Recycled int // alive workers retired by plan (recycling)
	Free     int // free capacity of the serving workers: InFlight minus their running jobs, summed

	Queued   int  // jobs waiting for a worker
	Owed     int  // replacements owed to failed workers
	Draining bool // the router is shutting down: only queued jobs count
}

// planSpawns returns how many workers to start now, and whether the pool is
// full (then no replacement is owed any more).
//
// Workers are started for three reasons, taking the largest: to reach Min;
// for the queued jobs that neither the free slots nor the starting workers
// will take (counting starting workers keeps a burst from starting a
// process per job); and for the replacements owed to failed workers.
// While draining only queued jobs count: a job admitted before the drain,
// whose message arrived after it, still gets a worker.
//
// The workers alive never exceed Max, but for one: a worker retired by plan
// does not count while it finishes its jobs, so that its replacement
// starts first. Stopping and failing workers count: they still hold a
// process.
func planSpawns(in scaleInput) (spawn int, full bool) {
	active := in.Starting + in.Serving
	need := 0
	if !in.Draining {
		need = in.Min - active
	}
	if waiting := in.Queued - in.Free - in.Starting*in.InFlight; waiting > 0 {
		need = max(need, (waiting+in.InFlight-1)/in.InFlight)
	}
	if !in.Draining {
		need = max(need, min(in.Owed, in.Max-active))
	}
	room := in.Max - (in.Alive - min(in.Recycled, 1))
	return max(min(need, room), 0), active >= in.Max
}

// planPassivations returns the indexes, into idle, of the serving workers
// to passivate: those idle for at least timeout, longest idle first, while
// more than Min stay active and no job is queued. idle[i] is 0 for a busy
// worker. A negative timeout passivates nothing.
func planPassivations(minWorkers, active, queued int, timeout time.Duration, idle []time.Duration) []int {
	if timeout <= 0 || queued > 0 || active <= minWorkers {
		return nil
	}
	var due []int
	for i, d := range idle {
		if d >= timeout {
			due = append(due, i)
		}
	}
	slices.SortStableFunc(due, func(a, b int) int { return cmp.Compare(idle[b], idle[a]) })
	return due[:min(len(due), active-minWorkers)]
}
