package supervisor_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool/supervisor"
)

var (
	t0      = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	exitErr = supervisor.Failure{Kind: supervisor.ExitFailure, ExitCode: 1}
)

func at(d time.Duration) time.Time { return t0.Add(d) }

// noJitter is a policy whose delays are exact: 50ms doubling to 5s.
func noJitter(p supervisor.Policy) supervisor.Policy {
	p.Backoff = supervisor.Backoff{Initial: 50 * ms, Max: 5 * time.Second, Multiplier: 2, ResetAfter: 30 * time.Second}
	return p
}

type step struct {
	at   time.Duration
	want supervisor.Decision
}

func TestIntensityOTP(t *testing.T) {
	s := time.Second
	restart := func(n, cons int, delay time.Duration) supervisor.Decision {
		return supervisor.Decision{Directive: supervisor.Restart, Delay: delay, RestartsInWindow: n, Consecutive: cons}
	}
	giveUp := func(n, cons int, cooldownEnd time.Duration) supervisor.Decision {
		return supervisor.Decision{Directive: supervisor.Escalate, GaveUp: true, AvailableAt: at(cooldownEnd),
			RestartsInWindow: n, Consecutive: cons}
	}
	tests := []struct {
		name      string
		intensity supervisor.Intensity
		steps     []step
	}{
		{
			name:      "N restarts allowed, N+1 within the window gives up",
			intensity: supervisor.Intensity{MaxRestarts: 3, Window: 10 * s},
			steps: []step{
				{0, restart(1, 1, 50*ms)},
				{1 * s, restart(2, 2, 100*ms)},
				{2 * s, restart(3, 3, 200*ms)},
				{3 * s, giveUp(4, 4, 3*s+5*s)},
			},
		},
		{
			name:      "failures older than the window fall out",
			intensity: supervisor.Intensity{MaxRestarts: 3, Window: 10 * s},
			steps: []step{
				{0, restart(1, 1, 50*ms)},
				{1 * s, restart(2, 2, 100*ms)},
				{2 * s, restart(3, 3, 200*ms)},
				{11500 * ms, restart(2, 4, 400*ms)},  // 0s and 1s are out; 2s, 11.5s in
				{12500 * ms, restart(2, 5, 800*ms)},  // 2s is 10.5s old: out; 11.5s, 12.5s in
				{13 * s, restart(3, 6, 1600*ms)},     // 11.5s, 12.5s, 13s
				{13500 * ms, giveUp(4, 7, 18500*ms)}, // the fourth within 10s
			},
		},
		{
			name:      "a failure exactly Window old still counts (OTP)",
			intensity: supervisor.Intensity{MaxRestarts: 1, Window: 10 * s},
			steps: []step{
				{0, restart(1, 1, 50*ms)},
				{10 * s, giveUp(2, 2, 15*s)},
			},
		},
		{
			name:      "one nanosecond later it is out",
			intensity: supervisor.Intensity{MaxRestarts: 1, Window: 10 * s},
			steps: []step{
				{0, restart(1, 1, 50*ms)},
				{10*s + 1, restart(1, 2, 100*ms)},
				{11 * s, giveUp(2, 3, 16*s)},
			},
		},
		{
			name:      "MaxRestarts 0 gives up on the first failure",
			intensity: supervisor.Intensity{MaxRestarts: 0, Window: s},
			steps: []step{
				{0, giveUp(1, 1, 5*s)},
			},
		},
		{
			name:      "default 5 in 10s: the sixth gives up",
			intensity: supervisor.Intensity{},
			steps: []step{
				{0, restart(1, 1, 50*ms)},
				{1 * s, restart(2, 2, 100*ms)},
				{2 * s, restart(3, 3, 200*ms)},
				{3 * s, restart(4, 4, 400*ms)},
				{4 * s, restart(5, 5, 800*ms)},
				{5 * s, giveUp(6, 6, 10*s)},
			},
		},
		{
			name:      "simultaneous failures",
			intensity: supervisor.Intensity{MaxRestarts: 2, Window: s},
			steps: []step{
				{0, restart(1, 1, 50*ms)},
				{0, restart(2, 2, 100*ms)},
				{0, giveUp(3, 3, 5*s)},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := supervisor.NewRestarts(noJitter(supervisor.Policy{Intensity: tt.intensity}))
			for i, st := range tt.steps {
				got := r.Failed(at(st.at), exitErr, 0.5)
				assert.Equal(t, st.want, got, "step %d at %v", i, st.at)
			}
		})
	}
}

func TestIntensityWindowIsBounded(t *testing.T) {
	r := supervisor.NewRestarts(supervisor.Policy{
		Intensity: supervisor.Intensity{MaxRestarts: 2, Window: time.Hour},
		GiveUp:    supervisor.EscalateToParent, // keep recording after giving up
	})
	var d supervisor.Decision
	for i := range 1000 {
		d = r.Failed(at(time.Duration(i)*time.Millisecond), exitErr, 0.5)
	}
	assert.True(t, d.GaveUp)
	assert.Equal(t, 3, d.RestartsInWindow, "capped at MaxRestarts+1")
	assert.Equal(t, 1000, d.Consecutive)
	assert.Equal(t, 3, r.InWindow(at(time.Second)))
	assert.Equal(t, 0, r.InWindow(at(2*time.Hour)))
}

func TestDecider(t *testing.T) {
	decider := func(f supervisor.Failure) supervisor.Directive {
		switch f.Kind {
		case supervisor.ProtocolFailure:
			return supervisor.Escalate
		case supervisor.StartupFailure:
			return supervisor.Stop
		}
		return supervisor.Restart
	}
	kinds := []struct {
		kind   supervisor.FailureKind
		want   supervisor.Directive
		gaveUp bool
	}{
		{supervisor.ExitFailure, supervisor.Restart, false},
		{supervisor.SignalFailure, supervisor.Restart, false},
		{supervisor.ProtocolFailure, supervisor.Escalate, true},
		{supervisor.JobTimeoutFailure, supervisor.Restart, false},
		{supervisor.HeartbeatFailure, supervisor.Restart, false},
		{supervisor.MemoryFailure, supervisor.Restart, false},
		{supervisor.StartupFailure, supervisor.Stop, false},
	}
	for _, k := range kinds {
		t.Run(k.kind.String(), func(t *testing.T) {
			r := supervisor.NewRestarts(noJitter(supervisor.Policy{Decider: decider}))
			d := r.Failed(t0, supervisor.Failure{Kind: k.kind}, 0.5)
			assert.Equal(t, k.want, d.Directive)
			assert.Equal(t, k.gaveUp, d.GaveUp)
			assert.Equal(t, 1, d.RestartsInWindow)
			if k.gaveUp {
				assert.Zero(t, d.Delay)
				assert.Equal(t, t0.Add(5*time.Second), d.AvailableAt)
				assert.False(t, r.Available(t0))
			} else {
				assert.Equal(t, 50*ms, d.Delay, "Stop carries the backoff delay too")
				assert.True(t, r.Available(t0))
			}
		})
	}

	t.Run("stop counts toward intensity", func(t *testing.T) {
		r := supervisor.NewRestarts(noJitter(supervisor.Policy{
			Intensity: supervisor.Intensity{MaxRestarts: 2, Window: time.Minute},
			Decider:   decider,
		}))
		startup := supervisor.Failure{Kind: supervisor.StartupFailure, ExitCode: 1}
		assert.Equal(t, supervisor.Decision{Directive: supervisor.Stop, Delay: 50 * ms, RestartsInWindow: 1, Consecutive: 1},
			r.Failed(at(0), startup, 0.5))
		assert.Equal(t, supervisor.Decision{Directive: supervisor.Restart, Delay: 100 * ms, RestartsInWindow: 2, Consecutive: 2},
			r.Failed(at(time.Second), exitErr, 0.5))
		d := r.Failed(at(2*time.Second), startup, 0.5)
		assert.True(t, d.GaveUp)
		assert.Equal(t, supervisor.Escalate, d.Directive)
	})

	t.Run("nil decider restarts everything", func(t *testing.T) {
		r := supervisor.NewRestarts(supervisor.Policy{Intensity: supervisor.Intensity{MaxRestarts: 100, Window: time.Second}})
		for k := supervisor.ExitFailure; k <= supervisor.StartupFailure; k++ {
			assert.Equal(t, supervisor.Restart, r.Failed(t0, supervisor.Failure{Kind: k}, 0.5).Directive, k.String())
		}
		assert.Equal(t, supervisor.Restart, supervisor.DefaultDecider(supervisor.Failure{}))
	})

	t.Run("unknown directive escalates", func(t *testing.T) {
		r := supervisor.NewRestarts(supervisor.Policy{Decider: func(supervisor.Failure) supervisor.Directive { return 42 }})
		d := r.Failed(t0, exitErr, 0.5)
		assert.True(t, d.GaveUp)
		assert.Equal(t, supervisor.Escalate, d.Directive)
	})

	t.Run("the decider sees the failure", func(t *testing.T) {
		var seen []supervisor.Failure
		r := supervisor.NewRestarts(supervisor.Policy{Decider: func(f supervisor.Failure) supervisor.Directive {
			seen = append(seen, f)
			return supervisor.Restart
		}})
		f := supervisor.Failure{Kind: supervisor.SignalFailure, ExitCode: -1, Signal: 9}
		r.Failed(t0, f, 0.5)
		assert.Equal(t, []supervisor.Failure{f}, seen)
	})
}

func TestBackoffResetAfterHealthy(t *testing.T) {
	s := time.Second
	newR := func() *supervisor.Restarts {
		return supervisor.NewRestarts(noJitter(supervisor.Policy{Intensity: supervisor.Intensity{MaxRestarts: 100, Window: s}}))
	}
	fail3 := func(r *supervisor.Restarts) {
		for i, want := range []time.Duration{50 * ms, 100 * ms, 200 * ms} {
			require.Equal(t, want, r.Failed(at(time.Duration(i)*s), exitErr, 0.5).Delay)
		}
		require.Equal(t, 3, r.Consecutive())
	}
	// The last failure is at 2s; its replacement is ready at 2.2s.
	tests := []struct {
		name      string
		since     time.Duration
		now       time.Duration
		wantCons  int
		nextDelay time.Duration // delay of a failure right after `now`
	}{
		{"healthy long enough resets", 2200 * ms, 32200 * ms, 0, 50 * ms},
		{"healthy longer resets", 2200 * ms, time.Hour, 0, 50 * ms},
		{"not long enough keeps the count", 2200 * ms, 32199 * ms, 3, 400 * ms},
		{"a worker ready before the last failure proves nothing", 1500 * ms, 40 * s, 3, 50 * ms /* the quiet-period rule resets it at the next failure */},
		{"zero since is ignored", -1, 40 * s, 3, 50 * ms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newR()
			fail3(r)
			since := time.Time{}
			if tt.since >= 0 {
				since = at(tt.since)
			}
			r.Healthy(at(tt.now), since)
			assert.Equal(t, tt.wantCons, r.Consecutive())
			d := r.Failed(at(tt.now), exitErr, 0.5)
			assert.Equal(t, tt.nextDelay, d.Delay)
		})
	}
}

func TestBackoffQuietPeriodReset(t *testing.T) {
	// Without any Healthy report, a failure that comes ResetAfter after the
	// previous restart delay ended starts a new consecutive run.
	p := noJitter(supervisor.Policy{Intensity: supervisor.Intensity{MaxRestarts: 100, Window: time.Second}})
	p.Backoff.ResetAfter = 10 * time.Second
	p.Backoff.Max = 20 * time.Second
	r := supervisor.NewRestarts(p)
	steps := []struct {
		at    time.Duration
		cons  int
		delay time.Duration
	}{
		{0, 1, 50 * ms},
		{10049 * ms, 2, 100 * ms}, // 1ms short of 50ms + 10s
		{20149 * ms, 1, 50 * ms},  // exactly 10.049s + 100ms + 10s
		{20200 * ms, 2, 100 * ms},
	}
	for i, st := range steps {
		d := r.Failed(at(st.at), exitErr, 0.5)
		assert.Equal(t, st.cons, d.Consecutive, "step %d", i)
		assert.Equal(t, st.delay, d.Delay, "step %d", i)
	}

	// The delay itself is not quiet time: with a long cap, failures right
	// after each long restart keep growing the delay.
	p.Backoff = supervisor.Backoff{Initial: 4 * time.Second, Max: time.Minute, Multiplier: 2, ResetAfter: 10 * time.Second}
	r = supervisor.NewRestarts(p)
	now := t0
	var delays []time.Duration
	for range 5 {
		d := r.Failed(now, exitErr, 0.5)
		delays = append(delays, d.Delay)
		now = now.Add(d.Delay + time.Second) // fails 1s after each restart
	}
	assert.Equal(t, []time.Duration{4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute}, delays)
}

func TestHealthyDoesNotClearWindow(t *testing.T) {
	r := supervisor.NewRestarts(noJitter(supervisor.Policy{
		Intensity: supervisor.Intensity{MaxRestarts: 1, Window: time.Hour},
		GiveUp:    supervisor.EscalateToParent,
	}))
	r.Failed(at(0), exitErr, 0.5)
	r.Healthy(at(time.Minute), at(time.Second))
	assert.Equal(t, 0, r.Consecutive())
	assert.Equal(t, 1, r.InWindow(at(time.Minute)))
	d := r.Failed(at(2*time.Minute), exitErr, 0.5)
	assert.True(t, d.GaveUp, "the window only forgets by age")
	assert.Equal(t, 1, d.Consecutive)
}

func TestCooldown(t *testing.T) {
	s := time.Second
	r := supervisor.NewRestarts(noJitter(supervisor.Policy{
		Intensity: supervisor.Intensity{MaxRestarts: 1, Window: 10 * s},
		Cooldown:  30 * s,
	}))
	assert.True(t, r.Available(t0))
	assert.True(t, r.AvailableAt().IsZero())

	r.Failed(at(0), exitErr, 0.5)
	d := r.Failed(at(1*s), exitErr, 0.5)
	require.True(t, d.GaveUp)
	assert.Equal(t, at(31*s), d.AvailableAt)
	assert.Equal(t, at(31*s), r.AvailableAt())

	assert.False(t, r.Available(at(1*s)))
	assert.False(t, r.Available(at(31*s-1)))
	assert.True(t, r.Available(at(31*s)))
	assert.True(t, r.Available(at(time.Hour)))

	// A failure reported during the cool-down is not recorded and does not
	// extend it.
	d = r.Failed(at(11*s), exitErr, 0.5)
	assert.Equal(t, supervisor.Decision{
		Directive: supervisor.Stop, Delay: 20 * s, AvailableAt: at(31 * s),
		RestartsInWindow: 1, Consecutive: 2,
	}, d)
	assert.Equal(t, at(31*s), r.AvailableAt())
	assert.False(t, r.Available(at(30*s)))

	// Healthy during the cool-down changes nothing.
	r.Healthy(at(20*s), at(12*s))
	assert.Equal(t, 2, r.Consecutive())

	// After the cool-down the history is forgotten: a fresh start.
	assert.Equal(t, at(31*s), r.AvailableAt(), "AvailableAt is pure until the next call")
	assert.Equal(t, 0, r.InWindow(at(31*s)))
	d = r.Failed(at(32*s), exitErr, 0.5)
	assert.Equal(t, supervisor.Decision{Directive: supervisor.Restart, Delay: 50 * ms, RestartsInWindow: 1, Consecutive: 1}, d)
	assert.True(t, r.AvailableAt().IsZero())
	assert.True(t, r.Available(at(32*s)))

	// And it can give up again.
	d = r.Failed(at(33*s), exitErr, 0.5)
	assert.True(t, d.GaveUp)
	assert.Equal(t, at(63*s), d.AvailableAt)
}

func TestCooldownEndsOnHealthy(t *testing.T) {
	r := supervisor.NewRestarts(noJitter(supervisor.Policy{Intensity: supervisor.Intensity{Window: time.Second}}))
	require.True(t, r.Failed(t0, exitErr, 0.5).GaveUp)
	r.Healthy(at(5*time.Second), at(5*time.Second))
	assert.True(t, r.AvailableAt().IsZero())
	assert.Equal(t, 0, r.Consecutive())
}

func TestEscalateToParent(t *testing.T) {
	r := supervisor.NewRestarts(noJitter(supervisor.Policy{
		Intensity: supervisor.Intensity{MaxRestarts: 1, Window: 10 * time.Second},
		GiveUp:    supervisor.EscalateToParent,
	}))
	r.Failed(at(0), exitErr, 0.5)
	d := r.Failed(at(time.Second), exitErr, 0.5)
	assert.Equal(t, supervisor.Decision{Directive: supervisor.Escalate, GaveUp: true, RestartsInWindow: 2, Consecutive: 2}, d)
	assert.True(t, r.Available(at(time.Second)), "no cool-down: the parent decides")
	assert.True(t, r.AvailableAt().IsZero())
}

func TestReset(t *testing.T) {
	r := supervisor.NewRestarts(noJitter(supervisor.Policy{Intensity: supervisor.Intensity{MaxRestarts: 1, Window: time.Minute}}))
	r.Failed(at(0), exitErr, 0.5)
	require.True(t, r.Failed(at(time.Second), exitErr, 0.5).GaveUp)
	require.False(t, r.Available(at(2*time.Second)))

	r.Reset()
	assert.True(t, r.Available(at(2*time.Second)))
	assert.True(t, r.AvailableAt().IsZero())
	assert.Equal(t, 0, r.Consecutive())
	assert.Equal(t, 0, r.InWindow(at(2*time.Second)))
	d := r.Failed(at(2*time.Second), exitErr, 0.5)
	assert.Equal(t, supervisor.Decision{Directive: supervisor.Restart, Delay: 50 * ms, RestartsInWindow: 1, Consecutive: 1}, d)
}

func TestRestartsJitterUsesRnd(t *testing.T) {
	r := supervisor.NewRestarts(supervisor.Policy{}) // default jitter 0.2
	assert.InDelta(t, float64(40*ms), float64(r.Failed(at(0), exitErr, 0).Delay), 1)
	assert.InDelta(t, float64(119960*time.Microsecond), float64(r.Failed(at(time.Second), exitErr, 0.999).Delay), 1)
}

func TestRestartsDeterministic(t *testing.T) {
	run := func() []supervisor.Decision {
		r := supervisor.NewRestarts(supervisor.Policy{})
		var out []supervisor.Decision
		for i := range 20 {
			now := at(time.Duration(i*i) * 100 * ms)
			r.Healthy(now, at(time.Duration(i)*ms))
			out = append(out, r.Failed(now, exitErr, float64(i%10)/10))
		}
		return out
	}
	assert.Equal(t, run(), run())
}

func TestClockGoingBackwards(t *testing.T) {
	r := supervisor.NewRestarts(noJitter(supervisor.Policy{Intensity: supervisor.Intensity{MaxRestarts: 2, Window: time.Second}}))
	r.Failed(at(10*time.Second), exitErr, 0.5)
	d := r.Failed(at(5*time.Second), exitErr, 0.5)
	assert.Equal(t, 2, d.RestartsInWindow, "a failure in the future stays in the window")
	assert.False(t, d.GaveUp)
}

func TestRestartsPolicy(t *testing.T) {
	r := supervisor.NewRestarts(supervisor.Policy{Cooldown: time.Minute})
	p := r.Policy()
	assert.Equal(t, time.Minute, p.Cooldown)
	assert.Equal(t, supervisor.DefaultPolicy().Intensity, p.Intensity)
	assert.NotNil(t, p.Decider)
}

func TestNewRestartsPanicsOnInvalidPolicy(t *testing.T) {
	assert.PanicsWithValue(t,
		"supervisor.NewRestarts: supervisor: invalid policy: Backoff.Jitter 2 is outside [0,1]",
		func() { supervisor.NewRestarts(supervisor.Policy{Backoff: supervisor.Backoff{Jitter: 2}}) })
}

func TestSetPolicyKeepsTheHistory(t *testing.T) {
	r := supervisor.NewRestarts(supervisor.Policy{Intensity: supervisor.Intensity{MaxRestarts: 5, Window: time.Minute}})
	for i := range 3 {
		d := r.Failed(at(time.Duration(i)*time.Second), exitErr, 0.5)
		require.False(t, d.GaveUp, "gave up after %d failures under MaxRestarts 5", i+1)
	}
	r.SetPolicy(supervisor.Policy{Intensity: supervisor.Intensity{MaxRestarts: 2, Window: time.Minute}})
	assert.Equal(t, 2, r.Policy().Intensity.MaxRestarts)
	d := r.Failed(at(4*time.Second), exitErr, 0.5)
	assert.True(t, d.GaveUp, "the fourth failure in the window exceeds the new intensity of 2")
	assert.Panics(t, func() { r.SetPolicy(supervisor.Policy{Intensity: supervisor.Intensity{MaxRestarts: -1}}) })
}
