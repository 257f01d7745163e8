package supervisor

import (
	"math"
	"time"
)

// Decision is what [Restarts.Failed] tells the router to do about one
// failure.
type Decision struct {
	// Directive is Restart or Stop (the decider's choice, within the
	// intensity limit), or Escalate when GaveUp is true.
	Directive Directive
	// Delay is how long to wait before replacing the worker (Restart), or
	// before a new worker may be started on demand (Stop). Zero when GaveUp.
	Delay time.Duration
	// GaveUp is true when the intensity limit was exceeded or the decider
	// said Escalate: the router must act on Policy.GiveUp (fail jobs fast
	// until AvailableAt, or escalate to its parent).
	GaveUp bool
	// AvailableAt is when the cool-down ends, if the job type is (still)
	// unavailable after this failure; zero otherwise.
	AvailableAt time.Time
	// RestartsInWindow is the number of failures inside the intensity
	// window, this one included (for a give-up, at most MaxRestarts+1).
	RestartsInWindow int
	// Consecutive is the number of consecutive failures, this one included,
	// since the last reset; it drives the backoff.
	Consecutive int
}

// Restarts is the restart bookkeeping of one job type (one per router): the
// OTP intensity window, the consecutive-failure count that drives the
// backoff, and the cool-down after a give-up.
//
// It is a plain state machine: it never reads the clock, starts no goroutine
// or timer and takes no lock. The router calls it from its own goroutine,
// passing the current time and a random number. Times should come from
// time.Now (monotonic readings); a time earlier than a previous one is
// tolerated (it is treated as no time having passed for the window).
//
// A Restarts counts failures of the job type, not of one worker: with
// several workers, their failures add up. Under AllForOne, report the
// failure that triggered the restart once; the siblings the router stops on
// purpose are not failures.
type Restarts struct {
	p Policy

	failures    []time.Time   // failure times still inside the window (at most MaxRestarts+1)
	consecutive int           // consecutive failures since the last reset
	lastFailure time.Time     // when the last failure was recorded
	lastDelay   time.Duration // the delay decided for it
	until       time.Time     // end of the cool-down; zero when none
}

// NewRestarts returns the bookkeeping for a job type governed by p, after
// [Policy.WithDefaults]. It panics if p is invalid: validate policies with
// [Policy.Validate] where the user supplies them.
func NewRestarts(p Policy) *Restarts {
	p = p.WithDefaults()
	if err := p.Validate(); err != nil {
		panic("supervisor.NewRestarts: " + err.Error())
	}
	return &Restarts{p: p}
}

// Policy returns the policy in force, with its defaults filled in.
func (r *Restarts) Policy() Policy { return r.p }

// SetPolicy puts p (after [Policy.WithDefaults]) in force from now on,
// keeping the failures recorded so far: a new window or intensity applies
// to them at the next decision. It panics if p is invalid, as
// [NewRestarts] does.
func (r *Restarts) SetPolicy(p Policy) {
	p = p.WithDefaults()
	if err := p.Validate(); err != nil {
		panic("supervisor.Restarts.SetPolicy: " + err.Error())
	}
	r.p = p
}

// Failed records a failure of a worker at now and decides what the router
// does, in this order:
//
//  1. If the job type is cooling down after a give-up (see [Restarts.Available]),
//     the failure is not recorded and the decision is Stop with Delay until
//     the end of the cool-down (and GaveUp false: the router already gave up).
//     Once the cool-down has ended, the history is forgotten first.
//  2. The decider maps f to a directive.
//  3. The consecutive count is reset if the previous failure's worker could
//     have been healthy for ResetAfter: now is at least ResetAfter past the
//     previous failure plus its backoff delay. Then the failure is counted
//     as consecutive and in the intensity window (Stop and Escalate count
//     too).
//  4. If the decider said Escalate, or the window now holds more than
//     MaxRestarts failures, the router gives up: Directive Escalate,
//     GaveUp true, and with GiveUp == Unavailable a cool-down of Cooldown
//     starts at now.
//  5. Otherwise the decider's Restart or Stop is returned with the backoff
//     delay for the consecutive count and rnd (see [Backoff.Delay]).
func (r *Restarts) Failed(now time.Time, f Failure, rnd float64) Decision {
	r.expire(now)
	if r.coolingDown(now) {
		return Decision{
			Directive:        Stop,
			Delay:            r.until.Sub(now),
			AvailableAt:      r.until,
			RestartsInWindow: r.InWindow(now),
			Consecutive:      r.consecutive,
		}
	}

	dir := r.p.Decider(f)
	if dir != Restart && dir != Stop && dir != Escalate {
		dir = Escalate
	}

	b := r.p.Backoff
	if r.consecutive > 0 && now.Sub(r.lastFailure.Add(r.lastDelay)) >= b.ResetAfter {
		r.consecutive = 0
	}
	if r.consecutive < math.MaxInt {
		r.consecutive++
	}
	r.lastFailure = now
	r.record(now)

	d := Decision{
		Directive:        dir,
		RestartsInWindow: len(r.failures),
		Consecutive:      r.consecutive,
	}
	if dir == Escalate || len(r.failures) > r.p.Intensity.MaxRestarts {
		d.Directive = Escalate
		d.GaveUp = true
		r.lastDelay = 0
		if r.p.GiveUp == Unavailable {
			r.until = now.Add(r.p.Cooldown)
			d.AvailableAt = r.until
		}
		return d
	}
	d.Delay = b.Delay(r.consecutive, rnd)
	r.lastDelay = d.Delay
	return d
}

// record adds a failure at now to the window, dropping the failures older
// than the window and keeping at most MaxRestarts+1 (the older ones cannot
// change whether the limit is exceeded).
func (r *Restarts) record(now time.Time) {
	kept := r.failures[:0]
	for _, t := range r.failures {
		if r.inWindow(now, t) {
			kept = append(kept, t)
		}
	}
	kept = append(kept, now)
	if limit := r.p.Intensity.MaxRestarts; limit < math.MaxInt && len(kept) > limit+1 {
		n := copy(kept, kept[len(kept)-(limit+1):])
		clear(kept[n:])
		kept = kept[:n]
	}
	r.failures = kept
}

// inWindow reports whether a failure at t is inside the window at now: at
// most Window old, as in OTP.
func (r *Restarts) inWindow(now, t time.Time) bool {
	return now.Sub(t) <= r.p.Intensity.Window
}

// Healthy tells r that a worker has been healthy (ready) since `since`. If
// that worker became ready at or after the last failure and now is at least
// ResetAfter past since, the consecutive-failure count is reset, so the next
// failure waits only the Initial backoff. A worker that was already ready
// before the last failure proves nothing about the replacements and is
// ignored. The intensity window is never cleared by Healthy: it only
// forgets failures as they age.
//
// The router may call Healthy whenever convenient: when a worker finishes a
// job, or on a periodic tick. (Failed applies an equivalent rule by itself,
// so a missed call only delays the reset.)
func (r *Restarts) Healthy(now time.Time, since time.Time) {
	r.expire(now)
	if r.consecutive == 0 || since.IsZero() || since.Before(r.lastFailure) {
		return
	}
	if now.Sub(since) >= r.p.Backoff.ResetAfter {
		r.consecutive = 0
	}
}

// Available reports whether the job type may run at now: false from a
// give-up with GiveUp == Unavailable until the cool-down has passed (now >=
// AvailableAt), true otherwise. It does not change r.
func (r *Restarts) Available(now time.Time) bool { return !r.coolingDown(now) }

// AvailableAt returns when the current, or last, cool-down ends; zero if
// there has been none since the last reset. A time at or before now means
// available: r forgets a finished cool-down (and the history before it)
// only at its next Failed, Healthy or Reset.
func (r *Restarts) AvailableAt() time.Time { return r.until }

// Consecutive returns the current consecutive-failure count.
func (r *Restarts) Consecutive() int { return r.consecutive }

// InWindow returns the number of recorded failures inside the intensity
// window at now (at most MaxRestarts+1). It does not change r.
func (r *Restarts) InWindow(now time.Time) int {
	if !r.until.IsZero() && !now.Before(r.until) {
		return 0 // the history ends with the cool-down
	}
	n := 0
	for _, t := range r.failures {
		if r.inWindow(now, t) {
			n++
		}
	}
	return n
}

// Reset forgets everything: the window, the consecutive count and any
// cool-down. The job type is available at once.
func (r *Restarts) Reset() {
	clear(r.failures)
	r.failures = r.failures[:0]
	r.consecutive = 0
	r.lastFailure = time.Time{}
	r.lastDelay = 0
	r.until = time.Time{}
}

func (r *Restarts) coolingDown(now time.Time) bool {
	return !r.until.IsZero() && now.Before(r.until)
}

// expire forgets the history once a cool-down has ended: after a give-up
// the job type starts again as new.
func (r *Restarts) expire(now time.Time) {
	if !r.until.IsZero() && !now.Before(r.until) {
		r.Reset()
	}
}
