package distributed

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/procpool/procpool"
)

// delivery is one delivery of a job to this node.
type delivery struct {
	m        jetstream.Msg
	id       string
	producer string // the producer id its reply subject names; "" if it names none
	kind     procpool.PayloadKind
	n        int    // which delivery, from 1
	seq      uint64 // the job's sequence number in its stream
	deadline time.Time
}

// key names the job in the dead-letter stream's de-duplication: its type
// and id, or its sequence number if its id is unusable.
func (d *delivery) key(jobType string) string {
	if validJobID(d.id) {
		return jobType + ":" + d.id
	}
	return jobType + ":seq-" + strconv.FormatUint(d.seq, 10)
}

// run handles one delivery, from its arrival to its acknowledgement (or
// its hand-back), and then gives its capacity token back.
//
// The order of the steps is what makes a result exactly-once and a job
// never lost: the job runs; its result (or error) is stored in the result
// stream; only then is the job acknowledged. A node that dies before the
// ack leaves the job to be redelivered after the ack wait; the result of
// the redelivery is then a duplicate, which the result stream (within its
// de-duplication window) and the producer (after it) discard. While the
// job runs and its result is published, in-progress acks keep the server
// from redelivering it.
func (b *binding) run(m jetstream.Msg) {
	defer b.jobs.Done()
	defer b.release(1)
	b.held.Add(1)
	defer b.held.Add(-1)
	b.received.Add(1)

	stop := b.keepAlive(m)
	defer stop()
	d, err := b.parse(m)
	if d.n > 1 {
		b.redelivered.Add(1)
	}
	switch {
	case err != nil:
		b.giveUp(d, err)
		return
	case d.n > b.maxDeliver:
		b.giveUp(d, fmt.Errorf("%w: delivery %d of at most %d; the nodes of the earlier ones did not report back",
			ErrNodeLost, d.n, b.maxDeliver))
		return
	}
	res, err := b.call(d)
	switch {
	case err == nil:
		b.finish(d, res, nil)
	case b.n.ctx.Err() != nil: // a hard stop cancelled it
		b.handBack(d, err)
	case errors.Is(err, procpool.ErrPoisonJob):
		b.giveUp(d, err)
	case errors.Is(err, procpool.ErrShuttingDown):
		// The router is stopping, and not by the node's Shutdown: this
		// node can run nothing more of the type. Stop pulling, and hand
		// the job back at once for another node.
		b.log.Warn("the router is shutting down; the node stops pulling jobs of its type", "error", err)
		b.halt()
		b.handBack(d, err)
	case retryable(err):
		if errors.Is(err, procpool.ErrUnavailable) {
			b.unavailable.Store(true)
		}
		if d.n >= b.maxDeliver {
			b.giveUp(d, err)
		} else {
			b.handBack(d, err)
		}
	default:
		b.finish(d, nil, err)
	}
}

// retryable reports whether a job that failed with err may succeed if run
// again: its worker died (and the pool's own retries, if any, were used
// up), or the pool could not take it.
func retryable(err error) bool {
	return errors.Is(err, procpool.ErrWorkerCrashed) || errors.Is(err, procpool.ErrUnavailable) ||
		errors.Is(err, procpool.ErrQueueFull)
}

// parse reads a delivery's metadata and headers. A delivery whose job
// cannot be run is returned with an error, and with its producer unset
// if its reply subject is not one of a producer (a node publishes results
// nowhere else).
func (b *binding) parse(m jetstream.Msg) (*delivery, error) {
	d := &delivery{m: m}
	meta, err := m.Metadata()
	if err != nil {
		return d, fmt.Errorf("%w: malformed job message: %w", procpool.ErrBadPayload, err)
	}
	d.n, d.seq = int(meta.NumDelivered), meta.Sequence.Stream
	h := m.Headers()
	d.id = h.Get(hdrJob)
	if p, ok := strings.CutPrefix(h.Get(hdrReply), b.replyPfx); ok && validToken(p) {
		d.producer = p
	}
	if dl := h.Get(hdrDeadline); dl != "" {
		var ok bool
		if d.deadline, ok = parseDeadline(dl); !ok {
			return d, fmt.Errorf("%w: malformed job message: deadline %q", procpool.ErrBadPayload, dl)
		}
	}
	switch {
	case !validJobID(d.id):
		return d, fmt.Errorf("%w: malformed job message: job id %q", procpool.ErrBadPayload, d.id)
	case d.producer == "":
		return d, fmt.Errorf("%w: malformed job message: reply subject %q is no producer's", procpool.ErrBadPayload, h.Get(hdrReply))
	}
	if d.kind, err = parseKind(h.Get(hdrKind)); err != nil {
		return d, fmt.Errorf("%w: malformed job message: %w", procpool.ErrBadPayload, err)
	}
	return d, nil
}

// call runs the job on the router and waits for its outcome. A job whose
// deadline has passed is not run.
func (b *binding) call(d *delivery) ([]byte, error) {
	ctx := b.n.ctx
	if x := b.n.opts.ExtractHeaders; x != nil {
		ctx = x(ctx, d.m.Headers())
	} else {
		ctx = extractTraceContext(ctx, d.m.Headers())
	}
	if !d.deadline.IsZero() {
		if !time.Now().Before(d.deadline) {
			return nil, cancelled(fmt.Errorf("its deadline passed before it ran: %w", context.DeadlineExceeded))
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.deadline)
		defer cancel()
	}
	j, err := b.router.Submit(ctx, d.kind, d.m.Data())
	if err != nil {
		return nil, err
	}
	return j.Wait(ctx)
}

// finish answers the job with its result or error and acknowledges it. A
// result too large for the result stream is answered with an error
// matching procpool.ErrPayloadTooLarge instead.
func (b *binding) finish(d *delivery, res []byte, jobErr error) {
	if jobErr == nil {
		if size := len(res) + resultHeaderRoom; int64(size) > b.n.resLimit {
			jobErr = fmt.Errorf("%w: the result of %d bytes does not fit in a result message of at most %d bytes",
				procpool.ErrPayloadTooLarge, len(res), b.n.resLimit)
			res = nil
		}
	}
	if err := b.answer(d, res, jobErr, false); err != nil {
		b.handBack(d, err)
		return
	}
	if jobErr == nil {
		b.succeeded.Add(1)
	} else {
		b.failed.Add(1)
	}
	b.ack(d)
}

// giveUp moves the job to the dead-letter subject with its last error,
// answers the producer with that error, and acknowledges the job. If
// either cannot be stored, the job is handed back and given up again at
// its next delivery (the dead-letter stream de-duplicates).
func (b *binding) giveUp(d *delivery, cause error) {
	msg := &nats.Msg{Subject: b.deadSubj, Data: d.m.Data(), Header: nats.Header{}}
	for k, v := range d.m.Headers() {
		msg.Header[k] = v
	}
	msg.Header.Set(hdrJobType, b.jobType)
	msg.Header.Set(hdrNode, b.n.opts.Name)
	msg.Header.Set(hdrDelivery, strconv.Itoa(d.n))
	setError(msg.Header, cause, true)
	msg.Header.Set(jetstream.MsgIDHeader, d.key(b.jobType))
	if _, _, err := publishStored(b.n.ctx, b.n.js, msg, b.n.cfg.DeadLetterStream(), b.log); err != nil {
		b.log.Warn("could not store a dead letter; handing the job back", "job", d.id, "error", err)
		b.handBack(d, err)
		return
	}
	b.log.Warn("job moved to the dead-letter subject", "job", d.id, "delivery", d.n, "error", cause)
	if d.producer != "" {
		if err := b.answer(d, nil, cause, true); err != nil {
			b.handBack(d, err)
			return
		}
	}
	b.dead.Add(1)
	b.ack(d)
}

// resultHeaderRoom bounds the headers of a result message.
const resultHeaderRoom = 512

// answer stores the job's result, or its error, in the result stream, on
// its producer's subject. The message id (producer and job) makes the
// first result stored win within the de-duplication window.
func (b *binding) answer(d *delivery, res []byte, jobErr error, dead bool) error {
	msg := &nats.Msg{Subject: b.replyPfx + d.producer, Data: res, Header: nats.Header{}}
	msg.Header.Set(hdrJob, d.id)
	msg.Header.Set(hdrNode, b.n.opts.Name)
	msg.Header.Set(hdrDelivery, strconv.Itoa(d.n))
	if jobErr != nil {
		setError(msg.Header, jobErr, dead)
	}
	msg.Header.Set(jetstream.MsgIDHeader, d.producer+":"+d.id)
	_, _, err := publishStored(b.n.ctx, b.n.js, msg, b.n.cfg.ResultStream(), b.log)
	return err
}

// handBack gives the job back to its stream unacknowledged: at once if the
// node is stopping hard or its router is shutting down (another node
// should take it), else after the job type's backoff delay for this
// delivery.
//
// "At once" waits for the binding's fetch loop to end (it has been
// halted; its last pull request ends within PollWait): a job handed back
// while this node's pull request is still open at the server could be
// delivered straight back to it, and bounce until its deliveries ran out.
func (b *binding) handBack(d *delivery, why error) {
	var err error
	switch {
	case b.n.ctx.Err() != nil || errors.Is(why, procpool.ErrShuttingDown):
		b.abandoned.Add(1)
		<-b.fetched
		err = d.m.Nak()
	default:
		b.retried.Add(1)
		delay := b.backoff.Delay(d.n, rand.Float64())
		b.log.Debug("job handed back", "job", d.id, "delivery", d.n, "delay", delay, "error", why)
		err = d.m.NakWithDelay(delay)
	}
	if err != nil {
		b.log.Debug("nak", "job", d.id, "error", err)
	}
}

func (b *binding) ack(d *delivery) {
	if err := d.m.Ack(); err != nil {
		b.log.Debug("ack", "job", d.id, "error", err)
	}
}

// keepAlive sends an in-progress ack every third of the ack wait until the
// returned func is called.
func (b *binding) keepAlive(m jetstream.Msg) (stop func()) {
	interval := b.ackWait / 3
	var mu sync.Mutex
	stopped := false
	mu.Lock()
	defer mu.Unlock()
	var t *time.Timer
	t = time.AfterFunc(interval, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		_ = m.InProgress()
		t.Reset(interval)
	})
	return func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
	}
}
