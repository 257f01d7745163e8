package actors

import (
	"cmp"
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
	mu   sync.Mutex
	jobs map[uint64]entry // single jobs
	// runs are the Map dispatches in the table, in id order: one run per
	// addItems, whose items took ids in a row. A run leaves the table
	// with its last item.
	runs   []*itemRun
	next   uint64
	closed bool
	n      atomic.Int32 // the ids in the table, read without the lock by the read role
}

// entry is what an id in the table names: a job, or one item of a Map
// job's batch (item >= 0).
type entry struct {
	j    *Job
	item int
}

// itemRun is one Map dispatch in the table: id first+k names item
// items[k] of j's batch while done[k] is false. It replaces an entry per
// item, a map insert and delete apiece, by one per dispatch.
type itemRun struct {
	first uint64
	j     *Job
	items []int
	done  []bool
	left  int // items not done
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

// addItems registers the given items of Map job j, with ids in a row,
// records them as the batch's current dispatch (sent, ids: written under
// the lock, before whoever takes them out may read them) and returns
// their ids; false when the table is closed.
func (t *inflight) addItems(j *Job, l *link, items []int) ([]uint64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, false
	}
	r := &itemRun{first: t.next + 1, j: j, items: items, done: make([]bool, len(items)), left: len(items)}
	ids := make([]uint64, len(items))
	for k := range items {
		ids[k] = r.first + uint64(k)
	}
	t.next += uint64(len(items))
	t.runs = append(t.runs, r) // its ids are above every other's
	j.batch.sent, j.batch.ids = items, ids
	for _, item := range items {
		j.batch.attempts[item]++
	}
	j.id.Store(ids[0])
	j.link.Store(l)
	t.n.Add(int32(len(items)))
	return ids, true
}

// slot is where an id lies in the table: in run at index k, or among the
// single jobs (run nil).
type slot struct {
	run *itemRun
	k   int
}

// find returns what id names, and where; t.mu is held.
func (t *inflight) find(id uint64) (entry, slot, bool) {
	if len(t.runs) > 0 {
		i, ok := slices.BinarySearchFunc(t.runs, id, func(r *itemRun, id uint64) int {
			switch {
			case id < r.first:
				return 1
			case id-r.first >= uint64(len(r.items)):
				return -1
			}
			return 0
		})
		if ok {
			r := t.runs[i]
			k := int(id - r.first)
			if r.done[k] {
				return entry{}, slot{}, false
			}
			return entry{j: r.j, item: r.items[k]}, slot{run: r, k: k}, true
		}
	}
	e, ok := t.jobs[id]
	return e, slot{}, ok
}

// remove takes id, found at s, out of the table; t.mu is held.
func (t *inflight) remove(id uint64, s slot) {
	t.n.Add(-1)
	if s.run == nil {
		delete(t.jobs, id)
		return
	}
	s.run.done[s.k] = true
	if s.run.left--; s.run.left == 0 {
		t.runs = slices.DeleteFunc(t.runs, func(r *itemRun) bool { return r == s.run })
	}
}

// put puts id back at s, as it was before remove; t.mu is held.
func (t *inflight) put(id uint64, e entry, s slot) {
	t.n.Add(1)
	if s.run == nil {
		t.jobs[id] = e
		return
	}
	if s.run.left == 0 {
		i, _ := slices.BinarySearchFunc(t.runs, s.run.first, func(r *itemRun, first uint64) int {
			return cmp.Compare(r.first, first)
		})
		t.runs = slices.Insert(t.runs, i, s.run)
	}
	s.run.done[s.k] = false
	s.run.left++
}

// take removes and returns what id names; false if there is nothing.
func (t *inflight) take(id uint64) (entry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, s, ok := t.find(id)
	if ok {
		t.remove(id, s)
	}
	return e, ok
}

// taken is what take found for one id.
type taken struct {
	e  entry
	ok bool
	at slot
}

// takeEach is take of the id of every message of ms, under one lock; the
// results go in out, one per message, and out is returned.
func (t *inflight) takeEach(ms []codec.Message, out []taken) []taken {
	out = out[:0]
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range ms {
		e, s, ok := t.find(ms[i].ID)
		if ok {
			t.remove(ms[i].ID, s)
		}
		out = append(out, taken{e, ok, s})
	}
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
			t.put(ms[i].ID, found[i].e, found[i].at)
		}
	}
}

// lookup returns what id names, leaving it in the table.
func (t *inflight) lookup(id uint64) (entry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, _, ok := t.find(id)
	return e, ok
}

// drop removes id if it still names j, and returns what it named.
func (t *inflight) drop(id uint64, j *Job) (entry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, s, ok := t.find(id)
	if !ok || e.j != j {
		return entry{}, false
	}
	t.remove(id, s)
	return e, true
}

// holds reports whether job id is still j and unanswered.
func (t *inflight) holds(id uint64, j *Job) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, _, ok := t.find(id)
	return ok && e.j == j
}

// close makes later adds fail and returns how many jobs are in the table.
func (t *inflight) close() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	return t.ids()
}

// ids is the number of ids in the table; t.mu is held.
func (t *inflight) ids() int {
	n := len(t.jobs)
	for _, r := range t.runs {
		n += r.left
	}
	return n
}

// takeAll closes the table and returns every job in it, in dispatch order,
// each once (a Map job once for all its items).
func (t *inflight) takeAll() []*Job {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	type first struct {
		id uint64
		j  *Job
	}
	firsts := make([]first, 0, len(t.jobs)+len(t.runs))
	for id, e := range t.jobs {
		firsts = append(firsts, first{id, e.j})
	}
	for _, r := range t.runs {
		firsts = append(firsts, first{r.first, r.j})
	}
	slices.SortFunc(firsts, func(a, b first) int { return cmp.Compare(a.id, b.id) })
	jobs := make([]*Job, 0, len(firsts))
	seen := map[*Job]bool{}
	for _, f := range firsts {
		if !seen[f.j] {
			seen[f.j] = true
			jobs = append(jobs, f.j)
		}
	}
	clear(t.jobs)
	t.runs = nil
	t.n.Store(0)
	return jobs
}

// len returns the number of jobs in the table.
func (t *inflight) len() int { return int(t.n.Load()) }
