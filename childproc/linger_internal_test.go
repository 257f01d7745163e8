package childproc

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeClock runs the funcs of its timers when advance passes their time.
type fakeClock struct {
	now    time.Duration
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Duration
	f       func()
	stopped bool
	fired   bool
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) stopper {
	t := &fakeTimer{at: c.now + d, f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	was := !t.stopped && !t.fired
	t.stopped = true
	return was
}

// advance moves the clock on by d and runs the funcs of the timers due,
// in order.
func (c *fakeClock) advance(d time.Duration) {
	c.now += d
	for _, t := range c.timers {
		if !t.stopped && !t.fired && t.at <= c.now {
			t.fired = true
			t.f()
		}
	}
}

// pending is the number of timers neither stopped nor fired.
func (c *fakeClock) pending() int {
	n := 0
	for _, t := range c.timers {
		if !t.stopped && !t.fired {
			n++
		}
	}
	return n
}

// lingerRig is a lingering on a fake clock whose end and after count
// their calls, checking that the end runs with the owner's lock held and
// after without it.
type lingerRig struct {
	t      *testing.T
	mu     sync.Mutex
	clock  fakeClock
	l      *lingering
	ends   int
	afters int
}

func newLingerRig(t *testing.T) *lingerRig {
	r := &lingerRig{t: t}
	r.l = newLingering(&r.mu, func() func() {
		assert.False(t, r.mu.TryLock(), "the end runs with the owner's lock held")
		r.ends++
		return func() {
			if assert.True(t, r.mu.TryLock(), "after runs without the owner's lock") {
				r.mu.Unlock()
			}
			r.afters++
		}
	})
	r.l.clock = &r.clock
	return r
}

// locked calls f with the owner's lock held, as the package does.
func (r *lingerRig) locked(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f()
}

// TestLingeringRule: what a lingering keeps ends spareLinger after its
// last user has gone, not before, once; a user that comes meanwhile calls
// the end off, and the linger restarts from the next last user.
func TestLingeringRule(t *testing.T) {
	r := newLingerRig(t)
	r.locked(r.l.acquire)
	r.locked(r.l.acquire)
	r.locked(r.l.release)
	r.clock.advance(10 * spareLinger)
	assert.Zero(t, r.ends, "a user is left: no end")
	assert.True(t, r.l.inUse())

	r.locked(r.l.release)
	assert.False(t, r.l.inUse())
	assert.True(t, r.l.kept(), "kept while its end is pending")
	r.clock.advance(spareLinger / 2)
	assert.Zero(t, r.ends, "half the linger: no end yet")

	r.locked(r.l.acquire) // comes back in time
	assert.Zero(t, r.clock.pending(), "the pending end's timer is stopped")
	r.clock.advance(spareLinger)
	assert.Zero(t, r.ends, "the end was called off")

	r.locked(r.l.release)
	r.clock.advance(spareLinger - time.Nanosecond)
	assert.Zero(t, r.ends, "the linger counts from the last release")
	r.clock.advance(time.Nanosecond)
	assert.Equal(t, 1, r.ends, "ended spareLinger after the last release")
	assert.Equal(t, 1, r.afters)
	assert.False(t, r.l.kept())
	r.clock.advance(10 * spareLinger)
	assert.Equal(t, 1, r.ends, "once")
}

// TestLingeringIgnoresAStaleTimer: the func of a timer that fired but ran
// only after a user came and went (it waited for the lock) ends nothing;
// the end comes spareLinger after the later release.
func TestLingeringIgnoresAStaleTimer(t *testing.T) {
	r := newLingerRig(t)
	r.locked(r.l.acquire)
	r.locked(r.l.release)
	require.Len(t, r.clock.timers, 1)
	stale := r.clock.timers[0]
	r.clock.now = stale.at // it fires, and its func waits for the lock...
	r.locked(func() {
		r.l.acquire()
		r.l.release() // a start and an end meanwhile
	})
	stale.f() // ...which it gets now
	assert.Zero(t, r.ends, "the stale timer ends nothing")
	r.clock.advance(spareLinger)
	assert.Equal(t, 1, r.ends, "the later release's end")
}

// TestLingeringEndIfUnused: endIfUnused ends an unused one at once and
// calls its pending end off; it leaves one with users alone.
func TestLingeringEndIfUnused(t *testing.T) {
	r := newLingerRig(t)
	r.locked(r.l.acquire)
	var after func()
	r.locked(func() { after = r.l.endIfUnused() })
	assert.Nil(t, after, "in use: nothing ends")
	assert.Zero(t, r.ends)

	r.locked(r.l.release)
	r.locked(func() { after = r.l.endIfUnused() })
	assert.Equal(t, 1, r.ends, "unused: ended at once")
	require.NotNil(t, after)
	after()
	assert.Equal(t, 1, r.afters)
	assert.False(t, r.l.kept())
	r.clock.advance(10 * spareLinger)
	assert.Equal(t, 1, r.ends, "its pending end was called off")
}
