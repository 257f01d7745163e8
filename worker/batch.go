package worker

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/procpool/procpool/codec"
)

// task is what a runner runs: one job, or the items of a batch, which the
// runners given the same batchRun take in turn.
type task struct {
	j *job
	b *batchRun
}

// batchRun is the jobs of one batch request, run in order by a bounded
// number of runners.
type batchRun struct {
	jobs []*job
	next atomic.Int64 // index of the next job to take
}

// runTask runs t's job, or takes the jobs of t's batch until none is left.
func (c *conn) runTask(t task) {
	if t.b == nil {
		c.run(t.j)
		return
	}
	h := &heldResponses{c: c, jobs: make([]*job, 0, min(len(t.b.jobs)/c.batchWorkers+1, maxHeld))}
	defer h.stop() // also after a handler's runtime.Goexit
	for {
		i := int(t.b.next.Add(1)) - 1
		if i >= len(t.b.jobs) {
			return
		}
		j := t.b.jobs[i]
		t.b.jobs[i] = nil // the job is pooled once answered
		c.runItem(j, h)
	}
}

// runItem runs a batch's job that waited for a runner. One whose context
// ended meanwhile (a cancel, its timeout) is answered at once without its
// handler. After a panic no job starts: one still waiting is dropped
// unanswered, lost with the worker as the jobs it never read are, so that
// the host fails or retries it as the job type's policy says.
func (c *conn) runItem(j *job, h *heldResponses) {
	if c.panicky.Load() {
		c.forget(j)
		return
	}
	if err := j.ctx.Err(); err != nil {
		c.settle(j, nil, err, nil, true)
		h.hold(j)
		return
	}
	c.runHolding(j, h)
}

// holdFor is the longest a batch item's response is held.
const holdFor = time.Millisecond

// maxHeld is the most responses one runner holds: a batch frame's worth.
const maxHeld = codec.MaxBatch

// heldResponses are the responses of a batch's items that one runner has
// settled and not yet queued. Queued one by one, the responses of short
// jobs each find the outbox idle and cost the worker a write system call
// apiece; held, they go out a few hundred to a batch frame. The rule: a
// response waits at most holdFor (a timer queues what is held then), at
// most maxHeld wait, and the runner queues what it holds when it takes no
// more items of the batch, and at once after a panic. Held jobs count as
// running, so that a drain waits for them.
type heldResponses struct {
	c     *conn
	mu    sync.Mutex
	jobs  []*job
	timer *time.Timer // queues what is held holdFor after the first
}

// hold holds the settled job j's response.
func (h *heldResponses) hold(j *job) {
	h.mu.Lock()
	h.jobs = append(h.jobs, j)
	n := len(h.jobs)
	h.mu.Unlock()
	switch {
	case n >= maxHeld:
		h.flush()
	case n == 1 && h.timer == nil:
		h.timer = time.AfterFunc(holdFor, h.flush)
	case n == 1:
		h.timer.Reset(holdFor)
	}
}

// flush queues every held response.
func (h *heldResponses) flush() {
	h.mu.Lock()
	jobs := h.jobs
	h.jobs = nil
	h.mu.Unlock()
	if len(jobs) == 0 {
		return
	}
	h.c.unregister(jobs)
	h.c.sendAll(jobs) // the outbox keeps the jobs, not the slice
	clear(jobs)
	h.mu.Lock()
	if h.jobs == nil {
		h.jobs = jobs[:0]
	}
	h.mu.Unlock()
}

// stop queues what is held; the runner calls it when it is done with the
// batch. A timer that fires meanwhile finds nothing held.
func (h *heldResponses) stop() {
	if h.timer != nil {
		h.timer.Stop()
	}
	h.flush()
}

// unregister removes settled jobs from c.jobs, before their responses are
// queued: once the host has read one, it may use its id again.
func (c *conn) unregister(jobs []*job) {
	c.mu.Lock()
	for _, j := range jobs {
		c.jobs.remove(j.id, j)
	}
	c.mu.Unlock()
}

// forget drops a registered job that will never run nor be answered.
func (c *conn) forget(j *job) {
	j.jc.endStream()
	j.jc.end(nil)
	c.mu.Lock()
	c.jobs.remove(j.id, j)
	c.running--
	if c.running == 0 && c.idle != nil {
		close(c.idle)
		c.idle = nil
	}
	c.mu.Unlock()
	releaseJob(j)
}

// batchFrameOwned is the size past which a frame is read into a pooled
// buffer of its own rather than the reader's: a batch's items then keep
// their payloads in it (see frameRef) instead of each copying its own out.
const batchFrameOwned = 4 << 10

// frameRef is the pooled buffer of a batch frame whose items' payloads
// lie in it: each job holding one of them holds a reference, and the
// last released returns the buffer to its pool, once no handler runs on
// it and no response that may alias it remains to be written.
type frameRef struct {
	buf  *[]byte
	refs atomic.Int32
}

// hold takes a reference for a job whose payload lies in the frame.
func (f *frameRef) hold() *frameRef {
	f.refs.Add(1)
	return f
}

// release drops a reference.
func (f *frameRef) release() {
	if f.refs.Add(-1) == 0 {
		putPayload(f.buf)
	}
}

// startBatch accepts every item of the batch request m, as startJob does a
// request, then runs them in order with at most c.batchWorkers runners at
// once.
func (c *conn) startBatch(m *codec.Message) error {
	items := m.Items
	// Every item's shared payload first: a bad span is a protocol error,
	// before anything is registered.
	var shared [][]byte // c.sharedScratch, once an item is shared
	for i := range items {
		if !items[i].Shared {
			continue
		}
		if shared == nil {
			shared = slices.Grow(c.sharedScratch[:0], len(items))[:len(items)]
			c.sharedScratch = shared
			defer clear(shared)
		}
		var err error
		if shared[i], err = c.sharedPayload(&items[i]); err != nil {
			return err
		}
	}
	b := &batchRun{jobs: make([]*job, 0, len(items))}
	// The items' contexts, in one allocation: never reused, like any
	// job's, so a context leaked by a handler keeps the array alive.
	ctxs := make([]jobContext, len(items))
	// The items' payloads stay in the frame's buffer when it is one of
	// its own; else (a frame read within the reader's buffer) they are
	// copied out.
	var frame *frameRef
	if c.rd.Owned() && c.big != nil {
		frame = &frameRef{buf: c.big}
		frame.refs.Store(1) // startBatch's own, until every item holds one
		c.big = nil
	}
	var (
		refusals []refusal
		err      error
	)
	c.mu.Lock() // once for every item
	// Items with ids in a row above any registered before go in c.jobs as
	// one run.
	var run []*job
	if inRow(items) && c.jobs.above(items[0].ID) {
		run = make([]*job, len(items))
	}
	for i := range items {
		it := &items[i]
		j, ref, rerr := c.register(it, c.handler(it.JobType), &ctxs[i], run != nil)
		if rerr != nil {
			err = rerr
			break
		}
		if j == nil {
			refusals = append(refusals, ref)
			continue
		}
		var sh []byte
		if shared != nil {
			sh = shared[i]
		}
		c.ownPayload(j, it, sh, frame, true)
		b.jobs = append(b.jobs, j)
		if run != nil {
			run[i] = j
		}
	}
	if run != nil {
		c.jobs.addRun(items[0].ID, run)
	}
	c.mu.Unlock()
	if frame != nil {
		frame.release()
	}
	for _, r := range refusals {
		c.refuse(r)
	}
	if err != nil {
		// A protocol error: the conversation ends. The items accepted
		// before it are answered, cancelled, as running jobs are.
		for _, j := range b.jobs {
			c.launch(task{j: j})
		}
		return err
	}
	for range min(c.batchWorkers, len(b.jobs)) {
		c.launch(task{b: b})
	}
	return nil
}

// inRow reports whether the items' ids run in a row: the first's, the
// next one, and so on, without wrapping around.
func inRow(items []codec.Message) bool {
	if len(items) == 0 || items[0].ID+uint64(len(items)-1) < items[0].ID {
		return false
	}
	for i := range items {
		if items[i].ID != items[0].ID+uint64(i) {
			return false
		}
	}
	return true
}

func (s *Server) batchConcurrency() int {
	if s.BatchConcurrency > 0 {
		return s.BatchConcurrency
	}
	return runtime.GOMAXPROCS(0)
}
