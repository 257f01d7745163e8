package actors

import (
	"context"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// maxEnvelope bounds the bytes a request frame adds to its payload.
const maxEnvelope = 64 + 255

// requestSize is the most a request frame of a payload of n bytes for
// jobType can take.
func requestSize(jobType string, n int) int64 {
	return int64(n + len(jobType) + maxEnvelope)
}

// requestFits reports whether the request frame of a payload of n bytes for
// jobType stays within limit.
func requestFits(jobType string, n int, limit int64) bool {
	return requestSize(jobType, n) <= limit
}

// start binds j to w and sends its request as mode says. It reports false,
// undoing what it did, when w takes no more jobs.
func start(j *Job, w *workerState, mode sendMode) bool {
	j.worker = w
	j.attempt++
	prev := j.dispatched.Load()
	if mode == viaWriter {
		j.dispatched.Store(time.Now().UnixNano())
	} else {
		j.dispatched.Store(j.accepted.UnixNano()) // the fast path: no wait
	}
	if j.obs != nil {
		// Before the request goes out: its answer may resolve the job at
		// once. A dispatch that fails leaves one event too many.
		j.obs.Dispatched(j.attempt, w.proc)
	}
	if !w.link.dispatch(j, mode) {
		j.worker = nil
		j.attempt--
		j.dispatched.Store(prev)
		return false
	}
	return true
}

// accept takes a job into the queue. Jobs from Router.Submit were admitted
// by the gate already; jobs sent straight to the PID are admitted here,
// without blocking.
func (r *routerActor) accept(ctx actor.Context, j *Job) {
	if j.gate == nil {
		if j.done == nil {
			j.done = make(chan struct{})
		}
		j.replyTo, j.system = ctx.Sender(), r.system
		if err := r.gate.admit(context.Background(), j, false); err != nil {
			j.resolve(nil, err)
			return
		}
	}
	switch {
	case j.resolved(): // cancelled on its way here
	case r.gaveUp:
		j.resolve(nil, r.unavailableErr())
	case r.aborted != nil:
		j.resolve(nil, r.aborted)
	case r.dropping != nil:
		j.resolve(nil, r.dropping)
	default:
		r.queue.pushBack(j)
		r.dispatch()
	}
}

// unavailableErr is what jobs fail with while the router gives up: it
// wraps the last worker failure, which errors.As finds.
func (r *routerActor) unavailableErr() error {
	err := fmt.Errorf("%w: %q gave up restarting workers; retry after %s",
		ErrUnavailable, r.spec.Name, r.restarts.AvailableAt().Format(time.RFC3339Nano))
	if r.lastCrash != nil {
		err = fmt.Errorf("%w; the last failure: %w", err, r.lastCrash)
	}
	return err
}

// dispatch hands queued jobs to free slots, first come first served. A job
// that no live worker could ever take (too large for every one of them)
// fails with ErrPayloadTooLarge; of a Map job, only the items too large
// fail so, and the others wait for a slot.
func (r *routerActor) dispatch() {
	for r.queue.len() > 0 {
		j := r.queue.peekFront()
		if j.resolved() {
			r.queue.popFront()
			continue
		}
		w, due := r.board.takeFor(requestSize(r.spec.Name, j.payloadLen()))
		if w == nil {
			largest, err := r.unfit(j)
			switch {
			case err == nil:
				return
			case j.batch != nil:
				if j.batch.failUnfit(r.spec.Name, largest) {
					r.queue.popFront()
					j.resolve(nil, nil)
				}
			default:
				r.queue.popFront()
				j.resolve(nil, err)
			}
			continue
		}
		r.queue.popFront()
		r.run(j, w, due)
	}
}

// unfit returns ErrPayloadTooLarge, and the largest frame limit of the
// live workers, when j's request fits no worker: every live worker is
// ready and announced a smaller frame limit.
func (r *routerActor) unfit(j *Job) (int64, error) {
	need := requestSize(r.spec.Name, j.payloadLen())
	largest, ready := int64(0), 0
	for _, w := range r.workers {
		switch w.phase {
		case PhaseStarting:
			return 0, nil // its limit is not known yet
		case PhaseReady:
			ready++
			largest = max(largest, w.limit)
		}
	}
	if ready == 0 || largest >= need {
		return 0, nil
	}
	return largest, tooLargeErr(r.spec.Name, j.payloadLen(), largest)
}

// tooLargeErr is the error of a payload of n bytes that fits no worker of
// jobType, the largest frame of which is limit.
func tooLargeErr(jobType string, n int, limit int64) error {
	return fmt.Errorf("%w: %d bytes, and the largest frame a worker of %q takes is %d bytes",
		ErrPayloadTooLarge, n, jobType, limit)
}

// run starts j on a slot of w taken for it; due says the slot was w's
// last. If w takes no more jobs, j goes back to the front of the queue.
func (r *routerActor) run(j *Job, w *workerState, due bool) {
	if due {
		r.recycle(w, "it ran its last job")
	}
	if !start(j, w, viaWriter) {
		r.board.abandon(w)
		r.queue.pushFront(j)
	}
}

// fill runs queued jobs on w's handed slots and publishes the rest.
func (r *routerActor) fill(w *workerState) {
	for r.board.handed(w) > 0 {
		j := r.queue.removeFirst(func(j *Job) bool {
			return !j.resolved() && r.board.fits(w, requestSize(r.spec.Name, j.payloadLen()))
		})
		if j == nil {
			r.board.publish(w)
			continue
		}
		ok, due := r.board.place(w)
		if !ok {
			r.queue.pushFront(j)
			return
		}
		r.run(j, w, due)
	}
}

// onSlotFreed acts on a job's end that the board could not absorb: a slot
// handed to the router (jobs were queued), or a closed worker's last jobs.
func (r *routerActor) onSlotFreed(w *workerState) {
	if r.workers[w.pid.Id] != w {
		return // a worker already gone
	}
	if w.phase == PhaseReady {
		r.fill(w)
		return
	}
	r.stopIfIdle(w)
}

// onCancel drops a cancelled job from the queue, or asks its worker to
// stop it.
func (r *routerActor) onCancel(j *Job) {
	if r.queue.remove(j) {
		return
	}
	if l := j.link.Load(); l != nil {
		l.cancel(j)
	}
}
