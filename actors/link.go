package actors

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/sharedmem"
)

// linkOwner is what a link tells the pool about its worker. The link calls
// it from its own goroutines and from callers' goroutines, never while it
// holds a lock; no method may block.
type linkOwner interface {
	// ready: the worker's handshake was accepted; limit is the largest
	// request frame it takes.
	ready(limit int64)
	// answered: j left the in-flight table (its answer was read, or its
	// request was refused or never sent); free its slot and resolve it with
	// result or err (a no-op if it resolved already; nothing for
	// errCallerDecides, which leaves it to its caller's context).
	answered(j *Job, result []byte, err error)
	// itemAnswered: item of Map job j left the table, as answered does for
	// a job; the job's slot is freed once its last item of the dispatch is.
	itemAnswered(j *Job, item int, result []byte, err error)
	// itemsAnswered is itemAnswered of each of outs, items of j answered
	// in one batch response. outs is the caller's again on return.
	itemsAnswered(j *Job, outs []itemOutcome)
	// leaving: the worker announced that it exits (it answered a job with
	// code "panic"): it gets no more jobs.
	leaving(reason error)
	// overran: job id ran past its timeout; it has been resolved and its
	// worker asked to cancel it.
	overran(id uint64)
	// closed: reading ended for good. err is io.EOF or os.ErrClosed when the
	// worker closed its end or the pipe was closed after its exit; a
	// protocol violation (errProtocol), a refused handshake (errHandshake),
	// a stalled write (errStalled) or a read error otherwise.
	closed(err error)
}

// Errors a link dies of.
var (
	// errProtocol marks protocol violations by a worker.
	errProtocol = errors.New("protocol error")
	// errHandshake marks a handshake the host refused.
	errHandshake = errors.New("handshake refused")
)

// linkConfig is what a link needs to know of its worker.
type linkConfig struct {
	jobType  string
	pid      int           // the worker's process id, for error messages
	maxFrame int           // the host's frame limit
	timeout  time.Duration // JobTimeout, sent with every request; 0: none
	stall    time.Duration // how long the worker may take no input
	shm      *sharedmem.Host
	counters *counters      // counts the payloads that take the shared region
	offer    codec.Features // the optional features offered in the hello
}

// link is the host's end of the protocol with one worker process. It is
// three parts, each with its own rules: the in-flight table (inflight: who
// owns a running job), the writer (writer: bounded, interruptible writes
// onto fd 3) and the read side (reader and readRole: who reads fd 4). Its
// own code is the protocol: the handshake, requests, cancels, pings
// matched to pongs, answers checked against the table, the shared memory
// region. Every violation kills the link; its owner (linkOwner) hears of
// everything else.
type link struct {
	linkConfig
	owner linkOwner

	table inflight
	w     writer
	r     reader
	// slab holds the results of the batch response being read; only the
	// holder of the read role touches it (answerBatch).
	slab  []byte
	found []taken // the table's entries for the batch response being read
	// outs are the outcomes of the batch response being read that go to
	// Map job outJob, delivered together (flushItems); only the holder of
	// the read role touches them.
	outs   []itemOutcome
	outJob *Job

	shared     atomic.Bool    // the worker mapped the shared memory region
	peerLimit  atomic.Int64   // the largest request frame the worker takes
	features   codec.Features // negotiated: written once, before handshaken is set
	handshaken atomic.Bool
	ending     atomic.Bool // the process has exited: read what it left, to the end

	nextPing atomic.Uint64
	pingSeq  atomic.Uint64 // the ping awaiting its pong; 0: none
	pingSent atomic.Int64  // when it was sent, unix nanos
	answered atomic.Int64  // when a job was last answered, unix nanos

	dieOnce  sync.Once
	readDone chan struct{} // closed once reading has ended for good
}

// sendMode says how a job's request goes out and who reads its answer.
type sendMode int

const (
	// viaWriter: the link's writer goroutine sends it (for the router,
	// which must never block on a pipe); the background reader reads the
	// answer.
	viaWriter sendMode = iota
	// direct: the calling goroutine writes it; the background reader reads
	// the answer (Submit: nobody waits yet).
	direct
	// directSelfRead: the calling goroutine writes it and then reads the
	// answer itself if nobody else reads (Call).
	directSelfRead
)

func newLink(cfg linkConfig, owner linkOwner) *link {
	l := &link{linkConfig: cfg, owner: owner, table: newInflight(), readDone: make(chan struct{})}
	l.peerLimit.Store(int64(cfg.maxFrame))
	if l.stall <= 0 {
		l.stall = 30 * time.Second
	}
	return l
}

// start sends the hello and runs the writer and reader goroutines over the
// worker's input (fd 3) and output (fd 4) pipes; wg counts them.
func (l *link) start(in, out *os.File, wg *sync.WaitGroup) {
	l.w.init(in, l.jobType, l.maxFrame, l.stall)
	l.w.stalled = func(err error) { l.die(err) }
	l.w.prepare = l.prepare
	l.w.refused = func(o *outgoing, id uint64, err error) { l.refuse(id, o.job, err) }
	l.r.init(out, l.maxFrame)
	l.r.role.Store(int32(roleBackground)) // for the handshake
	l.r.kick <- struct{}{}
	hello := codec.Message{Kind: codec.KindHello, Version: codec.Version, MaxFrame: uint32(l.maxFrame), Features: l.offer}
	if l.shm != nil {
		hello.SharedSize = uint64(l.shm.Size())
	}
	l.w.put(&hello)
	wg.Add(2)
	go func() {
		defer wg.Done()
		l.w.loop()
	}()
	go func() {
		defer wg.Done()
		l.readLoop()
	}()
}

// dispatch registers j as running on this worker and sends its request as
// mode says. It reports false when the worker takes no more jobs.
func (l *link) dispatch(j *Job, mode sendMode) bool {
	if j.batch != nil {
		return l.dispatchBatch(j)
	}
	// Read from j before it enters the table: from then on the router may
	// take it back (its worker died) and dispatch it again.
	budget, meta := l.budget(j), l.meta(j)
	if j.stream != nil {
		j.stream.dispatched()
	}
	id, ok := l.table.add(j, l)
	if !ok {
		return false
	}
	if l.timeout > 0 {
		j.timer.Store(timerFor(l, j, id, j.attempt))
	}
	if mode != directSelfRead {
		l.r.wake()
	}
	o := outgoing{kind: codec.KindRequest, id: id, job: j, timeout: budget, pkind: j.Kind, payload: j.Payload, meta: meta}
	if mode == viaWriter {
		l.w.enqueue(o)
		return true
	}
	o.span, o.shared = l.share(id, o.payload)
	took, refused := l.w.tryRequest(&o)
	switch {
	case !took:
		l.w.enqueue(o) // someone else writes: the goroutine sends it next
	case refused != nil:
		l.refuse(id, j, refused)
	}
	return true
}

// meta returns what a request carries besides its payload: with request
// metadata, the attempt and the job's trace context; with streams, a
// streamed job's first credit.
func (l *link) meta(j *Job) requestMeta {
	var m requestMeta
	if l.features.Has(codec.FeatureMeta) {
		m.attempt = uint32(j.attempt)
		if j.obs != nil {
			m.traceParent, m.traceState = j.obs.TraceContext()
		}
	}
	if j.stream != nil && l.features.Has(codec.FeatureStream) {
		m.credit = streamWindow
	}
	return m
}

// timerFor arms job id's JobTimeout.
func timerFor(l *link, j *Job, id uint64, attempt int) *time.Timer {
	return time.AfterFunc(l.timeout, func() { l.expire(j, id, attempt) })
}

// budget returns the time budget sent with j's request: JobTimeout, or what
// is left of the caller's deadline if that is sooner (at least a
// millisecond), so that the worker can stop in time; 0 for none. It notes
// in j which of the two it sent.
func (l *link) budget(j *Job) time.Duration {
	j.byDeadline = false
	if j.deadline.IsZero() {
		return l.timeout
	}
	left := max(time.Until(j.deadline), time.Millisecond)
	if l.timeout > 0 && l.timeout <= left {
		return l.timeout
	}
	j.byDeadline = true
	return left
}

// prepare readies a queued request for the writer: a job that resolved
// while its request waited is not sent (it leaves the table), a large
// payload moves into the shared memory region.
func (l *link) prepare(o *outgoing) bool {
	if o.job.resolved() {
		ids := o.ids
		if o.kind != codec.KindBatchRequest {
			ids = []uint64{o.id}
		}
		for _, id := range ids {
			if e, ok := l.table.drop(id, o.job); ok {
				l.releaseShared(id)
				l.answeredEntry(e, nil, errCallerDecides) // resolved already
			}
		}
		return false
	}
	if o.kind == codec.KindBatchRequest {
		l.shareItems(o)
		return true
	}
	if !o.shared {
		o.span, o.shared = l.share(o.id, o.payload)
	}
	return true
}

// refuse fails job id, whose request the codec would not write, without
// sending it.
func (l *link) refuse(id uint64, j *Job, cause error) {
	e, ok := l.table.drop(id, j)
	if !ok {
		return
	}
	l.releaseShared(id)
	if errors.Is(cause, codec.ErrFrameTooLarge) {
		cause = fmt.Errorf("%w: %w", ErrPayloadTooLarge, cause)
	}
	l.answeredEntry(e, nil, cause)
}

// answeredEntry tells the owner that what the entry names left the table.
func (l *link) answeredEntry(e entry, result []byte, err error) {
	if e.item >= 0 {
		l.owner.itemAnswered(e.j, e.item, result, err)
		return
	}
	l.owner.answered(e.j, result, err)
}

// gather is answeredEntry for an item of a Map job answered in the batch
// response being read: its outcome waits in l.outs with the others of its
// job, until the frame's items change job or end (flushItems).
func (l *link) gather(e entry, result []byte, err error) {
	if e.j != l.outJob {
		l.flushItems()
		l.outJob = e.j
	}
	l.outs = append(l.outs, itemOutcome{item: e.item, result: result, err: err})
}

// flushItems delivers the outcomes gathered in l.outs.
func (l *link) flushItems() {
	if len(l.outs) > 0 {
		l.owner.itemsAnswered(l.outJob, l.outs)
	}
	clear(l.outs) // the results are the callers'
	l.outs, l.outJob = l.outs[:0], nil
}

// expire fails job id with ErrJobTimeout if it still runs, and asks the
// worker to cancel it.
func (l *link) expire(j *Job, id uint64, attempt int) {
	if !l.table.holds(id, j) {
		return
	}
	j.resolve(nil, fmt.Errorf("%w: job %d ran longer than %v on worker pid %d (attempt %d)",
		ErrJobTimeout, id, l.timeout, l.pid, attempt))
	l.interrupt() // its caller may be writing or reading for it
	l.w.enqueue(outgoing{kind: codec.KindCancel, id: id})
	l.owner.overran(id)
}

// cancel asks the worker to stop j (each of a Map job's items), if it
// still runs here. For a Map job, only the router calls it.
func (l *link) cancel(j *Job) {
	if j.batch != nil {
		for _, id := range j.batch.ids {
			if l.table.holds(id, j) {
				l.w.enqueue(outgoing{kind: codec.KindCancel, id: id})
			}
		}
		return
	}
	if id := j.id.Load(); l.table.holds(id, j) {
		l.w.enqueue(outgoing{kind: codec.KindCancel, id: id})
	}
}

// running reports whether job id is still unanswered.
func (l *link) running(id uint64) bool {
	_, ok := l.table.lookup(id)
	return ok
}

// beat is the heartbeat: it sends a ping unless one is unanswered, and
// returns how long the worker has been silent since (0 if it sent one).
// Only the frames the host asked for are signs of life: the pong with the
// ping's sequence number, and the answers to running jobs.
func (l *link) beat(now time.Time) time.Duration {
	if l.pingSeq.Load() != 0 {
		since := max(l.pingSent.Load(), l.answered.Load())
		return now.Sub(time.Unix(0, since))
	}
	seq := l.nextPing.Add(1)
	l.pingSent.Store(now.UnixNano())
	l.pingSeq.Store(seq)
	l.r.wake()
	l.w.enqueue(outgoing{kind: codec.KindPing, id: seq})
	return 0
}

// shutdown asks the worker to finish its jobs within grace and exit.
func (l *link) shutdown(grace time.Duration) {
	l.w.enqueue(outgoing{kind: codec.KindShutdown, timeout: grace})
}

// closeForJobs makes later dispatches fail and returns the number of jobs
// still in flight.
func (l *link) closeForJobs() int { return l.table.close() }

// takeAll closes the link for jobs and returns the jobs still in flight,
// which the caller now owns.
func (l *link) takeAll() []*Job { return l.table.takeAll() }

// end tells the link that its process has exited: it reads what the worker
// wrote before it died, to the end of the pipe, then reports closed.
func (l *link) end() {
	l.ending.Store(true)
	l.r.wake()
}

// done returns a channel closed once reading has ended for good.
func (l *link) done() <-chan struct{} { return l.readDone }

// close stops the writer. Reading ends with the pipe (see end).
func (l *link) close() { l.w.close() }

// interrupt stops a caller's write or read in progress on this link (its
// context ended, or its job resolved another way).
func (l *link) interrupt() {
	l.w.interrupt()
	l.r.interrupt()
}
