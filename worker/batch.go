package worker

import (
	"runtime"
	"sync/atomic"

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
	for {
		i := int(t.b.next.Add(1)) - 1
		if i >= len(t.b.jobs) {
			return
		}
		j := t.b.jobs[i]
		t.b.jobs[i] = nil // the job is pooled once answered
		c.runItem(j)
	}
}

// runItem runs a batch's job that waited for a runner. One whose context
// ended meanwhile (a cancel, its timeout) is answered at once without its
// handler. After a panic no job starts: one still waiting is dropped
// unanswered, lost with the worker as the jobs it never read are, so that
// the host fails or retries it as the job type's policy says.
func (c *conn) runItem(j *job) {
	if c.panicky.Load() {
		c.forget(j)
		return
	}
	if err := j.ctx.Err(); err != nil {
		c.complete(j, nil, err, nil)
		return
	}
	c.run(j)
}

// forget drops a registered job that will never run nor be answered.
func (c *conn) forget(j *job) {
	j.jc.end()
	if j.stop != nil {
		j.stop()
	}
	j.cancel(nil)
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

// startBatch accepts every item of the batch request m, as startJob does a
// request, then runs them in order with at most c.batchWorkers runners at
// once. The items' payloads are copied out of the frame.
func (c *conn) startBatch(m *codec.Message) error {
	b := &batchRun{jobs: make([]*job, 0, len(m.Items))}
	var err error
	for i := range m.Items {
		var j *job
		if j, err = c.accept(&m.Items[i], true); err != nil {
			break
		}
		if j != nil {
			b.jobs = append(b.jobs, j)
		}
	}
	if c.rd.Owned() && c.big != nil {
		putPayload(c.big) // every item has copied its payload out
		c.big = nil
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
