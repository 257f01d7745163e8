package actors

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/sharedmem"
)

// maxDetail bounds the detail kept from an error response's payload.
const maxDetail = 64 << 10

// errCallerDecides is what the link answers a job with that its caller's
// context resolves (it is about to end): the job's slot is freed, the job
// left for the context's watcher.
var errCallerDecides = errors.New("left to the caller's context")

// answer settles the job a response is for. It returns an error only for a
// protocol violation, which kills the link: a response for a job that is
// not running (never sent, or answered already), or a shared result outside
// the worker's half of the region. The job then stays in the table, for
// the worker's end to settle.
func (l *link) answer(m *codec.Message) error {
	return l.answerTaken(m, nil)
}

// answerTaken is answer, with what the table held for m taken out
// already when pre is not nil (answerBatch takes a frame's at once); on a
// protocol violation it puts that back. With pre, a Map item's outcome is
// gathered for answerBatch to deliver with its job's others (gather).
func (l *link) answerTaken(m *codec.Message, pre *taken) error {
	var (
		shared []byte // the result's bytes in the shared region
		lost   bool   // the result went with the shared memory region
	)
	if m.Shared {
		b, err := l.sharedResult(m)
		switch {
		case errors.Is(err, sharedmem.ErrClosed):
			lost = true
		case err != nil:
			if pre != nil && pre.ok {
				l.table.restore([]codec.Message{*m}, []taken{*pre})
			}
			return err
		}
		shared = b
	}
	var (
		e  entry
		ok bool
	)
	if pre != nil {
		e, ok = pre.e, pre.ok
	} else {
		e, ok = l.table.take(m.ID)
	}
	j := e.j
	if !ok {
		if m.Shared && !lost {
			l.shm.Consumed() // ends the copy Response began
		}
		return fmt.Errorf("%w: a response for job %d, which is not running", errProtocol, m.ID)
	}
	if e.item < 0 || len(j.batch.payloads[e.item]) >= sharedmem.MinPayload {
		l.releaseShared(m.ID) // the request's block, if it had one (a batch's small items share theirs: itemBlock)
	}
	if l.pingSeq.Load() != 0 {
		l.answered.Store(time.Now().UnixNano()) // a sign of life
	}
	var (
		result []byte
		err    error
	)
	switch {
	case lost:
		err = &CrashError{Cause: ErrWorkerCrashed, Reason: "its result was lost with its shared memory region", PID: l.pid, JobID: m.ID, Attempt: j.attempt}
	case m.ErrCode == codec.CodeDeadline && j.byDeadline:
		// The worker stopped at its caller's deadline, not JobTimeout's:
		// the job ends with its caller's context, cause and all.
		if err = errCallerDecides; j.ctx.Err() != nil {
			err = cancelledBy(j.ctx)
		}
	case m.ErrCode != "":
		re := &RemoteError{Code: m.ErrCode, Message: m.ErrMessage}
		if !m.Shared && m.PayloadKind == Blob && len(m.Payload) > 0 {
			re.Detail = string(m.Payload[:min(len(m.Payload), maxDetail)])
		}
		err = re
	case m.PayloadKind != j.Kind:
		err = fmt.Errorf("%w: a %s request answered with a %s result", ErrBadResult, j.Kind, m.PayloadKind)
	case m.Shared && j.Kind == Value && codec.CheckValue(shared) != nil:
		// A frame's value is checked by the codec; one in the region here.
		err = fmt.Errorf("%w: the result in shared memory is not one msgpack value", ErrBadResult)
	case m.Shared:
		result = bytes.Clone(shared)
	default:
		// The reader's buffer is reused; a batch's frame, even one of its
		// own, is not to be kept alive by one item's result.
		if result = m.Payload; (!l.r.rd.Owned() || e.item >= 0) && len(result) > 0 {
			result = l.keep(result)
		}
	}
	if m.Shared && !lost {
		l.shm.Consumed() // the worker may reuse the memory now
		l.counters.sharedResults.Add(1)
	}
	if m.ErrCode == codec.CodePanic {
		// The worker exits after a panic: dispatch nothing more to it.
		l.table.close()
		l.owner.leaving(err)
	}
	if pre != nil && e.item >= 0 {
		l.gather(e, result, err)
		return nil
	}
	l.answeredEntry(e, result, err)
	return nil
}

// answerBatch settles every response of a batch response.
func (l *link) answerBatch(m *codec.Message) error {
	if !l.features.Has(codec.FeatureBatch) {
		return fmt.Errorf("%w: a batch response from a worker that did not negotiate batches", errProtocol)
	}
	// The small results are copied out of the frame into one allocation.
	n := 0
	for i := range m.Items {
		if it := &m.Items[i]; it.ErrCode == "" && !it.Shared && len(it.Payload) <= slabbed {
			n += len(it.Payload)
		}
	}
	l.slab = make([]byte, 0, n)
	defer func() { l.slab = nil }()
	l.found = l.table.takeEach(m.Items, l.found)
	defer clear(l.found)
	// The items' outcomes go to their Map jobs a job at a time (gather),
	// when the frame's items change job and at its end, even a protocol
	// error's: those answered before it are settled.
	defer l.flushItems()
	for i := range m.Items {
		if err := l.answerTaken(&m.Items[i], &l.found[i]); err != nil {
			l.table.restore(m.Items[i+1:], l.found[i+1:]) // for the worker's end
			return err
		}
	}
	return nil
}

// slabbed is the largest result keep copies into a slab: a caller that
// keeps one small result keeps its slab alive, so a slab holds no large
// one.
const slabbed = 4 << 10

// keep returns a copy of a result read from a frame: in the slab of the
// batch response being read, when it is small and the slab has room, else
// a copy of its own. Results in one slab keep it alive together, as long
// as one is kept.
func (l *link) keep(result []byte) []byte {
	n := len(l.slab)
	if len(result) > slabbed || cap(l.slab)-n < len(result) {
		return bytes.Clone(result)
	}
	l.slab = append(l.slab, result...)
	return l.slab[n : n+len(result) : n+len(result)]
}

// share copies a large request payload into the worker's shared memory
// region, if the worker mapped one and it has room, and returns its place.
// The memory is the worker's until its answer is read.
func (l *link) share(id uint64, payload []byte) (codec.Span, bool) {
	if len(payload) < sharedmem.MinPayload || !l.shared.Load() ||
		!requestFits(l.jobType, len(payload), l.peerLimit.Load()) {
		return codec.Span{}, false // too large for the worker: refused when written
	}
	off, dst, ok := l.shm.Reserve(id, len(payload))
	if !ok {
		return codec.Span{}, false
	}
	copy(dst, payload)
	l.shm.Copied()
	l.counters.sharedRequests.Add(1)
	return codec.Span{Offset: off, Length: uint64(len(payload))}, true
}

// releaseShared frees the shared memory block of request id, if it has one.
func (l *link) releaseShared(id uint64) {
	if l.shm != nil {
		l.shm.Release(id)
	}
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

// closeShared unmaps the shared memory region, if any, once the copies in
// progress end; later requests travel in frames.
func (l *link) closeShared() {
	if l.shm != nil {
		l.shm.Close()
	}
}
