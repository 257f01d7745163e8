package distributed

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/procpool/procpool"
)

// ProducerOptions configures one Producer.
type ProducerOptions struct {
	// ID names the producer: its results arrive on ResultSubject(ID),
	// through a durable consumer of that name (default: a random id). At
	// most one live Producer may use an ID. Letters, digits, '-' and '_'.
	ID string
	// InjectHeaders is called with each job's context and message headers
	// before the job is published, to carry its trace context to the node
	// (whose NodeOptions.ExtractHeaders reads it back). Nil: W3C trace
	// context (traceparent, tracestate headers), so that the job's span on
	// its node joins the caller's trace.
	InjectHeaders func(ctx context.Context, h nats.Header)
}

// Producer submits jobs to the job types' streams and receives their
// results. It is safe for concurrent use. Close it when done.
type Producer struct {
	cfg    Config
	nc     *nats.Conn
	js     jetstream.JetStream
	id     string
	reply  string
	inject func(context.Context, nats.Header)

	results jetstream.Stream
	rc      resultConsumption

	types sync.Map // job type -> *jobTypeInfo

	mu      sync.Mutex
	pending map[string]*Job
	closed  bool
	idle    chan struct{} // Close waits on it; closed when pending empties after Close began

	submitted, succeeded, failed, duplicates atomic.Uint64
}

// jobTypeInfo is what a producer knows of a job type's stream.
type jobTypeInfo struct {
	subject, stream string
	limit           int64 // largest message, headers included
}

// NewProducer starts a producer on nc: it creates its result consumer (and
// the result stream, if missing and Config.NoCreate is not set) and starts
// receiving results.
func NewProducer(ctx context.Context, nc *nats.Conn, cfg Config, opts ProducerOptions) (*Producer, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	id := opts.ID
	if id == "" {
		id = nuid.Next()
	}
	if !validToken(id) {
		return nil, fmt.Errorf("%w: producer id %q: want letters, digits, '-' and '_'", ErrInvalidConfig, id)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("distributed: %w", err)
	}
	p := &Producer{
		cfg: cfg, nc: nc, js: js, id: id, reply: cfg.ResultSubject(id), inject: opts.InjectHeaders,
		pending: make(map[string]*Job),
	}
	if p.results, err = cfg.resultStream(ctx, js); err != nil {
		return nil, err
	}
	if err := p.consumeResults(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// ID returns the producer's id.
func (p *Producer) ID() string { return p.id }

// Call submits a job and waits for its result. If ctx ends first, it
// returns an error matching procpool.ErrCancelled and ctx.Err().
func (p *Producer) Call(ctx context.Context, jobType string, kind procpool.PayloadKind, payload []byte) ([]byte, error) {
	j, err := p.Submit(ctx, jobType, kind, payload)
	if err != nil {
		return nil, err
	}
	return j.Wait(ctx)
}

// Submit publishes a job of a type and returns it once its stream has
// stored it; wait for its result with Job.Wait. The job gets a fresh id.
//
// Submit fails with an error matching procpool.ErrPayloadTooLarge if the
// job's message exceeds its stream's message limit or comes within 2 KiB
// of the server's max_payload (room its dead letter needs), and with
// procpool.ErrShuttingDown after Close. While the server cannot be
// reached, Submit retries, with the same message id, as long as ctx
// allows. If ctx ends before the job resolves, the job is
// cancelled (see Job.Wait). A deadline of ctx travels with the job: a node
// that receives it after the deadline answers it as cancelled without
// running it.
func (p *Producer) Submit(ctx context.Context, jobType string, kind procpool.PayloadKind, payload []byte) (*Job, error) {
	return p.submit(ctx, nuid.Next(), jobType, kind, payload)
}

// SubmitWithID is Submit with the job's id chosen by the caller, as an
// idempotency key: a second submission of an id within the
// de-duplication window, from any producer, is not stored again and fails
// with ErrDuplicateJob (the first submitter gets the result). Ids are 1 to
// 128 printable ASCII characters, no spaces.
func (p *Producer) SubmitWithID(ctx context.Context, id, jobType string, kind procpool.PayloadKind, payload []byte) (*Job, error) {
	if !validJobID(id) {
		return nil, fmt.Errorf("%w: job id %q: want 1 to 128 printable ASCII characters, no spaces", ErrInvalidConfig, id)
	}
	return p.submit(ctx, id, jobType, kind, payload)
}

func (p *Producer) submit(ctx context.Context, id, jobType string, kind procpool.PayloadKind, payload []byte) (*Job, error) {
	if err := ctx.Err(); err != nil {
		return nil, cancelled(err)
	}
	if kind != procpool.Blob && kind != procpool.Value {
		return nil, fmt.Errorf("%w: unknown payload kind %d", ErrInvalidConfig, kind)
	}
	info, err := p.jobType(ctx, jobType)
	if err != nil {
		return nil, err
	}
	msg := &nats.Msg{Subject: info.subject, Data: payload, Header: nats.Header{}}
	msg.Header.Set(hdrJob, id)
	msg.Header.Set(hdrKind, kindName(kind))
	msg.Header.Set(hdrReply, p.reply)
	if dl, ok := ctx.Deadline(); ok {
		msg.Header.Set(hdrDeadline, formatDeadline(dl))
	}
	if p.inject != nil {
		p.inject(ctx, msg.Header)
	} else {
		injectTraceContext(ctx, msg.Header)
	}
	msg.Header.Set(jetstream.MsgIDHeader, id)
	msg.Header.Set(jetstream.ExpectedStreamHeader, info.stream) // as publishStored will
	if size := int64(len(payload) + headerSize(msg.Header)); size > info.limit {
		return nil, fmt.Errorf("%w: a %s job of %d bytes makes a message of %d bytes, over the limit of %d (stream %s, server max_payload %d)",
			procpool.ErrPayloadTooLarge, jobType, len(payload), size, info.limit, info.stream, p.nc.MaxPayload())
	}

	j := &Job{ID: id, JobType: jobType, p: p, done: make(chan struct{})}
	if err := p.register(j); err != nil {
		return nil, err
	}
	ack, err := p.publish(ctx, msg, info.stream)
	if err != nil {
		p.forget(j)
		return nil, err
	}
	j.Seq = ack.Sequence
	p.submitted.Add(1)
	j.stopMu.Lock()
	j.stop = context.AfterFunc(ctx, func() { j.Cancel(ctx.Err()) })
	j.stopMu.Unlock()
	if j.resolved.Load() { // its result came before its ack
		j.stop()
	}
	return j, nil
}

// jobType returns what the producer knows of a job type's stream, looking
// it up (and creating it, unless NoCreate) on first use.
func (p *Producer) jobType(ctx context.Context, jobType string) (*jobTypeInfo, error) {
	if v, ok := p.types.Load(jobType); ok {
		return v.(*jobTypeInfo), nil
	}
	if err := checkJobType(jobType); err != nil {
		return nil, err
	}
	s, err := p.cfg.jobStream(ctx, p.js, jobType)
	if err != nil {
		return nil, err
	}
	info := &jobTypeInfo{subject: p.cfg.JobSubject(jobType), stream: s.CachedInfo().Config.Name, limit: jobMessageLimit(s, p.nc.MaxPayload())}
	v, _ := p.types.LoadOrStore(jobType, info)
	return v.(*jobTypeInfo), nil
}

// publish stores a job's message (see publishStored). A duplicate on the
// first attempt is another submission's job; on a later one, this
// submission's earlier attempt, stored but whose ack was lost.
func (p *Producer) publish(ctx context.Context, msg *nats.Msg, stream string) (*jetstream.PubAck, error) {
	ack, attempts, err := publishStored(ctx, p.js, msg, stream, p.cfg.Logger)
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, fmt.Errorf("%w: job %s may or may not have been stored: %w", cancelled(ctx.Err()), msg.Header.Get(hdrJob), err)
	case err != nil:
		return nil, err
	case ack.Duplicate && attempts == 1:
		return nil, fmt.Errorf("%w: job %s was submitted within the last %v", ErrDuplicateJob, msg.Header.Get(hdrJob), p.cfg.Duplicates)
	}
	return ack, nil
}

// register adds j to the pending jobs.
func (p *Producer) register(j *Job) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("%w: producer %s is closed", procpool.ErrShuttingDown, p.id)
	}
	if _, dup := p.pending[j.ID]; dup {
		return fmt.Errorf("%w: job %s is pending", ErrDuplicateJob, j.ID)
	}
	p.pending[j.ID] = j
	return nil
}

// forget removes j from the pending jobs, if it is there.
func (p *Producer) forget(j *Job) {
	p.mu.Lock()
	if p.pending[j.ID] == j {
		delete(p.pending, j.ID)
		p.signalIdle()
	}
	p.mu.Unlock()
}

// signalIdle wakes Close when the last pending job is gone. p.mu is held.
func (p *Producer) signalIdle() {
	if p.closed && len(p.pending) == 0 && p.idle != nil {
		close(p.idle)
		p.idle = nil
	}
}

// resolved counts a job's outcome.
func (p *Producer) resolved(err error) {
	if err == nil {
		p.succeeded.Add(1)
	} else {
		p.failed.Add(1)
	}
}

// ProducerStats counts a producer's jobs.
type ProducerStats struct {
	Submitted  uint64 // jobs stored in their streams
	Succeeded  uint64 // jobs resolved with a result
	Failed     uint64 // jobs resolved with an error (cancellations included)
	Pending    int    // jobs submitted and not resolved
	Duplicates uint64 // results discarded: a job's second result, or one for a job no longer pending
}

// Stats returns the producer's counts.
func (p *Producer) Stats() ProducerStats {
	p.mu.Lock()
	n := len(p.pending)
	p.mu.Unlock()
	return ProducerStats{
		Submitted: p.submitted.Load(), Succeeded: p.succeeded.Load(), Failed: p.failed.Load(),
		Pending: n, Duplicates: p.duplicates.Load(),
	}
}

// Close stops the producer: Submit fails with procpool.ErrShuttingDown,
// and pending jobs may still receive their results while ctx allows. Then
// the jobs still pending fail with an error matching
// procpool.ErrShuttingDown, the producer stops receiving results and
// deletes its result consumer; Close returns ctx's error if it ended
// first. It does not close the connection.
func (p *Producer) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	var idle chan struct{}
	if len(p.pending) > 0 {
		idle = make(chan struct{})
		p.idle = idle
	}
	p.mu.Unlock()

	var err error
	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	p.stopConsuming()
	p.mu.Lock()
	left := p.pending
	p.pending = map[string]*Job{}
	p.mu.Unlock()
	for _, j := range left {
		j.resolve(nil, fmt.Errorf("%w: producer %s closed before the job's result arrived", procpool.ErrShuttingDown, p.id), "", 0)
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if derr := p.js.DeleteConsumer(dctx, p.cfg.ResultStream(), resultConsumer(p.id)); derr != nil && !errors.Is(derr, jetstream.ErrConsumerNotFound) {
		err = errors.Join(err, fmt.Errorf("distributed: delete result consumer of producer %s: %w", p.id, derr))
	}
	return err
}
