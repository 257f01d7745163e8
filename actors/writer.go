package actors

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/procpool/procpool/codec"
)

// aLongTimeAgo is a deadline in the past: setting it on a pipe makes a
// blocked read or write on it return at once (net/http uses the same).
var aLongTimeAgo = time.Unix(1, 0)

// errStalled reports a worker that stopped taking its input.
var errStalled = errors.New("the worker stopped reading its input")

// directLimit is the size up to which a frame's bytes are gathered in the
// writer's buffer; a larger payload is written from the caller's slice.
const directLimit = 64 << 10

// keepBuffer is the largest buffer the writer keeps between writes.
const keepBuffer = 1 << 20

// outgoing is one frame queued for the writer goroutine. Its fields are
// copies: the goroutine never reads router-owned state.
type outgoing struct {
	kind    codec.Kind
	id      uint64
	job     *Job // a request's job: its request is not sent once it has resolved
	timeout time.Duration
	pkind   codec.PayloadKind
	payload []byte
	span    codec.Span
	shared  bool // the payload is in the shared memory region already
	meta    requestMeta
	// A batch request's items (KindBatchRequest): the indexes into the
	// job's payloads, and their ids; spans, when not nil, places in the
	// shared memory region the payloads of the items whose span is not
	// zero (see itemBlock).
	items []int
	ids   []uint64
	spans []codec.Span
}

// requestMeta is what a request carries besides its payload, with
// codec.FeatureMeta: all zero for a worker without it.
type requestMeta struct {
	attempt                 uint32
	traceParent, traceState string
	credit                  uint32 // a streamed request's first window; a credit frame's grant
}

// fill sets m's fields from o.
func (o *outgoing) fill(m *codec.Message, jobType string) {
	*m = codec.Message{Kind: o.kind, ID: o.id, JobType: jobType, Timeout: o.timeout, PayloadKind: o.pkind, Payload: o.payload,
		Attempt: o.meta.attempt, TraceParent: o.meta.traceParent, TraceState: o.meta.traceState, Credit: o.meta.credit}
	switch {
	case o.kind == codec.KindShutdown:
		m.Grace = o.timeout
	case o.shared:
		m.Shared, m.Span, m.Payload = true, o.span, nil
	}
}

// writer sends frames down the worker's input pipe (fd 3). A caller on the
// fast path writes its own request when nobody else is writing (tryRequest);
// the writer goroutine writes everything else: what the router and the
// worker actor queue, the requests of callers that found the pipe busy, and
// the rest of an interrupted write. It coalesces what is queued into one
// write system call.
//
// Two rules bound every write:
//
//   - A worker that takes no byte of its input for the stall bound is
//     broken: the write fails, the link reports errStalled, and every later
//     write is dropped (the worker is killed for it).
//   - A caller never waits for another writer (it queues its frame instead)
//     and stops writing at once when interrupted (its context ended or its
//     job resolved another way): the bytes it did not write are copied and
//     the writer goroutine finishes the frame, so the stream stays whole and
//     the caller returns at its deadline.
type writer struct {
	pipe    *os.File
	jobType string
	stall   time.Duration
	// stalled reports errStalled, once. Other write errors mean the worker
	// closed its end or exited: its exit reports that.
	stalled func(error)
	// prepare readies a queued request before it is written: false skips it
	// (its job resolved while it waited); it may move the payload into the
	// shared memory region.
	prepare func(o *outgoing) bool
	// refused is told of a frame (or batch item) the codec would not write
	// (too large for the worker, or a malformed value).
	refused func(o *outgoing, id uint64, err error)

	mu  sync.Mutex    // held while encoding into buf or writing to the pipe
	enc *codec.Writer // encodes into buf, through writerSink
	buf []byte        // encoded bytes not yet written
	err error         // the first write error: later frames are dropped
	msg codec.Message // the message being encoded
	bat *codec.Batch  // encodes batch requests, made on first use

	imu         sync.Mutex
	deadline    time.Time // the pipe's write deadline, as last set
	caller      bool      // a caller is writing: it may be interrupted
	interrupted bool

	qmu   sync.Mutex
	queue []outgoing
	spare []outgoing
	kick  chan struct{}
	quit  chan struct{}
	once  sync.Once
}

func (w *writer) init(pipe *os.File, jobType string, maxFrame int, stall time.Duration) {
	w.pipe, w.jobType, w.stall = pipe, jobType, stall
	w.enc = codec.NewWriter((*writerSink)(w), maxFrame)
	w.kick = make(chan struct{}, 1)
	w.quit = make(chan struct{})
}

// setMaxFrame lowers the frames the writer sends to the worker's limit.
func (w *writer) setMaxFrame(n int64) {
	w.mu.Lock()
	w.enc.SetMaxFrame(int(n))
	w.mu.Unlock()
}

// put encodes m for the writer goroutine to send next (the hello).
func (w *writer) put(m *codec.Message) {
	w.mu.Lock()
	_ = w.enc.Write(m)
	w.mu.Unlock()
	w.wake()
}

// enqueue queues a frame for the writer goroutine. It never blocks.
func (w *writer) enqueue(o outgoing) {
	w.qmu.Lock()
	w.queue = append(w.queue, o)
	w.qmu.Unlock()
	w.wake()
}

func (w *writer) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// close stops the writer goroutine; frames still queued are dropped.
func (w *writer) close() { w.once.Do(func() { close(w.quit) }) }

// tryRequest writes a caller's request frame unless someone else is
// writing; it reports whether it took the pipe. The frame is then written,
// handed to the writer goroutine (the caller was interrupted), dropped (the
// pipe is broken), or refused with the codec's error.
func (w *writer) tryRequest(o *outgoing) (took bool, refused error) {
	if !w.mu.TryLock() {
		return false, nil
	}
	defer w.mu.Unlock()
	if w.err != nil {
		return true, nil
	}
	w.setCaller(true)
	o.fill(&w.msg, w.jobType)
	refused = w.enc.Write(&w.msg)
	w.msg.Payload = nil
	if refused == nil {
		w.flush()
	}
	w.setCaller(false)
	if len(w.buf) > 0 {
		w.wake() // interrupted: the goroutine writes the rest
	}
	return true, refused
}

// loop is the writer goroutine.
func (w *writer) loop() {
	for {
		select {
		case <-w.kick:
		case <-w.quit:
			return
		}
		w.mu.Lock()
		for {
			batch := w.take()
			for i := range batch {
				w.encode(&batch[i])
				batch[i] = outgoing{}
			}
			w.flush()
			w.putBack(batch)
			if w.err != nil || !w.queued() {
				break
			}
		}
		w.mu.Unlock()
	}
}

// encode encodes one queued frame into the buffer; mu is held.
func (w *writer) encode(o *outgoing) {
	switch o.kind {
	case codec.KindRequest, codec.KindBatchRequest:
		if w.prepare != nil && !w.prepare(o) {
			return
		}
	}
	if o.kind == codec.KindBatchRequest {
		w.encodeBatch(o)
		return
	}
	o.fill(&w.msg, w.jobType)
	err := w.enc.Write(&w.msg)
	w.msg.Payload = nil
	if err != nil && w.refused != nil {
		w.refused(o, o.id, err)
	}
}

// encodeBatch encodes a Map job's items as batch request frames (as many
// as the frame limit and codec.MaxBatch need); mu is held.
func (w *writer) encodeBatch(o *outgoing) {
	if w.bat == nil {
		w.bat = codec.NewBatch(w.enc, codec.KindBatchRequest)
	}
	b := w.bat
	b.Reset()
	payloads := o.job.batch.payloads
	for k, item := range o.items {
		w.msg = codec.Message{Kind: codec.KindRequest, ID: o.ids[k], JobType: w.jobType, Timeout: o.timeout,
			PayloadKind: o.pkind, Payload: payloads[item], Attempt: o.meta.attempt,
			TraceParent: o.meta.traceParent, TraceState: o.meta.traceState}
		if o.spans != nil && o.spans[k].Length > 0 {
			w.msg.Shared, w.msg.Span, w.msg.Payload = true, o.spans[k], nil
		}
		err := b.Add(&w.msg)
		if errors.Is(err, codec.ErrBatchFull) {
			if err = b.Flush(); err == nil {
				err = b.Add(&w.msg)
			}
		}
		if err != nil && w.refused != nil {
			w.refused(o, o.ids[k], err)
		}
	}
	if b.Len() > 0 {
		_ = b.Flush() // its errors are the sink's, which reports none
	}
	w.msg.Payload = nil
}

func (w *writer) take() []outgoing {
	w.qmu.Lock()
	defer w.qmu.Unlock()
	b := w.queue
	w.queue, w.spare = w.spare[:0], nil
	return b
}

func (w *writer) putBack(b []outgoing) {
	w.qmu.Lock()
	if w.spare == nil {
		w.spare = b[:0]
	}
	w.qmu.Unlock()
}

func (w *writer) queued() bool {
	w.qmu.Lock()
	defer w.qmu.Unlock()
	return len(w.queue) > 0
}

// writerSink is where the codec writes a frame's bytes: small pieces are
// gathered in the buffer, a large payload is written straight from its
// slice once what precedes it is out.
type writerSink writer

func (s *writerSink) Write(p []byte) (int, error) {
	w := (*writer)(s)
	switch {
	case w.err != nil: // broken: dropped
	case len(p) <= directLimit:
		w.buf = append(w.buf, p...)
	default:
		w.flush()
		if len(w.buf) > 0 { // interrupted before the payload: keep it all
			w.buf = append(w.buf, p...)
			break
		}
		if n := w.writeOut(p); n < len(p) && w.err == nil {
			w.buf = append(w.buf, p[n:]...)
		}
	}
	return len(p), nil
}

// flush writes the buffer; what an interrupted caller could not write stays
// in it, for the writer goroutine.
func (w *writer) flush() {
	if len(w.buf) == 0 || w.err != nil {
		w.buf = w.buf[:0]
		return
	}
	n := w.writeOut(w.buf)
	if w.err != nil {
		n = len(w.buf)
	}
	w.buf = w.buf[:copy(w.buf, w.buf[n:])]
	if len(w.buf) == 0 && cap(w.buf) > keepBuffer {
		w.buf = nil
	}
}

// writeOut writes p to the pipe and returns how many bytes it wrote: all of
// them, or fewer when the caller writing was interrupted or the pipe broke
// (w.err is then set). mu is held.
func (w *writer) writeOut(p []byte) int {
	written := 0
	now := time.Now()
	last := now // the write's start, then its last progress
	for written < len(p) {
		if !w.arm(last, now) {
			return written
		}
		n, err := w.pipe.Write(p[written:])
		written += n
		if n > 0 || err != nil {
			now = time.Now()
		}
		if n > 0 {
			last = now
		}
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			if w.wasInterrupted() {
				return written
			}
			if now.Sub(last) >= w.stall {
				w.err = fmt.Errorf("%w: it took no byte for %v", errStalled, w.stall)
				if w.stalled != nil {
					w.stalled(w.err)
				}
				return written
			}
		default:
			w.err = err
			return written
		}
	}
	return written
}

// arm makes sure the pipe's write deadline is set, at the latest to last
// plus the stall bound, re-arming it only when it is less than half a bound
// away (so that most writes set nothing); it reports false when the caller
// writing was interrupted.
func (w *writer) arm(last, now time.Time) bool {
	w.imu.Lock()
	defer w.imu.Unlock()
	if w.caller && w.interrupted {
		return false
	}
	want := last.Add(w.stall)
	if w.deadline.IsZero() || w.deadline.After(want) || w.deadline.Sub(now) < w.stall/2 {
		w.deadline = want
		_ = w.pipe.SetWriteDeadline(want)
	}
	return true
}

func (w *writer) setCaller(on bool) {
	w.imu.Lock()
	w.caller, w.interrupted = on, false
	w.imu.Unlock()
}

func (w *writer) wasInterrupted() bool {
	w.imu.Lock()
	defer w.imu.Unlock()
	return w.caller && w.interrupted
}

// interrupt stops a caller's write in progress, if any.
func (w *writer) interrupt() {
	w.imu.Lock()
	if w.caller && !w.interrupted {
		w.interrupted = true
		w.deadline = time.Time{} // the next writer arms it again
		_ = w.pipe.SetWriteDeadline(aLongTimeAgo)
	}
	w.imu.Unlock()
}
