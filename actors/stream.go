package actors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/sharedmem"
)

// streamWindow is how many partial results a streamed job may have sent
// and its caller not yet taken: the host's buffer for them, and the credit
// the worker starts with.
const streamWindow = 16

// stream holds a streamed job's partial results between the link that
// reads them and the caller who takes them. Its rule is the credit: the
// worker may send a chunk only while it has credit, the request gives it
// streamWindow, and the caller's taking a chunk grants one more (in runs of
// half the window), so the buffer never holds more than streamWindow
// chunks and never grows with what the worker sends: a worker whose caller
// does not keep up waits in its Send. A chunk beyond the credit breaks the
// protocol.
type stream struct {
	ch chan []byte // capacity streamWindow

	mu       sync.Mutex
	closed   bool
	received uint32 // chunks the worker sent on the current dispatch
	granted  uint32 // credit given on it, first window included
	owed     uint32 // chunks taken and not yet granted again
}

// StreamJob is an accepted job whose handler sends partial results before
// its final answer (worker.Send in the Go SDK). Its Job gives the final
// answer.
type StreamJob struct {
	*Job
}

// Stream runs one job whose handler sends partial results and returns at
// once; take them with Chunks, then the final answer with Wait. A worker
// that did not negotiate streamed results (codec.FeatureStream) runs it as
// an ordinary job: no chunk comes. A streamed job is never run again on
// another worker: its chunks were delivered already.
func (h *Router) Stream(ctx context.Context, kind PayloadKind, payload []byte) (*StreamJob, error) {
	if ctx.Err() != nil {
		return nil, cancelledBy(ctx)
	}
	if err := h.checkSize(len(payload)); err != nil {
		return nil, err
	}
	if err := checkValue(kind, payload); err != nil {
		return nil, err
	}
	j := NewJob(kind, payload)
	j.stream = &stream{ch: make(chan []byte, streamWindow)}
	j.noRetry = true
	if _, err := h.enter(ctx, j, true); err != nil {
		return nil, err
	}
	if w := h.takeSlot(j); w != nil {
		var stop func() bool
		if ctx.Done() != nil {
			stop = context.AfterFunc(ctx, w.link.interrupt)
		}
		h.startOn(j, w, direct)
		if stop != nil {
			stop()
		}
	}
	j.cancelWith(ctx)
	return &StreamJob{Job: j}, nil
}

// Chunks yields the job's partial results in the order the worker sent
// them, as they arrive; each is the caller's to keep. It ends once the job
// has resolved and every chunk has been yielded; Wait or Result then give
// the final answer. Ending the loop early cancels the job.
func (s *StreamJob) Chunks() iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		st := s.stream
		for c := range st.ch {
			s.took()
			if !yield(c) {
				s.Cancel(errors.New("the caller stopped taking the stream's chunks"))
				return
			}
		}
	}
}

// took counts a chunk taken and gives the worker credit for half a
// window once that many were taken.
func (s *StreamJob) took() {
	st := s.stream
	st.mu.Lock()
	st.owed++
	n := st.owed
	if n < streamWindow/2 || st.closed {
		st.mu.Unlock()
		return
	}
	st.owed = 0
	st.granted += n
	st.mu.Unlock()
	if l := s.link.Load(); l != nil {
		if id := s.id.Load(); l.table.holds(id, s.Job) {
			l.w.enqueue(outgoing{kind: codec.KindCredit, id: id, meta: requestMeta{credit: n}})
		}
	}
}

// dispatched resets the credit for a new dispatch (there is only one: a
// streamed job is not retried, but the count starts with the request).
func (st *stream) dispatched() {
	st.mu.Lock()
	st.received, st.granted, st.owed = 0, streamWindow, 0
	st.mu.Unlock()
}

// push adds a chunk; false if it is beyond the credit. Chunks for a job
// that resolved are dropped.
func (st *stream) push(c []byte) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.received >= st.granted {
		return false
	}
	st.received++
	if !st.closed {
		st.ch <- c // never blocks: the credit bounds the buffer
	}
	return true
}

// close ends the chunks: the job has resolved.
func (st *stream) close() {
	st.mu.Lock()
	if !st.closed {
		st.closed = true
		close(st.ch)
	}
	st.mu.Unlock()
}

// chunk hands a partial result to its job's stream. A chunk the worker was
// not asked for, or beyond its credit, breaks the protocol.
func (l *link) chunk(m *codec.Message) error {
	if !l.features.Has(codec.FeatureStream) {
		return fmt.Errorf("%w: a chunk from a worker that did not negotiate streams", errProtocol)
	}
	var c []byte
	if m.Shared {
		b, err := l.sharedResult(m)
		switch {
		case errors.Is(err, sharedmem.ErrClosed):
			return nil // the region went with the link: so does the job
		case err != nil:
			return err
		}
		c = bytes.Clone(b)
		l.shm.Consumed()
	} else {
		c = bytes.Clone(m.Payload)
	}
	e, ok := l.table.lookup(m.ID)
	switch {
	case !ok:
		return fmt.Errorf("%w: a chunk for job %d, which is not running", errProtocol, m.ID)
	case e.j.stream == nil:
		return fmt.Errorf("%w: a chunk for job %d, which is not streamed", errProtocol, m.ID)
	case !e.j.stream.push(c):
		return fmt.Errorf("%w: a chunk for job %d beyond the credit it was given", errProtocol, m.ID)
	}
	if l.pingSeq.Load() != 0 {
		l.answered.Store(time.Now().UnixNano()) // a sign of life
	}
	if m.PayloadKind != e.j.Kind {
		e.j.resolve(nil, fmt.Errorf("%w: a %s stream sent a %s chunk", ErrBadResult, e.j.Kind, m.PayloadKind))
	}
	return nil
}
