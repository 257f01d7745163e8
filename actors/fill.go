package actors

import (
	"context"
	"fmt"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/sharedmem"
)

// CallFill runs one job whose payload of n bytes fill writes, and waits
// for its result, as Call does. When the job goes straight to a worker
// whose shared memory region has room for it, fill writes into the region
// itself: the payload is built where the worker reads it, never copied
// (Call copies a large payload into the region once). Otherwise fill writes
// into a buffer of the job's own.
//
// fill is called once, on the calling goroutine, with a slice of exactly n
// bytes that it must fill whole and must not keep. A VALUE payload it
// writes must be one msgpack value (ErrBadPayload otherwise). A job whose
// payload was built in a worker's region cannot be retried on another
// worker (Policy.Jobs.MaxAttempts): it went with the worker.
func (h *Router) CallFill(ctx context.Context, kind PayloadKind, n int, fill func(p []byte)) ([]byte, error) {
	if n < 0 {
		return nil, fmt.Errorf("%w: a payload of %d bytes", ErrBadPayload, n)
	}
	j, err := h.admitSize(ctx, kind, n)
	if err != nil {
		return nil, err
	}
	w, due := h.board.take(requestSize(h.gate.jobType, n))
	if due {
		h.gate.send((*budgetSpent)(w))
	}
	if w == nil || !h.startFilled(ctx, j, w, n, fill) {
		// The router's queue, or a worker without room: a buffer of its own.
		buf := make([]byte, n)
		fill(buf)
		if err := checkValue(kind, buf); err != nil {
			if w != nil && !h.board.finish(w) { // the slot it took goes back
				h.gate.send((*slotFreed)(w))
			}
			j.resolve(nil, err)
			return nil, err
		}
		j.Payload = buf
		if w == nil {
			h.gate.send(j)
		} else if h.startOn(j, w, directSelfRead) {
			w.link.readFor(j)
		}
	}
	return j.Wait(ctx)
}

// startFilled starts j on w with its payload built in w's shared memory
// region, and reads its answer; false, changing nothing, when w's region
// has no room for it (or w has none).
func (h *Router) startFilled(ctx context.Context, j *Job, w *workerState, n int, fill func([]byte)) bool {
	l := w.link
	if n < sharedmem.MinPayload || !l.shared.Load() || !requestFits(l.jobType, n, l.peerLimit.Load()) {
		return false
	}
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, l.interrupt)
		defer stop()
	}
	j.worker = w
	j.attempt++
	j.noRetry = true
	j.dispatched.Store(j.accepted.UnixNano())
	if j.obs != nil {
		j.obs.Dispatched(j.attempt, w.proc)
	}
	if !l.dispatchFilled(j, n, fill) {
		j.worker, j.noRetry = nil, false
		j.attempt--
		return false
	}
	l.readFor(j)
	return true
}

// dispatchFilled registers j and sends its request with the payload fill
// builds in the shared memory region; false, undoing the registration,
// when the region has no room or the link takes no jobs.
func (l *link) dispatchFilled(j *Job, n int, fill func([]byte)) bool {
	budget, meta := l.budget(j), l.meta(j) // before the table: see dispatch
	id, ok := l.table.add(j, l)
	if !ok {
		return false
	}
	off, dst, ok := l.shm.Reserve(id, n)
	if !ok {
		_, _ = l.table.drop(id, j)
		return false
	}
	fill(dst)
	bad := checkValue(j.Kind, dst)
	l.shm.Copied()
	if bad != nil {
		_, _ = l.table.drop(id, j)
		l.releaseShared(id)
		l.owner.answered(j, nil, bad)
		return true
	}
	l.counters.sharedRequests.Add(1)
	if l.timeout > 0 {
		j.timer.Store(timerFor(l, j, id, j.attempt))
	}
	o := outgoing{kind: codec.KindRequest, id: id, job: j, timeout: budget, pkind: j.Kind,
		span: codec.Span{Offset: off, Length: uint64(n)}, shared: true, meta: meta}
	took, refused := l.w.tryRequest(&o)
	switch {
	case !took:
		l.w.enqueue(o)
	case refused != nil:
		l.refuse(id, j, refused)
	}
	return true
}

// checkValue refuses a VALUE payload that is not one msgpack value.
func checkValue(kind PayloadKind, p []byte) error {
	if kind != Value {
		return nil
	}
	if err := codec.CheckValue(p); err != nil {
		return fmt.Errorf("%w: %w", ErrBadPayload, err)
	}
	return nil
}
