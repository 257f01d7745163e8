package actors

import (
	"sync"
	"sync/atomic"
)

// batch is the items of a Map job: many payloads run as one job, which
// goes to one worker in one frame (a batch request, when the worker
// negotiated codec.FeatureBatch; else a request each) and holds one of its
// slots. Each item keeps the rules of a job of its own:
//
//   - its own id on the worker, its own answer, error and crash count;
//   - its outcome is delivered exactly once (give), to the Map that made it;
//   - the job resolves once every item is delivered; a job that resolves
//     otherwise (cancelled, timed out, its router stopped) delivers its
//     error to every item left (failRest);
//   - after its worker dies, each item still unanswered is retried,
//     quarantined or failed on its own (the router's settle); from then on
//     the job sends its items one at a time (one per dispatch, going back
//     to the queue for the next), so that an item that kills its worker
//     takes no innocent item with it again.
type batch struct {
	job      *Job
	payloads [][]byte
	largest  int       // the length of the largest payload
	sink     batchSink // the Map's

	mu        sync.Mutex
	done      []bool
	left      int      // items not delivered
	okToCount int      // items delivered a result, not yet counted (give)
	crashes   []uint8  // workers that died running each item
	attempts  []uint16 // dispatches of each item; router-owned, like sent

	// ids[k] is the id of item sent[k] on the worker of the current
	// dispatch; written by the dispatcher before the frame goes out, read
	// by the router (cancels); the dispatch's timer keeps copies.
	sent []int
	ids  []uint64
	// running counts the items of the current dispatch not yet answered:
	// the job's slot is freed when it reaches 0.
	running atomic.Int32
	// oneByOne: a worker died under the job; the router's goroutine sets
	// it, the dispatcher reads it.
	oneByOne atomic.Bool
	// block holds the current dispatch's payloads in the worker's shared
	// memory region, if they went there (see itemBlock).
	block atomic.Pointer[itemBlock]
}

// itemOutcome is one item's result or error.
type itemOutcome struct {
	item   int
	result []byte
	err    error
}

// batchSink is where a batch delivers its items' outcomes: one at a time,
// or those of a batch response at once; ended follows the delivery of the
// last item, once.
type batchSink interface {
	deliver(item int, result []byte, err error)
	deliverMany(outs []itemOutcome)
	ended()
}

// newBatch makes j a Map job of payloads.
func newBatch(j *Job, payloads [][]byte, sink batchSink) *batch {
	b := &batch{
		job: j, payloads: payloads, sink: sink,
		done: make([]bool, len(payloads)), left: len(payloads),
		crashes: make([]uint8, len(payloads)), attempts: make([]uint16, len(payloads)),
	}
	for _, p := range payloads {
		b.largest = max(b.largest, len(p))
	}
	return b
}

// pending returns the items not delivered yet.
func (b *batch) pending() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]int, 0, b.left)
	for i, d := range b.done {
		if !d {
			out = append(out, i)
		}
	}
	return out
}

// countEvery is how many of a Map job's results give counts at once.
const countEvery = 64

// give delivers item's outcome unless it was delivered already, and
// reports whether no item is left. It counts the outcome in the job type's
// statistics first: an error at once, results countEvery at a time (as
// if they had all come with the last), and whatever is left uncounted
// before the last item is delivered.
func (b *batch) give(item int, result []byte, err error) (allDone bool) {
	b.mu.Lock()
	first := !b.done[item]
	if first {
		b.done[item] = true
		b.left--
		if err == nil {
			b.okToCount++
		}
	}
	allDone = b.left == 0
	ok := 0
	if b.okToCount >= countEvery || allDone {
		ok, b.okToCount = b.okToCount, 0
	}
	b.mu.Unlock()
	if first {
		if g := b.job.gate; g != nil {
			if err != nil {
				g.count(b.job, err)
			}
			if ok > 0 {
				g.countSucceeded(b.job, ok)
			}
		}
		b.sink.deliver(item, result, err)
		if allDone {
			b.sink.ended()
		}
	}
	return allDone
}

// giveMany is give of each of outs, but errCallerDecides, under one lock
// and in one delivery. It keeps, in outs' array, only the outcomes
// delivered.
func (b *batch) giveMany(outs []itemOutcome) {
	b.mu.Lock()
	firsts := outs[:0]
	failed := false
	for _, o := range outs {
		if o.err == errCallerDecides || b.done[o.item] {
			continue
		}
		b.done[o.item] = true
		b.left--
		if o.err == nil {
			b.okToCount++
		} else {
			failed = true
		}
		firsts = append(firsts, o)
	}
	allDone := b.left == 0
	ok := 0
	if b.okToCount >= countEvery || allDone {
		ok, b.okToCount = b.okToCount, 0
	}
	b.mu.Unlock()
	if len(firsts) == 0 {
		return
	}
	if g := b.job.gate; g != nil {
		if failed {
			for _, o := range firsts {
				if o.err != nil {
					g.count(b.job, o.err)
				}
			}
		}
		if ok > 0 {
			g.countSucceeded(b.job, ok)
		}
	}
	b.sink.deliverMany(firsts)
	if allDone {
		b.sink.ended()
	}
}

// failRest delivers err to every item not delivered yet.
func (b *batch) failRest(err error) {
	for _, item := range b.pending() {
		b.give(item, nil, err)
	}
}

// allDone reports whether every item was delivered.
func (b *batch) allDone() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.left == 0
}

// failUnfit fails with ErrPayloadTooLarge the items not delivered yet
// whose requests are larger than limit, the largest frame any worker of
// jobType takes, and keeps the largest of the others' lengths. It reports
// whether every item is delivered now. Only the router calls it, on a job
// in its queue.
func (b *batch) failUnfit(jobType string, limit int64) (allDone bool) {
	largest := 0
	for _, item := range b.pending() {
		n := len(b.payloads[item])
		if requestFits(jobType, n, limit) {
			largest = max(largest, n)
			continue
		}
		b.give(item, nil, tooLargeErr(jobType, n, limit))
	}
	b.largest = largest
	return b.allDone()
}

// payloadLen is the length of the largest payload a job sends: of a Map
// job, of any of its items (Map refuses the items too large to send
// before it makes the job).
func (j *Job) payloadLen() int {
	if j.batch != nil {
		return j.batch.largest
	}
	return len(j.Payload)
}
