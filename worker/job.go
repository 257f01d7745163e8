package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

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
	j, ref, err := c.register(m, h, nil, false)
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
// refusal to send once c.mu is released, or a protocol error. With inRun,
// the caller registers the job in c.jobs, in a run (startBatch).
func (c *conn) register(m *codec.Message, h *handler, jc *jobContext, inRun bool) (*job, refusal, error) {
	switch {
	case c.refusing:
		return nil, refusal{m.ID, codec.CodeShuttingDown, "the worker is shutting down"}, nil
	case h == nil:
		return nil, refusal{m.ID, codec.CodeUnknownJobType, fmt.Sprintf("no handler for job type %q", m.JobType)}, nil
	}
	if !inRun && c.jobs.has(m.ID) {
		return nil, refusal{}, fmt.Errorf("worker: the host reused the id %d of a running job", m.ID)
	}
	j := jobPool.Get().(*job)
	j.id, j.jobType, j.timeout, j.h = m.ID, m.JobType, m.Timeout, h
	if jc == nil {
		jc = new(jobContext)
	}
	jc.init(c, m, h.kind)
	j.jc, j.ctx = jc, jc
	if !inRun {
		c.jobs.add(m.ID, j)
	}
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
