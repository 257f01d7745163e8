package childproc

import (
	"sync"
	"time"
)

// spareLinger is how long what the package keeps ready for starts to come
// outlives its last user (see lingering).
const spareLinger = time.Second

// lingering is the rule by which the package keeps what it has ready for
// starts to come (the spare inits, the namespaces a job type's workers
// share, the shared PID namespace's init, the spare cgroups): it is kept
// while it has users and for spareLinger after the last one has gone, so
// that a worker restarted at once finds it ready; then it ends. A user
// that comes before then calls the end off; the next last user sets it
// again, spareLinger from then. ReleaseSpares ends an unused one at once
// (endIfUnused).
//
// A lingering has no lock of its own: it is guarded by its owner's lock,
// mu, which every method must be called with. Its end is called with mu
// held too, once the linger has passed and only if nothing called it off
// meanwhile (a timer that fired while a user came and went is ignored);
// the func the end returns, if any, is then called without mu, for work
// too slow to hold the lock for (killing an init, removing cgroups).
type lingering struct {
	mu    sync.Locker
	end   func() (after func())
	clock clock
	users int
	timer stopper // the pending end, or nil
	gen   uint64  // changes whenever an end is set or called off
}

// newLingering returns a lingering guarded by mu that calls end when it
// ends.
func newLingering(mu sync.Locker, end func() (after func())) *lingering {
	return &lingering{mu: mu, end: end, clock: realClock{}}
}

// acquire counts one more user and calls off a pending end.
func (l *lingering) acquire() {
	l.users++
	l.callOff()
}

// release counts one user less; after the last, the end comes
// spareLinger later.
func (l *lingering) release() {
	l.users--
	if l.users > 0 {
		return
	}
	l.callOff()
	gen := l.gen
	l.timer = l.clock.AfterFunc(spareLinger, func() {
		l.mu.Lock()
		var after func()
		if l.gen == gen && l.users == 0 {
			l.timer = nil
			after = l.end()
		}
		l.mu.Unlock()
		if after != nil {
			after()
		}
	})
}

// inUse reports whether it has users.
func (l *lingering) inUse() bool { return l.users > 0 }

// kept reports whether it has users or its end is pending: what is made
// for it now is still wanted.
func (l *lingering) kept() bool { return l.users > 0 || l.timer != nil }

// endIfUnused ends it at once if it has no users, calling off a pending
// end, and returns what the end returned, to be called without mu; nil if
// it has users.
func (l *lingering) endIfUnused() (after func()) {
	if l.users > 0 {
		return nil
	}
	l.callOff()
	return l.end()
}

// callOff calls off a pending end.
func (l *lingering) callOff() {
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	l.gen++
}

// clock starts the timers of a lingering (a fake one in tests).
type clock interface {
	AfterFunc(d time.Duration, f func()) stopper
}

// stopper is a timer that can be stopped, as *time.Timer.
type stopper interface {
	Stop() bool
}

// realClock is time's own.
type realClock struct{}

func (realClock) AfterFunc(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) }
