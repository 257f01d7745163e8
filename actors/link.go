package actors

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/procpool/procpool/codec"
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
}

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

func newLink(system *actor.ActorSystem, spec *JobType, g *gate, worker, router *actor.PID) *link {
	l := &link{
		jobType:  spec.Name,
		spec:     spec,
		gate:     g,
		system:   system,
		worker:   worker,
		router:   router,
		out:      make(chan outgoing, 256),
		quit:     make(chan struct{}),
		inflight: make(map[uint64]*Job),
	}
	l.lastHeard.Store(time.Now().UnixNano())
	return l
}

// start sends the Hello and runs the writer and reader goroutines over the
// process's pipes; wg counts them.
func (l *link) start(in io.Writer, out io.Reader, wg *sync.WaitGroup) {
	l.bw = bufio.NewWriterSize(in, 64<<10)
	l.w = codec.NewWriter(l.bw, l.spec.MaxFrame)
	hello := codec.Message{Kind: codec.KindHello, Version: codec.Version, MaxFrame: uint32(l.spec.MaxFrame)}
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
		l.readLoop(out)
	}()
}

// send queues a frame for the writer goroutine.
func (l *link) send(o outgoing) {
	select {
	case l.out <- o:
	case <-l.quit:
	}
}

// dispatch registers j as running on this worker and sends its request,
// from this goroutine when direct is set, else through the writer. It
// reports false when the link takes no more jobs.
func (l *link) dispatch(j *Job, timeout time.Duration, direct bool) bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	l.inflight[j.id] = j
	l.mu.Unlock()
	if !direct {
		l.send(outgoing{kind: codec.KindRequest, id: j.id, timeout: timeout, pkind: j.Kind, payload: j.Payload})
		return true
	}
	l.writeMu.Lock()
	l.wmsg = codec.Message{Kind: codec.KindRequest, ID: j.id, JobType: l.jobType, Timeout: timeout, PayloadKind: j.Kind, Payload: j.Payload}
	l.write(&l.wmsg, true)
	l.wmsg.Payload = nil
	l.writeMu.Unlock()
	return true
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
		l.writeMu.Lock()
		for {
			m = codec.Message{Kind: o.kind, ID: o.id, JobType: l.jobType, Timeout: o.timeout, PayloadKind: o.pkind, Payload: o.payload}
			if o.kind == codec.KindShutdown {
				m.Grace = o.timeout
			}
			more := len(l.out) > 0
			l.write(&m, !more)
			if !more {
				break
			}
			o = <-l.out
		}
		l.writeMu.Unlock()
	}
}

// write encodes one message and flushes when asked; writeMu is held. After
// a write error (the worker closed its end) later writes are dropped: the
// process's exit tells the rest.
func (l *link) write(m *codec.Message, flush bool) {
	if l.werr != nil {
		return
	}
	err := l.w.Write(m)
	if err == nil && flush {
		err = l.bw.Flush()
	}
	l.werr = err
}

func (l *link) readLoop(out io.Reader) {
	r := codec.NewReader(out, l.spec.MaxFrame)
	var m codec.Message
	handshaken := false
	for {
		err := r.Read(&m)
		if err != nil {
			l.system.Root.Send(l.worker, &linkClosed{err: err})
			return
		}
		l.lastHeard.Store(time.Now().UnixNano())
		switch {
		case m.Kind == codec.KindResponse && handshaken:
			l.answer(&m, r)
		case m.Kind == codec.KindPong && handshaken:
		case m.Kind == codec.KindReady && !handshaken:
			handshaken = true
			ready := m
			ready.JobTypes = append([]string(nil), m.JobTypes...)
			l.system.Root.Send(l.worker, &linkReady{msg: ready})
		default:
			err := fmt.Errorf("%w: unexpected %s message (handshake done: %v)", errProtocol, m.Kind, handshaken)
			l.system.Root.Send(l.worker, &linkClosed{err: err})
			return
		}
	}
}

// answer settles the job a response is for: it frees the job's slot first
// (so that a caller woken by the result finds it free), then resolves the
// job.
func (l *link) answer(m *codec.Message, r *codec.Reader) {
	l.mu.Lock()
	j, ok := l.inflight[m.ID]
	if ok {
		delete(l.inflight, m.ID)
	}
	l.mu.Unlock()
	if !ok {
		return // answered after its worker was declared dead, or a stray id
	}
	var result []byte
	var err error
	if m.ErrCode != "" {
		err = &RemoteError{Code: m.ErrCode, Message: m.ErrMessage}
	} else if result = m.Payload; !r.Owned() && len(result) > 0 {
		result = append([]byte(nil), result...)
	}
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
