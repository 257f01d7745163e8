package worker

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log"
	"sync"

	"github.com/procpool/procpool/codec"
)

// outBufferSize is the size of the buffer that coalesces responses.
const outBufferSize = 64 << 10

// readBufferSize buffers the host's frames: one read system call takes
// every request already in the pipe, header and body together.
const readBufferSize = 64 << 10

// outbox writes the worker's messages. Whoever queues a message while no one
// is writing becomes the writer: it writes every queued message into a
// buffer, flushes it once the queue is empty, and stops writing when the
// queue is still empty after the flush. A lone job thus writes its own
// response at once, with no hand-off to another goroutine, while under load
// the writer of the moment carries everyone's responses in few, large
// writes.
type outbox struct {
	mu      sync.Mutex
	cond    sync.Cond // signalled when writing ends
	queue   []*job
	spare   []*job
	writing bool
	closed  bool
	err     error      // first write error; nothing is written after it
	failed  chan error // receives err

	// Owned by the writer of the moment.
	bw     *bufio.Writer
	cw     *codec.Writer
	rb     *codec.Batch // batch responses, once FeatureBatch is negotiated
	resps  []*job       // the responses of the writeQueued of the moment
	shm    *region      // the shared memory region, if the host passed one
	msg    codec.Message
	logger *log.Logger
}

func (o *outbox) init(w io.Writer, logger *log.Logger) {
	o.cond.L = &o.mu
	o.failed = make(chan error, 1)
	o.bw = bufio.NewWriterSize(w, outBufferSize)
	o.cw = codec.NewWriter(o.bw, 0)
	o.logger = logger
}

// writeNow writes m and flushes; only for the handshake, before any send.
func (o *outbox) writeNow(m *codec.Message) error {
	if err := o.cw.Write(m); err != nil {
		return err
	}
	return o.bw.Flush()
}

// send queues j's message, and writes it and whatever else is queued if no
// one else is writing. j belongs to the outbox from the call on.
func (o *outbox) send(j *job) {
	if o.enqueue(j) {
		o.drain()
	}
}

// sendAll is send of every job of jobs, queued together; jobs itself
// stays the caller's.
func (o *outbox) sendAll(jobs []*job) {
	o.mu.Lock()
	if o.closed || o.err != nil {
		o.mu.Unlock()
		for _, j := range jobs {
			releaseJob(j)
		}
		return
	}
	o.queue = append(o.queue, jobs...)
	if o.writing {
		o.mu.Unlock()
		return
	}
	o.writing = true
	o.mu.Unlock()
	o.drain()
}

// enqueue queues j's message and reports whether the caller has become the
// writer, who must then call drain. j belongs to the outbox from the call on.
func (o *outbox) enqueue(j *job) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed || o.err != nil {
		releaseJob(j)
		return false
	}
	o.queue = append(o.queue, j)
	if o.writing {
		return false
	}
	o.writing = true
	return true
}

// drain writes the queue until it stays empty after a flush; only the
// writer calls it.
func (o *outbox) drain() {
	o.mu.Lock()
	for {
		batch := o.queue
		o.queue = o.spare[:0]
		o.mu.Unlock()
		err := o.writeQueued(batch)
		clear(batch)
		o.mu.Lock()
		o.spare = batch[:0]
		if err == nil && len(o.queue) > 0 {
			continue
		}
		if err == nil {
			o.mu.Unlock()
			err = o.bw.Flush()
			o.mu.Lock()
			if err == nil && len(o.queue) > 0 {
				continue
			}
		}
		if err != nil {
			o.err = err
			o.failed <- err
			for i, q := range o.queue {
				releaseJob(q)
				o.queue[i] = nil
			}
			o.queue = o.queue[:0]
		}
		o.writing = false
		o.cond.Broadcast()
		o.mu.Unlock()
		return
	}
}

// writeQueued writes every job's message into the buffer, releasing the
// jobs, and returns the first write error. With FeatureBatch, the
// responses among them go out together in batch responses, after the other
// messages (pongs, chunks; a job's chunks are all queued before its
// response, so they still precede it); a lone response goes out as a plain
// one.
func (o *outbox) writeQueued(batch []*job) error {
	var err error
	if o.rb == nil {
		for _, j := range batch {
			if err == nil {
				err = o.write(j)
			}
			releaseJob(j)
		}
		return err
	}
	resps := o.resps[:0]
	for _, j := range batch {
		if j.kind == codec.KindResponse {
			resps = append(resps, j)
			continue
		}
		if err == nil {
			err = o.write(j)
		}
		releaseJob(j)
	}
	if err == nil {
		if len(resps) == 1 {
			err = o.write(resps[0])
		} else if len(resps) > 1 {
			err = o.writeResponses(resps)
		}
	}
	for i, j := range resps {
		releaseJob(j)
		resps[i] = nil
	}
	o.resps = resps[:0]
	return err
}

// writeResponses writes the responses of jobs as batch responses: as few
// frames as the host's frame limit and codec.MaxBatch allow.
func (o *outbox) writeResponses(jobs []*job) error {
	for _, j := range jobs {
		o.message(j)
		err := o.rb.Add(&o.msg)
		if errors.Is(err, codec.ErrBatchFull) {
			if err = o.rb.Flush(); err != nil {
				return err
			}
			err = o.rb.Add(&o.msg)
		}
		if errors.Is(err, codec.ErrFrameTooLarge) {
			o.shrink(j, &o.msg)
			if err = o.rb.Add(&o.msg); errors.Is(err, codec.ErrBatchFull) {
				if err = o.rb.Flush(); err != nil {
					return err
				}
				err = o.rb.Add(&o.msg)
			}
			if errors.Is(err, codec.ErrFrameTooLarge) {
				o.logger.Printf("worker: dropping the response to job %d: %v", j.id, err)
				err = nil
			}
		}
		o.msg = codec.Message{}
		if err != nil {
			return err
		}
	}
	return o.rb.Flush()
}

// message sets o.msg to j's message, its result moved into the shared
// region when it is large and the region has room.
func (o *outbox) message(j *job) {
	m := &o.msg
	*m = codec.Message{
		Kind:        j.kind,
		ID:          j.id,
		ErrCode:     j.code,
		ErrMessage:  j.msg,
		PayloadKind: j.pk,
		Payload:     j.result,
	}
	if o.shm != nil && j.code == "" && (j.kind == codec.KindResponse || j.kind == codec.KindChunk) {
		o.share(m)
	}
}

// shrink replaces m, a response too large for the host's frame limit, by
// what fits: an error without its detail payload, or a too_large error for
// a result.
func (o *outbox) shrink(j *job, m *codec.Message) {
	if m.ErrCode != "" {
		m.PayloadKind, m.Payload = codec.Blob, nil // the error without its detail
		return
	}
	m.ErrCode = codec.CodeTooLarge
	m.ErrMessage = fmt.Sprintf("the response (%d bytes of payload) exceeds the host's frame limit of %d bytes", len(j.result), o.cw.MaxFrame())
	m.PayloadKind, m.Payload = codec.Blob, nil
}

// write writes one job's message. A response too large for the host's
// limit is replaced by a too_large error, or an error by itself without its
// detail: codec.Writer checks the size before writing anything.
func (o *outbox) write(j *job) error {
	o.message(j)
	m := &o.msg
	err := o.cw.Write(m)
	if errors.Is(err, codec.ErrFrameTooLarge) && m.Kind == codec.KindResponse {
		o.shrink(j, m)
		err = o.cw.Write(m)
	}
	if errors.Is(err, codec.ErrFrameTooLarge) {
		o.logger.Printf("worker: dropping the %s to job %d: %v", m.Kind, j.id, err)
		err = nil
	}
	*m = codec.Message{}
	return err
}

// sharedEnvelope bounds what a response's frame holds besides its payload:
// only results that would fit in a frame go through the shared region, so
// that the region changes how a result travels, never whether it may.
const sharedEnvelope = 1 << 10

// share moves a large result of m into the shared region, if it has room.
func (o *outbox) share(m *codec.Message) {
	n := len(m.Payload)
	if n < minSharedPayload || n > o.cw.MaxFrame()-sharedEnvelope {
		return
	}
	off, dst, ok := o.shm.Reserve(n)
	if !ok {
		return
	}
	copy(dst, m.Payload)
	m.Shared, m.Span, m.Payload = true, codec.Span{Offset: off, Length: uint64(n)}, nil
}

// close waits for the writer of the moment to finish, after which nothing
// more is written.
func (o *outbox) close() {
	o.mu.Lock()
	o.closed = true
	for o.writing {
		o.cond.Wait()
	}
	o.mu.Unlock()
}
