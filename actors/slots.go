package actors

import (
	"fmt"
	"sync"
)

// slotBoard is the free capacity of one router's workers, shared by the
// router and the callers of its handle. A caller that finds no job queued
// takes a free slot and writes its request straight to that worker (the
// fast path); the router takes slots for the jobs in its queue. So the
// router decides who may run where (it opens and closes workers, and owns
// the queue), while a job on an idle pool crosses no actor mailbox.
//
// Each worker the router made ready has its job type's InFlight slots (its
// capacity, fixed when it opens), and each slot is in one of three places:
//
//	free    on the board, for a caller (while no job is queued) or the
//	        router (for a queued job) to take;
//	busy    held by a job running on the worker;
//	handed  given to the router by a job that ended while jobs were queued
//	        (or by open), for the router to place a queued job on or to
//	        publish.
//
// The rules, which check verifies (the tests call it after every step):
//
//  1. An open worker's free + busy + handed slots are its capacity.
//  2. A closed worker (retiring, stopping, failing, or out of budget) has
//     no free or handed slot, and gets none back: its slots end with its
//     running jobs. Closing is final.
//  3. The free list holds each open worker's free slots, most recently
//     freed last (reusing the warmest worker lets the others idle out).
//  4. queued is the length of the router's queue (jobQueue keeps it so),
//     and a caller takes a slot only while it is 0: no caller overtakes a
//     queued job.
//  5. A worker with a job budget (RecycleAfterJobs) is given at most that
//     many jobs: the take that spends its last job closes it, and the
//     taker tells the router, which recycles it.
//  6. A slot goes only to a job whose request frame fits the worker's own
//     frame limit.
type slotBoard struct {
	mu     sync.Mutex
	free   []*workerState
	queued int
}

// seat is a worker's entry on the board. Its fields are guarded by the
// board's mutex.
type seat struct {
	open     bool
	capacity int // its InFlight
	free     int
	busy     int
	handed   int
	budget   int   // jobs it may still be given; < 0: no limit
	limit    int64 // the largest request frame it accepts
}

func newSlotBoard() *slotBoard { return &slotBoard{} }

// open makes w's capacity slots available: all of them handed to the
// router, which places or publishes each. budget is how many jobs w may be
// given (< 0: no limit), limit the largest request frame it accepts.
func (b *slotBoard) open(w *workerState, capacity, budget int, limit int64) {
	b.mu.Lock()
	w.seat = seat{open: true, capacity: capacity, handed: capacity, budget: budget, limit: limit}
	b.mu.Unlock()
}

// handed returns how many of w's slots the router holds.
func (b *slotBoard) handed(w *workerState) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return w.seat.handed
}

// busy returns how many jobs run on w.
func (b *slotBoard) busy(w *workerState) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return w.seat.busy
}

// capacity reports whether w takes jobs, and how many more it could run.
func (b *slotBoard) capacity(w *workerState) (open bool, free int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return w.seat.open, w.seat.capacity - w.seat.busy
}

// fits reports whether a request frame of need bytes fits w.
func (b *slotBoard) fits(w *workerState, need int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return w.seat.limit >= need
}

// publish puts one of w's handed slots on the board.
func (b *slotBoard) publish(w *workerState) {
	b.mu.Lock()
	if s := &w.seat; s.open && s.handed > 0 {
		s.handed--
		s.free++
		b.free = append(b.free, w)
	}
	b.mu.Unlock()
}

// place gives one of w's handed slots to a job the router runs on it. due
// reports that the job spent w's budget: w is closed, and must be recycled.
// It reports false, changing nothing, when w has no handed slot.
func (b *slotBoard) place(w *workerState) (ok, due bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := &w.seat
	if !s.open || s.handed == 0 {
		return false, false
	}
	s.handed--
	s.busy++
	return true, b.spendLocked(w)
}

// take pops a free slot for a caller's job whose request frame is need
// bytes; nil when a job is queued or no free slot fits. due is as for
// place.
func (b *slotBoard) take(need int64) (w *workerState, due bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.queued > 0 {
		return nil, false
	}
	return b.popLocked(need)
}

// takeFor pops a free slot for the router's queued job of need bytes.
func (b *slotBoard) takeFor(need int64) (w *workerState, due bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.popLocked(need)
}

func (b *slotBoard) popLocked(need int64) (*workerState, bool) {
	for i := len(b.free) - 1; i >= 0; i-- {
		w := b.free[i]
		if w.seat.limit < need {
			continue
		}
		copy(b.free[i:], b.free[i+1:])
		b.free[len(b.free)-1] = nil
		b.free = b.free[:len(b.free)-1]
		w.seat.free--
		w.seat.busy++
		return w, b.spendLocked(w)
	}
	return nil, false
}

// spendLocked counts one job against w's budget and closes w when it is
// spent.
func (b *slotBoard) spendLocked(w *workerState) bool {
	s := &w.seat
	if s.budget < 0 {
		return false
	}
	s.budget--
	if s.budget > 0 {
		return false
	}
	b.closeLocked(w)
	return true
}

// finish ends a job on w. The slot goes back on the board when nothing is
// queued (true); when jobs are queued it is handed to the router, and the
// caller must tell the router (false); a closed worker's slot just ends
// (false, and the router is told too, for it may stop w once idle).
func (b *slotBoard) finish(w *workerState) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := &w.seat
	s.busy--
	switch {
	case !s.open:
		return false
	case b.queued == 0:
		s.free++
		b.free = append(b.free, w)
		return true
	default:
		s.handed++
		return false
	}
}

// abandon ends a job that was given w's slot but could not be sent (w's
// link takes no more jobs): w is closed.
func (b *slotBoard) abandon(w *workerState) {
	b.mu.Lock()
	b.closeLocked(w)
	w.seat.busy--
	b.mu.Unlock()
}

// close voids w's free and handed slots; w gets no new job.
func (b *slotBoard) close(w *workerState) {
	b.mu.Lock()
	b.closeLocked(w)
	b.mu.Unlock()
}

func (b *slotBoard) closeLocked(w *workerState) {
	s := &w.seat
	if !s.open {
		return
	}
	s.open, s.free, s.handed = false, 0, 0
	kept := b.free[:0]
	for _, f := range b.free {
		if f != w {
			kept = append(kept, f)
		}
	}
	clear(b.free[len(kept):])
	b.free = kept
}

// setQueued records the length of the router's queue.
func (b *slotBoard) setQueued(n int) {
	b.mu.Lock()
	b.queued = n
	b.mu.Unlock()
}

// check verifies the board's rules for the given workers (every worker the
// router knows) and returns the first one broken.
func (b *slotBoard) check(workers []*workerState) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	onBoard := map[*workerState]int{}
	for _, w := range b.free {
		onBoard[w]++
	}
	known := map[*workerState]bool{}
	for _, w := range workers {
		known[w] = true
		s := w.seat
		switch {
		case s.busy < 0 || s.free < 0 || s.handed < 0:
			return fmt.Errorf("worker %p: negative count %+v", w, s)
		case s.open && s.free+s.busy+s.handed != s.capacity:
			return fmt.Errorf("worker %p: free %d + busy %d + handed %d != capacity %d", w, s.free, s.busy, s.handed, s.capacity)
		case !s.open && (s.free != 0 || s.handed != 0):
			return fmt.Errorf("closed worker %p keeps slots: %+v", w, s)
		case onBoard[w] != s.free:
			return fmt.Errorf("worker %p: %d free slots on the board, %d counted", w, onBoard[w], s.free)
		case s.budget == 0 && s.open:
			return fmt.Errorf("worker %p: budget spent but still open", w)
		}
	}
	for w := range onBoard {
		if !known[w] {
			return fmt.Errorf("the board holds a slot of an unknown worker %p", w)
		}
	}
	if b.queued < 0 {
		return fmt.Errorf("queued %d < 0", b.queued)
	}
	return nil
}
