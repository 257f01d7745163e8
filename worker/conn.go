package worker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/procpool/procpool/codec"
)

// Causes of a job's cancellation, reported in the message of its response.
var (
	errCancelRequested = errors.New("cancelled by the host")
	errHostGone        = errors.New("the host closed the connection")
	errGraceExpired    = errors.New("the shutdown grace period expired")
	errPanicStop       = errors.New("the worker is stopping after a handler panic")
	errProtocolStop    = errors.New("the worker is stopping after a protocol error")
	errGoexit          = errors.New("handler called runtime.Goexit")
)

// maxErrMessage bounds the error message of a response.
const maxErrMessage = 16 << 10

// job is one request, from its arrival to the write of its response. Pongs
// and the responses the reader sends itself use a job too, with only the
// message fields set. Jobs are pooled.
type job struct {
	id      uint64
	jobType string
	timeout time.Duration
	h       *handler
	payload []byte          // the request's payload, valid until the response is written
	in      *[]byte         // pooled buffer holding payload, if any
	frame   *frameRef       // the batch frame holding payload, if any
	ctx     context.Context // jc, for the handler
	jc      *jobContext

	// The message written for the job.
	kind   codec.Kind
	code   string
	msg    string
	pk     codec.PayloadKind
	result []byte
	enc    *valueEncoder // pooled buffer holding result, if any
}

var jobPool = sync.Pool{New: func() any { return new(job) }}

// releaseJob returns j and its buffers to their pools, once its message is
// written or dropped.
func releaseJob(j *job) {
	if j.in != nil {
		putPayload(j.in)
	}
	if j.frame != nil {
		j.frame.release()
	}
	if j.enc != nil {
		putEncoder(j.enc)
	}
	*j = job{}
	jobPool.Put(j)
}

// conn is the state of one ServeConn call.
type conn struct {
	handlers map[string]*handler
	// The last handler the reader looked up, and its job type.
	lastType    string
	lastHandler *handler
	logger      *log.Logger
	drain       time.Duration
	src         io.Reader
	rd          *codec.Reader
	out         outbox

	// mapShared maps the shared memory region the host announces in its
	// hello; nil when the streams come without one (ServeConn).
	mapShared func(size uint64) (*region, error)
	shm       *region // the mapped region, if any

	ctx    context.Context // parent of every job's context
	cancel context.CancelCauseFunc

	features     codec.Features // negotiated in the handshake
	batchWorkers int            // items of one batch run at once

	mu       sync.Mutex
	jobs     map[uint64]*job // running jobs, by id
	running  int             // jobs whose response is not yet queued
	refusing bool            // new requests are answered shutting_down
	idle     chan struct{}   // closed when running drops to 0
	panicErr *PanicError     // the first panic
	panicky  atomic.Bool     // a handler panicked: start no more jobs

	stopOnce    sync.Once
	stopping    atomic.Bool // the reader ignores what it reads from now on
	interrupted bool        // stopReading managed to interrupt src

	work chan task     // idle runners receive jobs from it
	quit chan struct{} // closed at the end: idle runners exit

	readDone  chan error         // the reader's end: io.EOF, an error, or nil when stopped
	big       *[]byte            // the pooled buffer of the frame being read, if large
	shutdownC chan time.Duration // the grace of the shutdown message
	panicked  chan struct{}      // closed on the first panic
}

func newConn(s *Server, r io.Reader, w io.Writer, mapShared func(uint64) (*region, error)) *conn {
	c := &conn{
		mapShared:    mapShared,
		logger:       s.logger(),
		drain:        s.drainTimeout(),
		batchWorkers: s.batchConcurrency(),
		src:          r,
		rd:           codec.NewReader(bufio.NewReaderSize(r, readBufferSize), s.MaxFrame),
		jobs:         make(map[uint64]*job),
		work:         make(chan task),
		quit:         make(chan struct{}),
		readDone:     make(chan error, 1),
		shutdownC:    make(chan time.Duration, 1),
		panicked:     make(chan struct{}),
	}
	s.mu.Lock()
	c.handlers = make(map[string]*handler, len(s.handlers))
	for name, h := range s.handlers {
		c.handlers[name] = h
	}
	s.mu.Unlock()
	c.rd.SetAllocAbove(batchFrameOwned, func(n int) []byte {
		c.big = getPayload(n) // only the reading goroutine calls this
		return *c.big
	})
	c.out.init(w, c.logger)
	return c
}

// handshake waits for the host's hello and answers ready.
func (c *conn) handshake() error {
	var m codec.Message
	if err := c.rd.Read(&m); err != nil {
		if errors.Is(err, io.EOF) {
			return err
		}
		return fmt.Errorf("worker: reading hello: %w", err)
	}
	if m.Kind != codec.KindHello {
		return fmt.Errorf("worker: the host sent %s before hello", m.Kind)
	}
	ready := codec.Message{
		Kind:     codec.KindReady,
		Version:  codec.Version,
		MaxFrame: uint32(min(c.rd.MaxFrame(), math.MaxUint32)),
		PID:      os.Getpid(),
	}
	if m.Version != codec.Version {
		_ = c.out.writeNow(&ready) // tells the host which version we speak
		return fmt.Errorf("worker: the host speaks protocol version %d, this worker %d", m.Version, codec.Version)
	}
	if m.SharedSize > 0 && c.mapShared != nil {
		if shm, err := c.mapShared(m.SharedSize); err != nil {
			c.logger.Printf("worker: not using the shared memory region: %v", err)
		} else {
			c.shm, c.out.shm = shm, shm
			ready.SharedSize = m.SharedSize
		}
	}
	for name := range c.handlers {
		ready.JobTypes = append(ready.JobTypes, name)
	}
	slices.Sort(ready.JobTypes)
	c.features = m.Features & codec.AllFeatures // every feature this SDK knows
	ready.Features = c.features
	c.out.cw.SetMaxFrame(int(m.MaxFrame))
	if c.features.Has(codec.FeatureBatch) {
		c.out.rb = codec.NewBatch(c.out.cw, codec.KindBatchResponse)
	}
	if err := c.out.writeNow(&ready); err != nil {
		if isHostGone(err) {
			return io.EOF
		}
		return fmt.Errorf("worker: writing ready: %w", err)
	}
	return nil
}

// serve runs the reader and waits for the end of the conversation.
func (c *conn) serve(parent context.Context) error {
	c.ctx, c.cancel = context.WithCancelCause(parent)
	go c.readLoop()
	readDone := c.readDone
	var (
		graceC <-chan time.Time
		idleC  <-chan struct{}
	)
	var graceTimer *time.Timer
	defer func() {
		if graceTimer != nil {
			graceTimer.Stop()
		}
	}()
	startGrace := func(grace time.Duration) {
		idleC = c.idleChan()
		graceTimer = time.NewTimer(grace)
		graceC = graceTimer.C
	}
	for {
		select {
		case err := <-readDone:
			readDone = nil
			switch {
			case err == nil:
				// Stopped by a panic, reported on c.panicked.
			case errors.Is(err, io.EOF):
				if graceC == nil {
					select {
					case grace := <-c.shutdownC: // read just before the end
						startGrace(grace)
					default:
						return c.finish(errHostGone, nil, false)
					}
				}
				// After a shutdown, the end of the stream does not cut the
				// grace short: the host may close fd 3 once it has sent
				// shutdown, and the running jobs still finish.
			default:
				return c.finish(errProtocolStop, err, false)
			}
		case <-c.panicked:
			// Let the other jobs finish normally for a while: the panic
			// was not theirs.
			c.waitIdle(c.drain)
			return c.finish(errPanicStop, nil, readDone != nil)
		case grace := <-c.shutdownC:
			startGrace(grace)
		case <-idleC:
			return c.finish(nil, nil, readDone != nil)
		case <-graceC:
			return c.finish(errGraceExpired, nil, readDone != nil)
		case err := <-c.out.failed:
			if isHostGone(err) {
				err = nil
			} else {
				err = fmt.Errorf("worker: writing to the host: %w", err)
			}
			return c.finish(errHostGone, err, readDone != nil)
		case <-parent.Done():
			return c.finish(context.Cause(parent), parent.Err(), readDone != nil)
		}
	}
}

// finish ends the conversation: no job starts any more, reading stops, the
// running jobs are cancelled with cause (if not nil) and waited for, and the
// queued responses are written. It returns the first panic if any, result
// otherwise.
func (c *conn) finish(cause, result error, readerLive bool) error {
	c.mu.Lock()
	c.refusing = true
	c.mu.Unlock()
	interrupted := c.stopReading()
	if cause != nil {
		c.cancel(cause)
		if !c.waitIdle(c.drain) {
			c.mu.Lock()
			n := c.running
			c.mu.Unlock()
			c.logger.Printf("worker: %d job(s) still running %v after cancellation (%v); abandoning them", n, c.drain, cause)
		}
	}
	c.out.close()
	close(c.quit)
	if readerLive && interrupted {
		t := time.NewTimer(c.drain)
		select {
		case <-c.readDone:
		case <-t.C:
		}
		t.Stop()
	}
	c.cancel(context.Canceled)
	c.mu.Lock()
	p, idle := c.panicErr, c.running == 0
	c.mu.Unlock()
	if c.shm != nil && idle {
		_ = c.shm.Close() // an abandoned job may still read its payload: then keep it
	}
	if p != nil {
		return p
	}
	return result
}

// stopReading makes the reader ignore whatever it reads from now on and
// tries to interrupt a read in progress. It reports whether it could.
func (c *conn) stopReading() bool {
	c.stopOnce.Do(func() {
		c.stopping.Store(true)
		c.interrupted = interrupt(c.src)
	})
	return c.interrupted
}

// interrupt makes a blocked Read on r return, if r allows it.
func interrupt(r io.Reader) bool {
	if d, ok := r.(interface{ SetReadDeadline(time.Time) error }); ok {
		if d.SetReadDeadline(time.Unix(1, 0)) == nil {
			return true
		}
	}
	if cl, ok := r.(io.Closer); ok {
		if _, isFile := r.(*os.File); !isFile { // closing a blocking file does not interrupt a read
			return cl.Close() == nil
		}
	}
	return false
}

var closedChan = func() chan struct{} { ch := make(chan struct{}); close(ch); return ch }()

// idleChan returns a channel closed once no job is running.
func (c *conn) idleChan() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running == 0 {
		return closedChan
	}
	if c.idle == nil {
		c.idle = make(chan struct{})
	}
	return c.idle
}

// waitIdle waits up to d for every running job to queue its response.
func (c *conn) waitIdle(d time.Duration) bool {
	ch := c.idleChan()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

// readLoop reads the host's messages until the stream ends, fails, or
// reading is stopped, and reports why on c.readDone.
func (c *conn) readLoop() {
	var m codec.Message
	for {
		err := c.rd.Read(&m)
		if c.stopping.Load() {
			c.readDone <- nil
			return
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				err = fmt.Errorf("worker: reading from the host: %w", err)
			}
			c.readDone <- err
			return
		}
		if err := c.dispatch(&m); err != nil {
			c.readDone <- err
			return
		}
	}
}

func (c *conn) dispatch(m *codec.Message) error {
	switch m.Kind {
	case codec.KindRequest:
		return c.startJob(m)
	case codec.KindBatchRequest:
		if !c.features.Has(codec.FeatureBatch) {
			return errors.New("worker: the host sent a batch request, but the handshake did not negotiate batches")
		}
		return c.startBatch(m)
	case codec.KindCredit:
		if !c.features.Has(codec.FeatureStream) {
			return errors.New("worker: the host sent a credit, but the handshake did not negotiate streams")
		}
		var jc *jobContext // never reused, unlike the job: safe after the job ends
		c.mu.Lock()
		if j := c.jobs[m.ID]; j != nil { // unknown or answered: ignore
			jc = j.jc
		}
		c.mu.Unlock()
		if jc != nil {
			jc.grant(m.Credit)
		}
	case codec.KindCancel:
		c.mu.Lock()
		if j := c.jobs[m.ID]; j != nil {
			j.jc.end(errCancelRequested)
		}
		c.mu.Unlock()
	case codec.KindPing:
		c.reply(codec.KindPong, m.ID, "", "")
	case codec.KindShutdown:
		c.mu.Lock()
		already := c.refusing
		c.refusing = true
		c.mu.Unlock()
		if !already {
			c.shutdownC <- m.Grace
		}
	default:
		return fmt.Errorf("worker: unexpected %s message from the host", m.Kind)
	}
	return nil
}

// reply queues a message that is not a job's result.
func (c *conn) reply(kind codec.Kind, id uint64, code, msg string) {
	j := jobPool.Get().(*job)
	j.kind, j.id, j.code, j.msg = kind, id, code, msg
	c.out.send(j)
}

// startJob starts the job m requests, or answers it at once.
func (c *conn) startJob(m *codec.Message) error {
	j, err := c.accept(m)
	if j != nil {
		c.launch(task{j: j})
	}
	return err
}

// accept registers the job m requests and returns it, with its payload
// its own, ready to run; or answers it at once (unknown job type, shutting
// down) and returns nil; or returns a protocol error.
func (c *conn) accept(m *codec.Message) (*job, error) {
	shared, err := c.sharedPayload(m)
	if err != nil {
		return nil, err
	}
	h := c.handler(m.JobType)
	c.mu.Lock()
	j, ref, err := c.register(m, h, nil)
	c.mu.Unlock()
	if j == nil {
		c.refuse(ref)
		return nil, err
	}
	c.ownPayload(j, m, shared, nil, false)
	return j, nil
}

// sharedPayload returns the payload of a request that has it in the
// shared memory region, or nil for one that has not, or a protocol error.
func (c *conn) sharedPayload(m *codec.Message) ([]byte, error) {
	if !m.Shared {
		return nil, nil
	}
	if c.shm == nil {
		return nil, fmt.Errorf("worker: request %d has its payload in shared memory, which the handshake did not set up", m.ID)
	}
	shared, err := c.shm.Request(m.Span.Offset, m.Span.Length)
	if err != nil {
		return nil, fmt.Errorf("worker: request %d: %w", m.ID, err)
	}
	return shared, nil
}

// refusal is a request answered at once, without running it.
type refusal struct {
	id        uint64
	code, msg string
}

// refuse queues r's response; the zero refusal queues nothing.
func (c *conn) refuse(r refusal) {
	if r.code != "" {
		c.reply(codec.KindResponse, r.id, r.code, r.msg)
	}
}

// register registers the job m requests, to run with handler h and jc as
// its context (nil: a new one); c.mu is held. It returns the job, or the
// refusal to send once c.mu is released, or a protocol error.
func (c *conn) register(m *codec.Message, h *handler, jc *jobContext) (*job, refusal, error) {
	switch {
	case c.refusing:
		return nil, refusal{m.ID, codec.CodeShuttingDown, "the worker is shutting down"}, nil
	case h == nil:
		return nil, refusal{m.ID, codec.CodeUnknownJobType, fmt.Sprintf("no handler for job type %q", m.JobType)}, nil
	}
	if _, dup := c.jobs[m.ID]; dup {
		return nil, refusal{}, fmt.Errorf("worker: the host reused the id %d of a running job", m.ID)
	}
	j := jobPool.Get().(*job)
	j.id, j.jobType, j.timeout, j.h = m.ID, m.JobType, m.Timeout, h
	if jc == nil {
		jc = new(jobContext)
	}
	jc.init(c, m, h.kind)
	j.jc, j.ctx = jc, jc
	c.jobs[m.ID] = j
	c.running++
	return j, refusal{}, nil
}

// ownPayload gives the registered job j the payload of m: shared, if it
// is in the shared region; else in frame, if not nil; else the frame's own
// buffer, when the reader handed it over and m is not one of a batch's
// items (which share it); else a copy.
func (c *conn) ownPayload(j *job, m *codec.Message, shared []byte, frame *frameRef, inBatch bool) {
	n := len(m.Payload)
	switch {
	case m.Shared:
		j.payload = shared // the host's until it reads the answer
	case n == 0:
	case frame != nil:
		j.frame, j.payload = frame.hold(), m.Payload
	case c.rd.Owned() && !inBatch:
		j.in, c.big = c.big, nil // the frame's pooled buffer, if any
		j.payload = m.Payload
	default:
		j.in = getPayload(n)
		copy(*j.in, m.Payload)
		j.payload = *j.in
	}
}

// handler returns the handler of jobType, or nil. It remembers the last
// one found: a batch's items usually share their job type. Only the
// reader calls it.
func (c *conn) handler(jobType string) *handler {
	if jobType != c.lastType || c.lastHandler == nil {
		c.lastType, c.lastHandler = jobType, c.handlers[jobType]
	}
	return c.lastHandler
}

// launch hands t to an idle runner, or to a new one.
func (c *conn) launch(t task) {
	select {
	case c.work <- t:
	default:
		go c.runner(t)
	}
}

// runnerIdle is how long a runner goroutine waits for a job before exiting.
const runnerIdle = 10 * time.Second

// runner runs t, then the tasks it receives from c.work until it has been
// idle for runnerIdle or the conversation ends. Reusing goroutines spares
// every job the growth of a fresh goroutine's stack, which profiles showed
// to be a quarter of the SDK's CPU time.
func (c *conn) runner(tk task) {
	var t *time.Timer
	for {
		c.runTask(tk)
		if t == nil {
			t = time.NewTimer(runnerIdle)
		} else {
			t.Reset(runnerIdle)
		}
		select {
		case tk = <-c.work:
		case <-t.C:
			return
		case <-c.quit:
			t.Stop()
			return
		}
	}
}

// run runs j's handler and queues its response.
func (c *conn) run(j *job) { c.runHolding(j, nil) }

// runHolding runs j's handler and queues its response, or, with h, holds
// it in h (see heldResponses). A panic, or a handler's runtime.Goexit,
// queues what h holds at once: the worker is leaving.
func (c *conn) runHolding(j *job, h *heldResponses) {
	var (
		result   []byte
		err      error
		returned bool
	)
	defer func() {
		var p *PanicError
		if !returned {
			v := recover()
			if v == nil {
				v = errGoexit
			}
			p = &PanicError{JobType: j.jobType, ID: j.id, Value: v, Stack: debug.Stack()}
		}
		c.settle(j, result, err, p, h != nil)
		if h == nil {
			c.send(j)
			return
		}
		h.hold(j)
		if p != nil {
			h.flush()
		}
	}()
	result, err = j.h.serve(j.ctx, j)
	returned = true
}

// send queues the response of the settled job j. j belongs to the outbox
// from the call on.
func (c *conn) send(j *job) {
	c.out.send(j)
	c.ran(1)
}

// sendAll is send of every job of jobs, queued together.
func (c *conn) sendAll(jobs []*job) {
	c.out.sendAll(jobs)
	c.ran(len(jobs))
}

// ran counts n answered jobs as no longer running.
func (c *conn) ran(n int) {
	c.mu.Lock()
	c.running -= n
	if c.running == 0 && c.idle != nil {
		close(c.idle)
		c.idle = nil
	}
	c.mu.Unlock()
}

// settle turns a handler's outcome into j's response, ready to be sent;
// the job counts as running until it is. A job whose response is held
// (see heldResponses) stays registered until the flush that sends it;
// another is unregistered at once.
func (c *conn) settle(j *job, result []byte, err error, p *PanicError, held bool) {
	j.kind = codec.KindResponse
	switch {
	case p != nil:
		j.code = codec.CodePanic
		j.msg = panicSummary(p)
		j.pk, j.result = codec.Blob, panicDetail(p)
		// One Write: the host logs a burst of stderr as one record.
		c.logger.Printf("worker: panic in job %d of type %q: %v\n%s", j.id, j.jobType, p.Value, p.Stack)
	case err != nil:
		j.code, j.msg = classify(j, err)
	default:
		j.pk, j.result = j.h.kind, result
	}
	j.msg = truncate(j.msg, maxErrMessage)
	j.jc.end(nil)
	if j.jc.streaming {
		j.jc.endStream() // no chunk after the response
	}
	if held && p == nil {
		return // unregistered by the flush that sends it (heldResponses)
	}
	c.mu.Lock()
	delete(c.jobs, j.id)
	first := p != nil && c.panicErr == nil
	if first {
		c.panicErr = p
		c.panicky.Store(true)
	}
	c.mu.Unlock()
	if first {
		c.stopReading()
		close(c.panicked)
	}
}

// classify returns the error code and message of a failed job.
func classify(j *job, err error) (code, msg string) {
	var e *Error
	if errors.As(err, &e) && e.Code != "" {
		if err == error(e) {
			return e.Code, e.Message
		}
		return e.Code, err.Error()
	}
	ctxErr := j.ctx.Err()
	if ctxErr == nil {
		return codec.CodeHandler, err.Error()
	}
	msg = err.Error()
	if errors.Is(ctxErr, context.DeadlineExceeded) {
		return codec.CodeDeadline, fmt.Sprintf("%s (job timeout %v)", msg, j.timeout)
	}
	if cause := j.jc.causeErr(); cause != nil && cause != ctxErr && !errors.Is(err, cause) {
		msg = fmt.Sprintf("%s (%v)", msg, cause)
	}
	return codec.CodeCancelled, msg
}

// truncate shortens s to at most n bytes plus an ellipsis, on a rune
// boundary, so that it stays valid UTF-8.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// panicFrames is how many stack lines (two per frame) a panic response's
// detail carries; the worker's log has the whole stack.
const panicFrames = 10

// panicSummary returns the first line of "panic: <value>": a panic
// response's error message.
func panicSummary(p *PanicError) string {
	s := fmt.Sprintf("panic: %v", p.Value)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimRight(s[:i], "\r") + " [...]"
	}
	return s
}

// panicDetail returns the panic value in full and the first frames below
// the panic: a panic response's payload, its detail.
func panicDetail(p *PanicError) []byte {
	lines := bytes.Split(bytes.TrimSpace(p.Stack), []byte("\n"))
	start := 1 // after "goroutine N [running]:"
	for i, l := range lines {
		if bytes.HasPrefix(l, []byte("panic(")) {
			start = i + 2 // after runtime.gopanic and its file line
			break
		}
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "panic: %v\n", p.Value)
	for i := start; i < len(lines) && i < start+panicFrames; i++ {
		b.WriteByte('\n')
		b.Write(lines[i])
	}
	if b.Len() > maxErrMessage {
		return []byte(truncate(b.String(), maxErrMessage))
	}
	return b.Bytes()
}

// isHostGone reports whether a write error means that the host closed its
// end of the pipe.
func isHostGone(err error) bool {
	return errors.Is(err, errBrokenPipe) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, os.ErrClosed)
}
