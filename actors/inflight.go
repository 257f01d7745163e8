package actors

import (
	"slices"
	"sync"
	"sync/atomic"
)

// inflight is the table of the jobs dispatched to one worker and not yet
// answered. It is the one place where a running job changes owner:
//
//	add      dispatcher → table. The job gets its id on this worker (ids
//	         count up from 1 and are never reused), and its link.
//	take     table → the reader of its answer, which settles it.
//	drop     table → the writer that did not send its request (too large
//	         for the worker, or the job resolved before it was written).
//	takeAll  table → the router, once the worker is gone; the table is
//	         then closed for good.
//
// Whoever takes a job out of the table owns it and must settle it; no one
// else touches its placement. A job may resolve while it is in the table
// (cancelled, timed out): it stays until its answer or its worker's end,
// because its slot is busy until then, and its id must stay known. So a
// response for an id that is not in the table is one the worker was never
// asked for, or one it already gave: a protocol violation.
type inflight struct {
	mu     sync.Mutex
	jobs   map[uint64]*Job
	next   uint64
	closed bool
	n      atomic.Int32 // len(jobs), read without the lock by the read role
}

func newInflight() inflight { return inflight{jobs: make(map[uint64]*Job)} }

// add registers j as running on l and returns its id; false when the table
// is closed (the worker takes no more jobs).
func (t *inflight) add(j *Job, l *link) (uint64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return 0, false
	}
	t.next++
	id := t.next
	j.id.Store(id)
	j.link.Store(l)
	t.jobs[id] = j
	t.n.Add(1)
	return id, true
}

// take removes and returns the job with id; false if there is none.
func (t *inflight) take(id uint64) (*Job, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	j, ok := t.jobs[id]
	if ok {
		delete(t.jobs, id)
		t.n.Add(-1)
	}
	return j, ok
}

// drop removes job id if it is still j; it reports whether it did.
func (t *inflight) drop(id uint64, j *Job) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.jobs[id] != j {
		return false
	}
	delete(t.jobs, id)
	t.n.Add(-1)
	return true
}

// holds reports whether job id is still j and unanswered.
func (t *inflight) holds(id uint64, j *Job) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.jobs[id] == j
}

// close makes later adds fail and returns how many jobs are in the table.
func (t *inflight) close() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	return len(t.jobs)
}

// takeAll closes the table and returns every job in it, in dispatch order.
func (t *inflight) takeAll() []*Job {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	ids := make([]uint64, 0, len(t.jobs))
	for id := range t.jobs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	jobs := make([]*Job, len(ids))
	for i, id := range ids {
		jobs[i] = t.jobs[id]
		delete(t.jobs, id)
	}
	t.n.Store(0)
	return jobs
}

// len returns the number of jobs in the table.
func (t *inflight) len() int { return int(t.n.Load()) }
