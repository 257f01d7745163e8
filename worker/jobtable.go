package worker

import "slices"

// jobTable is the running jobs of a conversation, by the host's ids; the
// conn's mu guards it. The rule: an id names its job from its request to
// the queueing of its response, and an id that names a job may not be
// requested again (the host's protocol error). A batch's items whose ids
// run in a row above every id registered before (as the Go host sends
// them) are registered as one run, without a map insert and delete per
// item; any other id goes in the map.
type jobTable struct {
	jobs map[uint64]*job
	runs []*jobRun // in id order, apart
	top  uint64    // the highest id registered so far
	any  bool      // an id was registered: top means something
}

// jobRun is the jobs of a run of ids: jobs[k] is id first+k's, nil once
// removed (or never registered: a refused item).
type jobRun struct {
	first uint64
	jobs  []*job
	left  int // jobs not nil
}

func newJobTable() jobTable { return jobTable{jobs: make(map[uint64]*job)} }

// above reports whether every id from first on is above the ids
// registered so far: none of them can name a job.
func (t *jobTable) above(first uint64) bool { return !t.any || first > t.top }

// has reports whether id names a job.
func (t *jobTable) has(id uint64) bool { return !t.above(id) && t.get(id) != nil }

// add registers j under id, which must name no job (see has).
func (t *jobTable) add(id uint64, j *job) {
	t.jobs[id] = j
	t.raise(id)
}

// addRun registers jobs under first, first+1, ... (nil for an id left
// out); first must be above (see above).
func (t *jobTable) addRun(first uint64, jobs []*job) {
	r := &jobRun{first: first, jobs: jobs}
	for _, j := range jobs {
		if j != nil {
			r.left++
		}
	}
	t.raise(first + uint64(len(jobs)) - 1)
	if r.left > 0 {
		t.runs = append(t.runs, r)
	}
}

func (t *jobTable) raise(id uint64) {
	t.top = max(t.top, id)
	t.any = true
}

// get returns the job id names, or nil. (An id of a run's that names no
// job there, a refused item's, may have been registered in the map since.)
func (t *jobTable) get(id uint64) *job {
	if r, k := t.run(id); r != nil && r.jobs[k] != nil {
		return r.jobs[k]
	}
	return t.jobs[id]
}

// run returns the run holding id and its place in it, or nil.
func (t *jobTable) run(id uint64) (*jobRun, int) {
	if len(t.runs) == 0 {
		return nil, 0
	}
	i, ok := slices.BinarySearchFunc(t.runs, id, func(r *jobRun, id uint64) int {
		switch {
		case id < r.first:
			return 1
		case id-r.first >= uint64(len(r.jobs)):
			return -1
		}
		return 0
	})
	if !ok {
		return nil, 0
	}
	return t.runs[i], int(id - t.runs[i].first)
}

// remove unregisters id if it names j.
func (t *jobTable) remove(id uint64, j *job) {
	r, k := t.run(id)
	if r == nil || r.jobs[k] != j {
		if t.jobs[id] == j {
			delete(t.jobs, id)
		}
		return
	}
	r.jobs[k] = nil
	if r.left--; r.left == 0 {
		t.runs = slices.DeleteFunc(t.runs, func(o *jobRun) bool { return o == r })
	}
}
