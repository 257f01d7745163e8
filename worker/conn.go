package worker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/procpool/procpool/codec"
)

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
	jobs     jobTable      // running jobs, by id
	running  int           // jobs whose response is not yet queued
	refusing bool          // new requests are answered shutting_down
	idle     chan struct{} // closed when running drops to 0
	panicErr *PanicError   // the first panic
	panicky  atomic.Bool   // a handler panicked: start no more jobs

	stopOnce    sync.Once
	stopping    atomic.Bool // the reader ignores what it reads from now on
	interrupted bool        // stopReading managed to interrupt src

	work chan task     // idle runners receive jobs from it
	quit chan struct{} // closed at the end: idle runners exit

	readDone chan error // the reader's end: io.EOF, an error, or nil when stopped
	big      *[]byte    // the pooled buffer of the frame being read, if large
	// sharedScratch holds the shared payloads of the batch being started
	// (startBatch, on the reader's goroutine).
	sharedScratch [][]byte
	shutdownC     chan time.Duration // the grace of the shutdown message
	panicked      chan struct{}      // closed on the first panic
}

func newConn(s *Server, r io.Reader, w io.Writer, mapShared func(uint64) (*region, error)) *conn {
	c := &conn{
		mapShared:    mapShared,
		logger:       s.logger(),
		drain:        s.drainTimeout(),
		batchWorkers: s.batchConcurrency(),
		src:          r,
		rd:           codec.NewReader(bufio.NewReaderSize(r, readBufferSize), s.MaxFrame),
		jobs:         newJobTable(),
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
		if j := c.jobs.get(m.ID); j != nil { // unknown or answered: ignore
			jc = j.jc
		}
		c.mu.Unlock()
		if jc != nil {
			jc.grant(m.Credit)
		}
	case codec.KindCancel:
		c.mu.Lock()
		if j := c.jobs.get(m.ID); j != nil {
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

// isHostGone reports whether a write error means that the host closed its
// end of the pipe.
func isHostGone(err error) bool {
	return errors.Is(err, errBrokenPipe) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, os.ErrClosed)
}
