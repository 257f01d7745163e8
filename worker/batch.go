package worker

import (
	"runtime"
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
	h := &heldResponses{c: c}
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
		c.settle(j, nil, err, nil)
		h.hold(j)
		return
	}
	c.runHolding(j, h)
}

// holdFor is the longest a batch item's response is held.
const holdFor = time.Millisecond

// maxHeld is the most responses one runner holds: a batch frame's worth.
const maxHeld = 256

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

// forget drops a registered job that will never run nor be answered.
func (c *conn) forget(j *job) {
	j.jc.endStream()
	j.jc.end(nil)
	c.mu.Lock()
	delete(c.jobs, j.id)
	c.running--
	if c.running == 0 && c.idle != nil {
		close(c.idle)
		c.idle = nil
	}
	c.mu.Unlock()
	releaseJob(j)
}

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
	b := &batchRun{jobs: make([]*job, 0, len(m.Items))}
	// The items' contexts, in one allocation: never reused, like any
	// job's, so a context leaked by a handler keeps the array alive.
	ctxs := make([]jobContext, len(m.Items))
	// The items' payloads stay in the frame's buffer when it is one of
	// its own; else (a frame read within the reader's buffer) they are
	// copied out.
	var frame *frameRef
	if c.rd.Owned() && c.big != nil {
		frame = &frameRef{buf: c.big}
		frame.refs.Store(1) // startBatch's own, until every item holds one
		c.big = nil
	}
	var err error
	for i := range m.Items {
		var j *job
		if j, err = c.accept(&m.Items[i], &ctxs[i], frame); err != nil {
			break
		}
		if j != nil {
			b.jobs = append(b.jobs, j)
		}
	}
	if frame != nil {
		frame.release()
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

func (s *Server) batchConcurrency() int {
	if s.BatchConcurrency > 0 {
		return s.BatchConcurrency
	}
	return runtime.GOMAXPROCS(0)
}
