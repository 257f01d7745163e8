package actors

import (
	"context"
	"iter"
	"sync"
	"sync/atomic"
	"time"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/sharedmem"
)

// MapResult is one item's outcome in MapUnordered.
type MapResult struct {
	Index   int    // the item's place among the inputs, from 0
	Payload []byte // its result, the caller's to keep
	Err     error  // or its error
}

// Batch sizes: a Map sends at most maxBatchItems items, and about
// batchBytes of payload, per batch; an item of sharedmem.MinPayload bytes
// or more travels alone (through the shared memory region). A batch's
// round trip costs about a hundred microseconds of CPU between host and
// worker (the wake-ups of the goroutines and threads on both sides, and
// the system calls), whatever its size: batches of small items are made
// as large as a frame may be, so that this cost is spread over a thousand
// items rather than a few hundred.
const (
	maxBatchItems = codec.MaxBatch
	batchBytes    = 1 << 20
)

// spreadPerWorker is how many batches per worker the items at hand are
// spread over: one running and one waiting behind it keep a worker busy.
// Spread over every slot instead, a pool of InFlight 8 would cut them into
// batches four times smaller, each paying the round trip's cost.
const spreadPerWorker = 2

// fillWait bounds how long a Map waits for its inputs to fill a batch
// while its batches keep the workers busy (see produce): a batch that
// does not end (a hung worker's, until JobTimeout or the heartbeat kills
// it) holds no input back longer than this.
const fillWait = time.Millisecond

// minReady is the size of an ordered Map's result ring at first: it grows
// to the window only for a Map that keeps that many items open.
const minReady = 64

// Map runs a job for each payload of inputs and yields their results, or
// their errors, in input order. Items travel to the workers in batches
// (one frame carries many requests, one frame many answers, with workers
// that negotiated batches), sized by the payloads: small items in large
// batches, large items one per frame; a batch takes only the items
// already at hand, and batches spread over the workers. While every
// worker has two batches open, Map waits for more inputs before it sends
// a batch smaller than a full one, but never past the end of a batch nor
// more than a millisecond.
//
// Every item keeps a job's guarantees: it resolves exactly once, with a
// result or a typed error of its own; its worker's death retries,
// quarantines or fails it on its own under the job type's policy. Memory
// stays bounded however many inputs there are: at most a few batches per
// worker are in flight, and no input is read ahead of them. When ctx ends,
// no more inputs are read; the items in flight end as cancelled, and so
// does the sequence. Ending the loop early cancels the items in flight.
// JobTimeout applies to each batch as a whole (batches are kept short
// when it is set) and, in the worker, to each item.
//
// The payloads are not copied: do not modify one until its result is
// yielded. An iterator that blocks (one over a channel, say) is left
// blocked if the loop ends early; the goroutine reading it ends once it
// yields again.
func (h *Router) Map(ctx context.Context, kind PayloadKind, inputs iter.Seq[[]byte]) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		m := h.startMap(ctx, kind, inputs, true)
		defer m.stop()
		for {
			r, ok := m.next()
			if !ok || !yield(r.Payload, r.Err) {
				return
			}
		}
	}
}

// MapUnordered is Map that yields each result as soon as it arrives, with
// the index of its input.
func (h *Router) MapUnordered(ctx context.Context, kind PayloadKind, inputs iter.Seq[[]byte]) iter.Seq[MapResult] {
	return func(yield func(MapResult) bool) {
		m := h.startMap(ctx, kind, inputs, false)
		defer m.stop()
		for {
			r, ok := m.next()
			if !ok || !yield(r) {
				return
			}
		}
	}
}

// mapRun is one Map: a producer goroutine reads the inputs and submits
// them in batches; results come back through the batches' deliver, and
// the consumer (the caller's loop) takes them in order.
type mapRun struct {
	h       *Router
	kind    PayloadKind
	ctx     context.Context
	cancel  context.CancelFunc
	ordered bool
	window  int // items pulled and not yet taken, at most

	mu sync.Mutex
	// ready holds, ordered, the results delivered and not yet taken:
	// item i's at i % len(ready), which never holds two at once, since
	// submit grows it (see grow) to more than the items pulled and not
	// taken; at most window+maxBatchItems are.
	ready    []mapSlot
	arrived  []MapResult   // delivered and not yet taken (unordered)
	taken    int           // items taken by the consumer (ordered: the next index)
	pulled   int           // items read from the inputs
	finished bool          // the producer has read its last input
	waiting  bool          // the consumer waits on wake
	full     bool          // the producer waits on room
	wake     chan struct{} // what the consumer waits for arrived, or the producer finished
	room     chan struct{} // the consumer took a result while the producer waited
	done     chan struct{} // the producer goroutine ended

	// open counts the Map jobs submitted whose items are not all
	// delivered; ended is notified as each ends (see produce).
	open  atomic.Int32
	ended chan struct{}
}

// mapSlot is a place in mapRun.ready.
type mapSlot struct {
	r    MapResult
	full bool
}

func (h *Router) startMap(ctx context.Context, kind PayloadKind, inputs iter.Seq[[]byte], ordered bool) *mapRun {
	spec := h.spec()
	m := &mapRun{
		h: h, kind: kind, ordered: ordered,
		window: max(2, 2*spec.MaxWorkers*spec.InFlight) * maxBatchItems,
		wake:   make(chan struct{}, 1), room: make(chan struct{}, 1), done: make(chan struct{}),
		ended: make(chan struct{}, 1),
	}
	if ordered {
		m.ready = make([]mapSlot, minReady)
	}
	m.ctx, m.cancel = context.WithCancel(ctx)
	go m.produce(inputs)
	return m
}

// stop ends the Map: nothing more is read or submitted, and what is in
// flight is cancelled.
func (m *mapRun) stop() {
	m.cancel()
	<-m.done
}

func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// put records item index's outcome, and wakes the consumer if it waits
// for it.
func (m *mapRun) put(index int, result []byte, err error) {
	m.mu.Lock()
	wake := m.store(index, result, err)
	m.mu.Unlock()
	if wake {
		notify(m.wake)
	}
}

// putMany is put of the outcomes of items of s's batch, under one lock.
func (m *mapRun) putMany(s *mapSink, outs []itemOutcome) {
	m.mu.Lock()
	wake := false
	for _, o := range outs {
		wake = m.store(s.at(o.item), o.result, o.err) || wake
	}
	m.mu.Unlock()
	if wake {
		notify(m.wake)
	}
}

// store records item index's outcome and reports whether the consumer is
// to be woken, as it waits for it; m.mu is held.
func (m *mapRun) store(index int, result []byte, err error) (wake bool) {
	r := MapResult{Index: index, Payload: result, Err: err}
	if m.ordered {
		m.ready[index%len(m.ready)] = mapSlot{r: r, full: true}
	} else {
		m.arrived = append(m.arrived, r)
	}
	wake = m.waiting && (!m.ordered || index == m.taken)
	if wake {
		m.waiting = false
	}
	return wake
}

// mapSink delivers the outcomes of one Map job's items: item k of its
// batch is input base+k, or index[k] when some inputs were refused before
// the batch was made.
type mapSink struct {
	m     *mapRun
	base  int
	index []int
}

func (s *mapSink) at(item int) int {
	if s.index == nil {
		return s.base + item
	}
	return s.index[item]
}

func (s *mapSink) deliver(item int, result []byte, err error) { s.m.put(s.at(item), result, err) }
func (s *mapSink) deliverMany(outs []itemOutcome)             { s.m.putMany(s, outs) }

// ended: the Map job is no longer open.
func (s *mapSink) ended() {
	s.m.open.Add(-1)
	notify(s.m.ended)
}

// grow doubles the ready ring, if need be, until it has room for open
// items from m.taken on, and moves each item pulled and not taken to its
// index modulo the new length; m.mu is held.
func (m *mapRun) grow(open int) {
	n := len(m.ready)
	if open <= n {
		return
	}
	for n < open {
		n *= 2
	}
	ready := make([]mapSlot, n)
	for i := m.taken; i < m.pulled; i++ {
		ready[i%n] = m.ready[i%len(m.ready)]
	}
	m.ready = ready
}

// next waits for the next result to take; false once every item read has
// been taken and nothing more will be read.
func (m *mapRun) next() (MapResult, bool) {
	for {
		m.mu.Lock()
		var r MapResult
		ok := false
		if m.ordered {
			if s := &m.ready[m.taken%len(m.ready)]; s.full {
				r, ok = s.r, true
				*s = mapSlot{}
			}
		} else if n := len(m.arrived); n > 0 {
			r, ok = m.arrived[0], true
			m.arrived[0] = MapResult{}
			m.arrived = m.arrived[1:]
		}
		if ok {
			m.taken++
			room := m.full && m.pulled-m.taken < m.window
			if room {
				m.full = false
			}
			m.mu.Unlock()
			if room {
				notify(m.room)
			}
			return r, true
		}
		end := m.finished && m.taken == m.pulled
		m.waiting = !end
		m.mu.Unlock()
		if end {
			return MapResult{}, false
		}
		<-m.wake
	}
}

// produce reads the inputs and submits them in batches, keeping at most
// window items unconsumed.
func (m *mapRun) produce(inputs iter.Seq[[]byte]) {
	defer close(m.done)
	defer func() {
		m.mu.Lock()
		m.finished = true
		m.mu.Unlock()
		notify(m.wake)
	}()
	in := newFeed(2 * maxBatchItems)
	go func() {
		defer in.close()
		for p := range inputs {
			if !in.put(m.ctx, p) {
				return
			}
		}
	}()
	spec := m.h.spec()
	spread := batchSpread(spec.MaxWorkers, spec.InFlight)
	hold := time.NewTimer(fillWait) // reset for each wait
	hold.Stop()
	var batch [][]byte
	for {
		if !m.waitRoom() {
			return
		}
		first, atHand := in.take(m.ctx, 1, true)
		if first == nil {
			return
		}
		p := first[0]
		size := m.batchSize(len(p), atHand, spread, spec.JobTimeout)
		full := m.batchSize(len(p), in.limit-1, spread, spec.JobTimeout) // with the feed full
		if size < full && int(m.open.Load()) >= spread {
			// Every worker has a batch behind the one it runs: rather
			// than send a smaller batch now, wait for the inputs to fill
			// the feed, for a batch to end, or fillWait.
			hold.Reset(fillWait)
			in.fill(m.ctx, m.ended, hold.C)
			hold.Stop()
			atHand = in.len()
			size = m.batchSize(len(p), atHand, spread, spec.JobTimeout)
		}
		batch = append(batch[:0], p)
		if size > 1 {
			more, _ := in.take(m.ctx, size-1, false)
			batch = append(batch, more...)
		}
		m.submit(batch)
	}
}

// waitRoom waits until fewer than window items are unconsumed.
func (m *mapRun) waitRoom() bool {
	for {
		m.mu.Lock()
		open := m.pulled - m.taken
		m.full = open >= m.window
		m.mu.Unlock()
		if open < m.window {
			return true
		}
		select {
		case <-m.room:
		case <-m.ctx.Done():
			return false
		}
	}
}

// batchSpread is how many batches the items at hand are spread over, on
// a pool of workers with inFlight slots each: spreadPerWorker per worker,
// or every slot when there are fewer.
func batchSpread(workers, inFlight int) int {
	return max(1, workers*min(inFlight, spreadPerWorker))
}

// batchSize chooses how many items the next batch takes, given the first
// one's size, how many more are at hand, and how many slots the pool has.
func (m *mapRun) batchSize(first, atHand, spread int, timeout time.Duration) int {
	if first >= sharedmem.MinPayload {
		return 1
	}
	n := min(maxBatchItems, max(1, batchBytes/max(first, 1)))
	// Spread what is at hand over spreadPerWorker batches per worker,
	// rather than fill one.
	n = min(n, max(1, (atHand+1+spread-1)/spread))
	if timeout > 0 {
		// Keep a batch well within JobTimeout: its items share the budget.
		if per := m.h.gate.counters.itemRun.Snapshot().Quantile(0.5); per > 0 {
			n = min(n, max(1, int(timeout/4/per)))
		}
	}
	return n
}

// submit sends payloads as one Map job, after checking each.
func (m *mapRun) submit(payloads [][]byte) {
	m.mu.Lock()
	if m.ordered {
		m.grow(m.pulled + len(payloads) - m.taken)
	}
	base := m.pulled
	m.pulled += len(payloads)
	m.mu.Unlock()
	// Refuse, one by one, the items that cannot be sent at all.
	valid := make([][]byte, 0, len(payloads))
	var index []int // valid's inputs, once one is refused
	for i, p := range payloads {
		err := m.h.checkSize(len(p))
		if err == nil {
			err = checkValue(m.kind, p)
		}
		if err != nil {
			if index == nil {
				index = make([]int, len(valid), len(payloads))
				for k := range index {
					index[k] = base + k
				}
			}
			m.put(base+i, nil, err)
			continue
		}
		valid = append(valid, p)
		if index != nil {
			index = append(index, base+i)
		}
	}
	if len(valid) == 0 {
		return
	}
	j := &Job{Kind: m.kind, done: make(chan struct{})}
	m.open.Add(1)
	j.batch = newBatch(j, valid, &mapSink{m: m, base: base, index: index})
	if _, err := m.h.enter(m.ctx, j, true); err != nil {
		j.batch.failRest(err)
		return
	}
	if w := m.h.takeSlot(j); w != nil {
		m.h.startOn(j, w, viaWriter)
	}
	j.cancelWith(m.ctx)
}
