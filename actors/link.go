package actors

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/sharedmem"
)

// link is the host's end of the protocol with one worker process: the
// table of jobs in flight, a reader goroutine that resolves jobs as their
// answers arrive, and the write side, shared by callers that write their
// own requests (the fast path) and a writer goroutine that sends what the
// router and the worker actor queue (so that actors never block on a pipe).
//
// The worker actor owns the link; the router and callers dispatch jobs
// through it without a hop through the worker actor's mailbox.
type link struct {
	jobType string
	spec    *JobType
	gate    *gate
	system  *actor.ActorSystem
	worker  *actor.PID // told of the handshake and of the link's end
	router  *actor.PID // told of answered jobs when it must act on them

	nextID    atomic.Uint64
	lastHeard atomic.Int64  // unix nanos of the last frame read
	rss       atomic.Uint64 // resident bytes at the last heartbeat

	// shm is the worker's shared memory region, if it has one; shared is
	// set once the worker's ready says it mapped it.
	shm    *sharedmem.Host
	shared atomic.Bool
	// peerLimit is the largest request frame the worker accepts: the job
	// type's MaxFrame, or the worker's own limit if its ready says less.
	peerLimit atomic.Int64

	out      chan outgoing
	quit     chan struct{} // closed by close(): the writer stops
	quitOnce sync.Once

	writeMu sync.Mutex // serialises frames on the pipe
	bw      *bufio.Writer
	w       *codec.Writer
	wmsg    codec.Message
	werr    error

	mu       sync.Mutex
	inflight map[uint64]*Job
	closed   bool // no more jobs may be added
	role     readRole
	pingsOut int  // pings not yet answered
	ready    bool // the handshake's answer was read
	dead     bool // reading failed: nobody reads again

	// The read side belongs to whoever holds the read role (see readRole).
	kick   chan struct{} // hands the role to the background reader
	pipe   *os.File      // the worker's answers
	rd     *codec.Reader
	rm     codec.Message
	imu    sync.Mutex
	waking bool // a caller reads and may be interrupted by a deadline
}

// readRole says who reads the worker's answers. A caller that wrote its own
// request to an idle worker reads the answer itself (readFor), as a
// hand-written loop over the pipes would: no goroutine hand-off on the
// fast path. Whenever answers are expected and no caller reads (futures,
// jobs from the router's queue, pings, the handshake), the background
// reader goroutine holds the role. Whoever gives the role up while answers
// are still expected hands it to the background reader.
type readRole int

const (
	roleFree readRole = iota
	roleBackground
	roleCaller
)

// outgoing is one frame for the writer goroutine. Fields are copied out of
// the job so the writer never reads router-owned state.
type outgoing struct {
	kind    codec.Kind
	id      uint64
	timeout time.Duration
	pkind   codec.PayloadKind
	payload []byte
}

// linkReady tells the worker actor the handshake's answer.
type linkReady struct{ msg codec.Message }

// linkClosed tells the worker actor the reader stopped: err is io.EOF when
// the worker closed its end, a codec or protocol error otherwise.
type linkClosed struct{ err error }

// errProtocol marks protocol violations by a worker.
var errProtocol = errors.New("protocol error")

func newLink(system *actor.ActorSystem, spec *JobType, g *gate, worker, router *actor.PID, shm *sharedmem.Host) *link {
	l := &link{
		shm:      shm,
		jobType:  spec.Name,
		spec:     spec,
		gate:     g,
		system:   system,
		worker:   worker,
		router:   router,
		out:      make(chan outgoing, 256),
		quit:     make(chan struct{}),
		inflight: make(map[uint64]*Job),
		kick:     make(chan struct{}, 1),
	}
	l.lastHeard.Store(time.Now().UnixNano())
	l.peerLimit.Store(int64(spec.MaxFrame))
	return l
}

// start sends the Hello and runs the writer and reader goroutines over the
// process's pipes; wg counts them.
func (l *link) start(in io.Writer, out *os.File, wg *sync.WaitGroup) {
	l.pipe = out
	// Buffered: one read system call takes every answer already in the
	// pipe, header and body together.
	l.rd = codec.NewReader(bufio.NewReaderSize(out, 64<<10), l.spec.MaxFrame)
	l.role = roleBackground // for the handshake
	l.kick <- struct{}{}
	l.bw = bufio.NewWriterSize(in, 64<<10)
	l.w = codec.NewWriter(l.bw, l.spec.MaxFrame)
	hello := codec.Message{Kind: codec.KindHello, Version: codec.Version, MaxFrame: uint32(l.spec.MaxFrame)}
	if l.shm != nil {
		hello.SharedSize = uint64(l.shm.Size())
	}
	l.writeMu.Lock()
	l.write(&hello, true)
	l.writeMu.Unlock()
	wg.Add(2)
	go func() {
		defer wg.Done()
		l.writeLoop()
	}()
	go func() {
		defer wg.Done()
		l.readLoop()
	}()
}

// send queues a frame for the writer goroutine.
func (l *link) send(o outgoing) {
	select {
	case l.out <- o:
	case <-l.quit:
	}
}

// dispatch registers j as running on this worker and sends its request as
// mode says. It reports false when the link takes no more jobs.
func (l *link) dispatch(j *Job, timeout time.Duration, mode sendMode) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	// Once registered, the job may be taken back by the router at any time
	// (its worker died, and it is retried elsewhere): read nothing of it
	// that the router writes after this point.
	id, kind, payload := j.id, j.Kind, j.Payload
	l.inflight[id] = j
	if mode != directSelfRead {
		l.wakeReaderLocked()
	}
	l.mu.Unlock()
	if mode == viaWriter {
		l.send(outgoing{kind: codec.KindRequest, id: id, timeout: timeout, pkind: kind, payload: payload})
		return true
	}
	span, shared := l.share(id, payload)
	l.writeMu.Lock()
	l.wmsg = codec.Message{Kind: codec.KindRequest, ID: id, JobType: l.jobType, Timeout: timeout, PayloadKind: kind, Payload: payload}
	if shared {
		l.wmsg.Shared, l.wmsg.Span, l.wmsg.Payload = true, span, nil
	}
	tooLarge := l.write(&l.wmsg, true)
	l.wmsg.Payload = nil
	l.writeMu.Unlock()
	if tooLarge != nil {
		l.refuse(id, tooLarge)
	}
	return true
}

// refusal is a request the writer did not send: too large for the worker.
type refusal struct {
	id  uint64
	err error
}

// refuse fails job id, whose request the worker would not accept, without
// sending it.
func (l *link) refuse(id uint64, cause error) {
	l.mu.Lock()
	j, ok := l.inflight[id]
	if ok {
		delete(l.inflight, id)
	}
	l.mu.Unlock()
	if ok {
		l.settle(j, nil, fmt.Errorf("%w: %w", ErrPayloadTooLarge, cause))
	}
}

// share copies a large request payload into the worker's shared memory
// region, if the worker mapped one and it has room, and returns its place.
// The memory is the worker's until its answer is read.
func (l *link) share(id uint64, payload []byte) (codec.Span, bool) {
	if len(payload) < sharedmem.MinPayload || !l.shared.Load() ||
		!requestFits(l.jobType, len(payload), l.peerLimit.Load()) {
		return codec.Span{}, false // too large for the worker: refused below
	}
	off, dst, ok := l.shm.Reserve(id, len(payload))
	if !ok {
		return codec.Span{}, false
	}
	copy(dst, payload)
	l.shm.Copied()
	l.gate.counters.sharedRequests.Add(1)
	return codec.Span{Offset: off, Length: uint64(len(payload))}, true
}

// writeNow writes m from the calling goroutine, which may block on the
// pipe: never call it from an actor.
func (l *link) writeNow(m *codec.Message) {
	l.writeMu.Lock()
	l.write(m, true)
	l.writeMu.Unlock()
}

// cancel asks the worker to stop job id, if it still runs.
func (l *link) cancel(id uint64) {
	if l.running(id) {
		l.send(outgoing{kind: codec.KindCancel, id: id})
	}
}

// running reports whether job id is still in flight.
func (l *link) running(id uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.inflight[id]
	return ok
}

// closeForJobs makes later dispatches fail and returns the number of jobs
// still in flight.
func (l *link) closeForJobs() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	return len(l.inflight)
}

// takeAll closes the link for jobs and returns the jobs still in flight,
// which the caller now owns.
func (l *link) takeAll() []*Job {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	jobs := make([]*Job, 0, len(l.inflight))
	for id, j := range l.inflight {
		jobs = append(jobs, j)
		delete(l.inflight, id)
	}
	return jobs
}

// close stops the writer. The reader stops when the process's end of the
// pipe closes (the process exited and was reaped).
func (l *link) close() {
	l.quitOnce.Do(func() { close(l.quit) })
}

func (l *link) writeLoop() {
	var m codec.Message
	for {
		var o outgoing
		select {
		case o = <-l.out:
		case <-l.quit:
			return
		}
		// Coalesce: encode everything already queued, then flush once.
		var refused []refusal
		l.writeMu.Lock()
		for {
			m = codec.Message{Kind: o.kind, ID: o.id, JobType: l.jobType, Timeout: o.timeout, PayloadKind: o.pkind, Payload: o.payload}
			switch o.kind {
			case codec.KindShutdown:
				m.Grace = o.timeout
			case codec.KindRequest:
				if span, ok := l.share(o.id, o.payload); ok {
					m.Shared, m.Span, m.Payload = true, span, nil
				}
			}
			more := len(l.out) > 0
			if err := l.write(&m, !more); err != nil {
				refused = append(refused, refusal{o.id, err})
			}
			if !more {
				break
			}
			o = <-l.out
		}
		l.writeMu.Unlock()
		for _, r := range refused {
			l.refuse(r.id, r.err)
		}
	}
}

// write encodes one message and flushes when asked; writeMu is held. After
// a write error (the worker closed its end) later writes are dropped: the
// process's exit tells the rest. A message too large for the worker is not
// written (the stream stays intact) and its error returned, for the caller
// to fail the job.
func (l *link) write(m *codec.Message, flush bool) error {
	if l.werr != nil {
		return nil
	}
	err := l.w.Write(m)
	var tooLarge error
	if errors.Is(err, codec.ErrFrameTooLarge) {
		tooLarge, err = err, nil
	}
	if err == nil && flush {
		err = l.bw.Flush()
	}
	l.werr = err
	return tooLarge
}

// readLoop is the background reader: it reads while it holds the role.
func (l *link) readLoop() {
	for {
		select {
		case <-l.kick:
		case <-l.quit:
			// The process is gone or going: whatever answers remain are
			// read by a caller that still holds the role, if any, from the
			// region while the copy lasts.
			l.closeShared()
			return
		}
		for {
			if err := l.readOne(); err != nil {
				return // dead: the worker actor was told
			}
			if !l.keepRole() {
				break
			}
		}
	}
}

// needsReaderLocked reports whether answers are expected.
func (l *link) needsReaderLocked() bool {
	return !l.ready || len(l.inflight) > 0 || l.pingsOut > 0
}

// keepRole is the background reader's check after each frame: it keeps the
// role while answers are expected and frees it otherwise.
func (l *link) keepRole() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.needsReaderLocked() {
		return true
	}
	l.role = roleFree
	return false
}

// wakeReaderLocked makes sure someone reads: if nobody holds the role, the
// background reader takes it.
func (l *link) wakeReaderLocked() {
	if l.role == roleFree && !l.dead {
		l.role = roleBackground
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

// ping sends a heartbeat ping and makes sure its pong will be read.
func (l *link) ping(seq uint64) {
	l.mu.Lock()
	l.pingsOut++
	l.wakeReaderLocked()
	l.mu.Unlock()
	l.send(outgoing{kind: codec.KindPing, id: seq})
}

// takeRole gives the read role to a caller if nobody holds it.
func (l *link) takeRole() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.role != roleFree || l.dead || !l.ready {
		return false
	}
	l.role = roleCaller
	return true
}

// readFor reads, holding the caller role, until j resolves (by its answer,
// or by a timeout or cancellation that interrupts the read), then gives the
// role up.
func (l *link) readFor(ctx context.Context, j *Job) {
	l.imu.Lock()
	l.waking = true
	l.imu.Unlock()
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, l.interrupt)
	}
	for !j.resolved() {
		if err := l.readOne(); err != nil {
			break // interrupted, or dead
		}
	}
	if stop != nil {
		stop()
	}
	l.imu.Lock()
	l.waking = false
	_ = l.pipe.SetReadDeadline(time.Time{})
	l.imu.Unlock()
	l.mu.Lock()
	l.role = roleFree
	if l.needsReaderLocked() {
		l.wakeReaderLocked()
	}
	l.mu.Unlock()
}

// interrupt ends a caller's blocked read (its job resolved another way, or
// its context ended); the Reader resumes the frame for the next holder.
func (l *link) interrupt() {
	l.imu.Lock()
	if l.waking {
		_ = l.pipe.SetReadDeadline(time.Unix(1, 0))
	}
	l.imu.Unlock()
}

// readOne reads and handles one frame. It returns the read's timeout error
// (the reader was interrupted) or, once the link is dead, the error that
// killed it, which it has reported to the worker actor.
func (l *link) readOne() error {
	err := l.rd.Read(&l.rm)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		l.die(err)
		return err
	}
	l.lastHeard.Store(time.Now().UnixNano())
	m := &l.rm
	l.mu.Lock()
	ready := l.ready
	l.mu.Unlock()
	switch {
	case m.Kind == codec.KindResponse && ready:
		if err := l.answer(m, l.rd); err != nil {
			l.die(err)
			return err
		}
	case m.Kind == codec.KindPong && ready:
		l.mu.Lock()
		l.pingsOut = 0
		l.mu.Unlock()
	case m.Kind == codec.KindReady && !ready:
		msg := *m
		msg.JobTypes = append([]string(nil), m.JobTypes...)
		if limit := int64(m.MaxFrame); limit > 0 && limit < l.peerLimit.Load() {
			// The worker accepts less than the job type says: hold to its
			// limit, and have the gate refuse larger payloads up front.
			l.peerLimit.Store(limit)
			l.writeMu.Lock()
			l.w.SetMaxFrame(int(limit))
			l.writeMu.Unlock()
			l.gate.lowerFrameLimit(limit)
		}
		if l.shm != nil {
			if m.SharedSize == uint64(l.shm.Size()) {
				l.shared.Store(true)
			} else {
				l.shm.Close() // declined: free it now
			}
		}
		l.mu.Lock()
		l.ready = true
		l.mu.Unlock()
		l.system.Root.Send(l.worker, &linkReady{msg: msg})
	default:
		err := fmt.Errorf("%w: unexpected %s message (handshake done: %v)", errProtocol, m.Kind, ready)
		l.die(err)
		return err
	}
	return nil
}

// die marks the link unreadable and tells the worker actor why. Nobody
// reads an answer any more, so the shared memory region goes too (once the
// copies into it in progress end).
func (l *link) die(err error) {
	l.mu.Lock()
	l.dead = true
	l.mu.Unlock()
	l.closeShared()
	l.system.Root.Send(l.worker, &linkClosed{err: err})
}

// closeShared unmaps the shared memory region, if any, once the copies in
// progress end; later requests travel in frames.
func (l *link) closeShared() {
	if l.shm != nil {
		l.shm.Close()
	}
}

// answer settles the job a response is for. It returns an error only for a
// protocol violation, which kills the link; the job then stays in flight,
// for the worker's exit to settle.
func (l *link) answer(m *codec.Message, r *codec.Reader) error {
	var result []byte
	var lost error // the result went with the shared memory region
	if l.shm != nil {
		l.shm.Release(m.ID) // the request's shared memory, if it had any
	}
	if m.Shared {
		b, err := l.sharedResult(m)
		switch {
		case errors.Is(err, sharedmem.ErrClosed):
			lost = err
		case err != nil:
			return err
		default:
			if m.ErrCode == "" {
				result = bytes.Clone(b)
			}
			l.shm.Consumed() // the worker may reuse the memory now
			l.gate.counters.sharedResults.Add(1)
		}
	}
	l.mu.Lock()
	j, ok := l.inflight[m.ID]
	if ok {
		delete(l.inflight, m.ID)
	}
	l.mu.Unlock()
	if !ok {
		return nil // answered after its worker was declared dead, or a stray id
	}
	var err error
	switch {
	case lost != nil:
		err = &CrashError{Cause: ErrWorkerCrashed, Reason: "its result was lost with its shared memory region", JobID: m.ID, Attempt: j.attempt}
	case m.ErrCode != "":
		err = &RemoteError{Code: m.ErrCode, Message: m.ErrMessage}
	case !m.Shared:
		if result = m.Payload; !r.Owned() && len(result) > 0 {
			result = append([]byte(nil), result...)
		}
	}
	l.settle(j, result, err)
	return nil
}

// settle resolves j, taken out of the jobs in flight, and frees its slot
// first, so that a caller woken by the result finds it free.
func (l *link) settle(j *Job, result []byte, err error) {
	if j.timer != nil {
		j.timer.Stop()
	}
	w := j.worker
	w.running.Add(-1)
	served := w.served.Add(1)
	w.lastDone.Store(time.Now().UnixNano())
	recycle := l.spec.RecycleAfterJobs > 0 && served >= int64(l.spec.RecycleAfterJobs)
	if recycle || !l.gate.giveSlot(w) {
		l.system.Root.Send(l.router, (*jobDone)(j))
	}
	j.resolve(result, err)
}

// sharedResult returns the memory of a result in the worker's shared memory
// region; the caller must then call l.shm.Consumed. It fails with
// sharedmem.ErrClosed once the link has closed the region, and with a
// protocol error when the worker has no region or names a place outside
// the results' half.
func (l *link) sharedResult(m *codec.Message) ([]byte, error) {
	if !l.shared.Load() {
		return nil, fmt.Errorf("%w: a response in shared memory from a worker without a region", errProtocol)
	}
	b, err := l.shm.Response(m.Span.Offset, m.Span.Length)
	if err != nil && !errors.Is(err, sharedmem.ErrClosed) {
		return nil, fmt.Errorf("%w: response %d places its payload outside the shared memory for results: %w", errProtocol, m.ID, err)
	}
	return b, err
}
