package actors

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/procpool/procpool/codec"
)

// inflight is the table of the jobs dispatched to one worker and not yet
// answered. It is the one place where a running job changes owner:
//
//	add      dispatcher → table. The job gets its id on this worker (ids
//	         count up from 1 and are never reused), and its link. A Map
//	         job's items (see batch) get an id each, all naming the job.
//	take     table → the reader of its answer, which settles it (takeEach:
//	         a batch response's at once; restore puts back those a
//	         protocol error left unsettled).
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
	jobs   map[uint64]entry
	next   uint64
	closed bool
	n      atomic.Int32 // len(jobs), read without the lock by the read role
}

// entry is what an id in the table names: a job, or one item of a Map
// job's batch (item >= 0).
type entry struct {
	j    *Job
	item int
}

func newInflight() inflight { return inflight{jobs: make(map[uint64]entry)} }

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
	t.jobs[id] = entry{j: j, item: -1}
	t.n.Add(1)
	return id, true
}

// addItems registers the given items of Map job j, records them as the
// batch's current dispatch (sent, ids: written under the lock, before
// whoever takes them out may read them) and returns their ids; false when
// the table is closed.
func (t *inflight) addItems(j *Job, l *link, items []int) ([]uint64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, false
	}
	ids := make([]uint64, len(items))
	for k, item := range items {
		t.next++
		ids[k] = t.next
		t.jobs[t.next] = entry{j: j, item: item}
	}
	j.batch.sent, j.batch.ids = items, ids
	for _, item := range items {
		j.batch.attempts[item]++
	}
	j.id.Store(ids[0])
	j.link.Store(l)
	t.n.Add(int32(len(items)))
	return ids, true
}

// take removes and returns what id names; false if there is nothing.
func (t *inflight) take(id uint64) (entry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.jobs[id]
	if ok {
		delete(t.jobs, id)
		t.n.Add(-1)
	}
	return e, ok
}

// taken is what take found for one id.
type taken struct {
	e  entry
	ok bool
}

// takeEach is take of the id of every message of ms, under one lock; the
// results go in out, one per message, and out is returned.
func (t *inflight) takeEach(ms []codec.Message, out []taken) []taken {
	out = out[:0]
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for i := range ms {
		e, ok := t.jobs[ms[i].ID]
		if ok {
			delete(t.jobs, ms[i].ID)
			n++
		}
		out = append(out, taken{e, ok})
	}
	t.n.Add(int32(-n))
	return out
}

// restore puts back what takeEach took for ms, where found: the answers
// of a batch response left unsettled after a protocol error, for the
// worker's end to settle.
func (t *inflight) restore(ms []codec.Message, found []taken) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range found {
		if found[i].ok {
			t.jobs[ms[i].ID] = found[i].e
			t.n.Add(1)
		}
	}
}

// lookup returns what id names, leaving it in the table.
func (t *inflight) lookup(id uint64) (entry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.jobs[id]
	return e, ok
}

// drop removes id if it still names j, and returns what it named.
func (t *inflight) drop(id uint64, j *Job) (entry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.jobs[id]
	if e.j != j {
		return entry{}, false
	}
	delete(t.jobs, id)
	t.n.Add(-1)
	return e, true
}

// holds reports whether job id is still j and unanswered.
func (t *inflight) holds(id uint64, j *Job) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.jobs[id].j == j
}

// close makes later adds fail and returns how many jobs are in the table.
func (t *inflight) close() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	return len(t.jobs)
}

// takeAll closes the table and returns every job in it, in dispatch order,
// each once (a Map job once for all its items).
func (t *inflight) takeAll() []*Job {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	ids := make([]uint64, 0, len(t.jobs))
	for id := range t.jobs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	jobs := make([]*Job, 0, len(ids))
	seen := map[*Job]bool{}
	for _, id := range ids {
		e := t.jobs[id]
		delete(t.jobs, id)
		if !seen[e.j] {
			seen[e.j] = true
			jobs = append(jobs, e.j)
		}
	}
	t.n.Store(0)
	return jobs
}

// len returns the number of jobs in the table.
func (t *inflight) len() int { return int(t.n.Load()) }
