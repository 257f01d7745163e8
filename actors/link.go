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

// link is the host's end of the protocol with one worker process: a writer
// goroutine that coalesces outgoing frames, a reader goroutine that resolves
// jobs as their responses arrive, and the table of jobs in flight.
//
// The worker actor owns the link; the router writes requests and cancels
// through it without a hop through the worker actor's mailbox.
type link struct {
	jobType string
	system  *actor.ActorSystem
	worker  *actor.PID // told of the handshake and of the link's end
	router  *actor.PID // told of every answered job

	out      chan outgoing
	quit     chan struct{} // closed by close(): the writer stops
	quitOnce sync.Once
	wg       sync.WaitGroup

	lastHeard atomic.Int64  // unix nanos of the last frame read
	rss       atomic.Uint64 // resident bytes at the last heartbeat
	writeErr  atomic.Pointer[error]

	mu       sync.Mutex
	inflight map[uint64]*Job
	broken   bool // no more jobs may be added
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

func newLink(system *actor.ActorSystem, jobType string, worker, router *actor.PID) *link {
	l := &link{
		jobType:  jobType,
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

// start runs the writer and reader goroutines over the process's pipes.
func (l *link) start(in io.Writer, out io.Reader, maxFrame int) {
	l.wg.Add(2)
	go l.writeLoop(in, maxFrame)
	go l.readLoop(out, maxFrame)
}

// send queues a frame for the writer. It never blocks the caller for long:
// the queue holds 256 frames and a worker has at most InFlight jobs.
func (l *link) send(o outgoing) {
	select {
	case l.out <- o:
	case <-l.quit:
	}
}

// dispatch registers j as running on this worker and queues its request.
// It reports false when the link is broken (the worker is dying).
func (l *link) dispatch(j *Job, timeout time.Duration) bool {
	l.mu.Lock()
	if l.broken {
		l.mu.Unlock()
		return false
	}
	l.inflight[j.id] = j
	l.mu.Unlock()
	l.send(outgoing{kind: codec.KindRequest, id: j.id, timeout: timeout, pkind: j.Kind, payload: j.Payload})
	return true
}

// cancel asks the worker to stop job id, if it still runs.
func (l *link) cancel(id uint64) {
	l.mu.Lock()
	_, running := l.inflight[id]
	l.mu.Unlock()
	if running {
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

// breakLink makes later dispatches fail: the worker is being killed.
func (l *link) breakLink() {
	l.mu.Lock()
	l.broken = true
	l.mu.Unlock()
}

// takeAll marks the link broken and returns the jobs still in flight, which
// the caller now owns.
func (l *link) takeAll() []*Job {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.broken = true
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

func (l *link) writeLoop(in io.Writer, maxFrame int) {
	defer l.wg.Done()
	bw := bufio.NewWriterSize(in, 64<<10)
	w := codec.NewWriter(bw, maxFrame)
	var m codec.Message
	hello := codec.Message{Kind: codec.KindHello, Version: codec.Version, MaxFrame: uint32(maxFrame)}
	if err := l.write(w, bw, &hello, true); err != nil {
		return
	}
	for {
		var o outgoing
		select {
		case o = <-l.out:
		case <-l.quit:
			return
		}
		// Coalesce: encode everything already queued, then flush once.
		for {
			m = codec.Message{Kind: o.kind, ID: o.id, JobType: l.jobType, Timeout: o.timeout, PayloadKind: o.pkind, Payload: o.payload}
			if o.kind == codec.KindShutdown {
				m.Grace = o.timeout
			}
			more := len(l.out) > 0
			if err := l.write(w, bw, &m, !more); err != nil {
				return
			}
			if !more {
				break
			}
			o = <-l.out
		}
	}
}

// write encodes one message and flushes when asked. A write error (the
// worker closed its end) stops the writer; the process's exit tells the rest.
func (l *link) write(w *codec.Writer, bw *bufio.Writer, m *codec.Message, flush bool) error {
	err := w.Write(m)
	if err == nil && flush {
		err = bw.Flush()
	}
	if err != nil {
		l.writeErr.Store(&err)
	}
	return err
}

func (l *link) readLoop(out io.Reader, maxFrame int) {
	defer l.wg.Done()
	r := codec.NewReader(out, maxFrame)
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

// answer resolves the job a response is for and tells the router.
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
	if m.ErrCode != "" {
		j.resolve(nil, &RemoteError{Code: m.ErrCode, Message: m.ErrMessage})
	} else {
		p := m.Payload
		if !r.Owned() && len(p) > 0 {
			p = append([]byte(nil), p...)
		}
		j.resolve(p, nil)
	}
	l.system.Root.Send(l.router, (*jobDone)(j))
}
