package actors

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/procpool/procpool/childproc"
)

// memoryEvery is the least time between two readings of a worker's memory
// after its jobs: often enough to catch a leak within a millisecond of
// jobs, rarely enough to cost nothing on the job path (a reading is a read
// of /proc/<pid>/status).
const memoryEvery = time.Millisecond

// linkHooks is the owner of a worker's link (linkOwner): it turns what the
// link reads into the pool's bookkeeping. A job's end frees its slot on the
// board (or hands it to the router), counts it, checks the worker's memory,
// then resolves the job; everything else becomes a message to the worker
// actor or the router.
type linkHooks struct {
	system       *actor.ActorSystem
	self, router *actor.PID // the worker actor, its router
	board        *slotBoard
	counters     *counters
	ws           *workerState
	spec         *JobType
	proc         *childproc.Process

	memAt     atomic.Int64  // unix nanos of the last memory reading
	rss       atomic.Uint64 // resident memory less shared pages, at the last reading
	recycling atomic.Bool   // MaxRSS was exceeded: the router was told
	killing   atomic.Bool   // KillRSS was exceeded: the worker actor was told
}

func (h *linkHooks) ready(limit int64) { h.system.Root.Send(h.self, &linkReady{limit: limit}) }

func (h *linkHooks) closed(err error) { h.system.Root.Send(h.self, &linkClosed{err: err}) }

func (h *linkHooks) overran(id uint64) { h.system.Root.Send(h.self, &overrunCheck{id: id}) }

func (h *linkHooks) leaving(reason error) {
	h.board.close(h.ws)
	h.system.Root.Send(h.router, &workerFailing{pid: h.self})
	h.system.Root.Send(h.self, &workerLeaving{})
}

// answered frees the job's slot first, so that a caller woken by the
// result finds it free, then resolves the job.
func (h *linkHooks) answered(j *Job, result []byte, err error) {
	j.stopTimer()
	now := time.Now()
	h.ws.served.Add(1)
	h.ws.lastDone.Store(now.UnixNano())
	h.checkMemory(now, false)
	if !h.board.finish(h.ws) {
		h.system.Root.Send(h.router, (*slotFreed)(h.ws))
	}
	if err != errCallerDecides {
		j.resolve(result, err)
	}
}

// itemAnswered delivers a Map item's outcome; the job's slot is freed, as
// answered frees a job's, once the dispatch's last item is answered, and
// the job resolves once every item is delivered.
func (h *linkHooks) itemAnswered(j *Job, item int, result []byte, err error) {
	h.ws.served.Add(1) // before the outcome: a caller that has it finds it counted
	if err != errCallerDecides {
		j.batch.give(item, result, err)
	}
	h.itemsDone(j, 1)
}

// itemsAnswered is itemAnswered of each of outs, delivered at once.
func (h *linkHooks) itemsAnswered(j *Job, outs []itemOutcome) {
	h.ws.served.Add(int64(len(outs)))
	j.batch.giveMany(outs)
	h.itemsDone(j, len(outs))
}

// itemsDone counts n items of j's dispatch as answered, and frees the
// job's slot after the last.
func (h *linkHooks) itemsDone(j *Job, n int) {
	b := j.batch
	if b.running.Add(-int32(n)) != 0 {
		return
	}
	b.releaseBlock() // before the slot is freed for the next dispatch
	now := time.Now()
	h.ws.lastDone.Store(now.UnixNano())
	if d := j.dispatched.Load(); d != 0 && len(b.sent) > 0 {
		h.counters.itemRun.Record(now.Sub(time.Unix(0, d)) / time.Duration(len(b.sent)))
	}
	j.stopTimer()
	h.checkMemory(now, false)
	if !h.board.finish(h.ws) {
		h.system.Root.Send(h.router, (*slotFreed)(h.ws))
	}
	switch {
	case b.allDone():
		j.resolve(nil, nil)
	case !j.resolved() && b.oneByOne.Load():
		h.system.Root.Send(h.router, (*batchMore)(j)) // its next item
	}
}

// checkMemory reads the worker's memory, at most every memoryEvery unless
// forced (heartbeats). Above KillRSS the worker actor kills the worker;
// above MaxRSS the worker gets no new job at once and the router recycles
// it: its running jobs finish, its replacement starts.
func (h *linkHooks) checkMemory(now time.Time, force bool) {
	if h.spec.MaxRSS == 0 && h.spec.KillRSS == 0 {
		return
	}
	last := h.memAt.Load()
	if !force && now.UnixNano()-last < int64(memoryEvery) {
		return
	}
	if !h.memAt.CompareAndSwap(last, now.UnixNano()) {
		return // another goroutine reads it now
	}
	m, err := h.proc.Memory()
	if err != nil {
		return
	}
	rss := m.RSS - min(m.Shmem, m.RSS) // the shared region is no sign of a leak
	h.rss.Store(rss)
	switch {
	case h.spec.KillRSS > 0 && rss > h.spec.KillRSS:
		if !h.killing.Swap(true) {
			h.system.Root.Send(h.self, &memoryOver{rss: rss})
		}
	case h.spec.MaxRSS > 0 && rss > h.spec.MaxRSS:
		if !h.recycling.Swap(true) {
			h.board.close(h.ws)
			h.system.Root.Send(h.router, &recycleDue{w: h.ws, why: fmt.Sprintf("resident memory %d bytes above %d", rss, h.spec.MaxRSS)})
		}
	}
}

// Messages to the router about its workers' slots. slotFreed and
// budgetSpent are conversions of *workerState, so they allocate nothing.
type (
	// slotFreed: a job on the worker ended while jobs were queued (its
	// slot is handed to the router), or on a closed worker.
	slotFreed workerState
	// budgetSpent: a caller gave the worker its last job (RecycleAfterJobs).
	budgetSpent workerState
	// recycleDue: the worker must be recycled, for why.
	recycleDue struct {
		w   *workerState
		why string
	}
	// cancelJob: the job's caller cancelled it.
	cancelJob Job
	// batchMore: a Map job that sends its items one at a time is ready
	// for the next.
	batchMore Job
)
