package supervisor_test

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/procpool/procpool/supervisor"
)

const ms = time.Millisecond

func TestBackoffSequenceNoJitter(t *testing.T) {
	b := supervisor.Backoff{Initial: 50 * ms, Max: 5 * time.Second, Multiplier: 2} // Jitter 0 kept
	want := []time.Duration{50 * ms, 100 * ms, 200 * ms, 400 * ms, 800 * ms, 1600 * ms, 3200 * ms,
		5 * time.Second, 5 * time.Second, 5 * time.Second}
	for i, w := range want {
		for _, rnd := range []float64{0, 0.5, 0.999} { // jitter 0: rnd does not matter
			assert.Equal(t, w, b.Delay(i+1, rnd), "consecutive %d rnd %v", i+1, rnd)
		}
	}
}

func TestBackoffTable(t *testing.T) {
	tests := []struct {
		name        string
		b           supervisor.Backoff
		consecutive int
		rnd         float64
		want        time.Duration
	}{
		{"zero backoff uses defaults, rnd 0.5 is nominal", supervisor.Backoff{}, 1, 0.5, 50 * ms},
		{"defaults third", supervisor.Backoff{}, 3, 0.5, 200 * ms},
		{"defaults capped", supervisor.Backoff{}, 8, 0.5, 5 * time.Second},
		{"consecutive 0 counts as 1", supervisor.Backoff{Initial: 50 * ms, Max: time.Second}, 0, 0, 50 * ms},
		{"negative consecutive counts as 1", supervisor.Backoff{Initial: 50 * ms, Max: time.Second}, -7, 0, 50 * ms},
		{"multiplier 1 is constant", supervisor.Backoff{Initial: 30 * ms, Max: time.Second, Multiplier: 1}, 100, 0, 30 * ms},
		{"multiplier 1.5", supervisor.Backoff{Initial: 100 * ms, Max: time.Second, Multiplier: 1.5}, 3, 0, 225 * ms},
		{"initial above max is capped", supervisor.Backoff{Initial: 2 * time.Second, Max: time.Second, Multiplier: 2}, 1, 0, time.Second},
		{"negative initial gives 0", supervisor.Backoff{Initial: -1, Max: time.Second}, 3, 0.5, 0},
		{"multiplier below 1 acts as 1", supervisor.Backoff{Initial: 10 * ms, Max: time.Second, Multiplier: 0.5}, 5, 0, 10 * ms},
		{"NaN multiplier acts as 1", supervisor.Backoff{Initial: 10 * ms, Max: time.Second, Multiplier: math.NaN()}, 5, 0, 10 * ms},
		{"full jitter rnd 0 gives 0", supervisor.Backoff{Initial: 100 * ms, Max: time.Second, Jitter: 1}, 1, 0, 0},
		{"full jitter rnd 0.75", supervisor.Backoff{Initial: 100 * ms, Max: time.Second, Jitter: 1}, 1, 0.75, 150 * ms},
		{"jitter above 1 clamped", supervisor.Backoff{Initial: 100 * ms, Max: time.Second, Jitter: 3}, 1, 0, 0},
		{"rnd above 1 clamped", supervisor.Backoff{Initial: 100 * ms, Max: time.Second, Jitter: 0.5}, 1, 7, 150 * ms},
		{"rnd below 0 clamped", supervisor.Backoff{Initial: 100 * ms, Max: time.Second, Jitter: 0.5}, 1, -7, 50 * ms},
		{"negative max is no cap", supervisor.Backoff{Initial: time.Hour, Max: -1, Multiplier: 2}, 10_000, 0.5, time.Duration(math.MaxInt64)},
		{"NaN rnd is 0.5", supervisor.Backoff{Initial: 100 * ms, Max: time.Second, Jitter: 0.5}, 1, math.NaN(), 100 * ms},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.b.Delay(tt.consecutive, tt.rnd))
		})
	}
}

func TestBackoffJitterBounds(t *testing.T) {
	b := supervisor.Backoff{Initial: 50 * ms, Max: 5 * time.Second, Multiplier: 2, Jitter: 0.2}
	for n := 1; n <= 12; n++ {
		nominal := supervisor.Backoff{Initial: 50 * ms, Max: 5 * time.Second, Multiplier: 2}.Delay(n, 0)
		lo := time.Duration(float64(nominal) * 0.8)
		hi := min(time.Duration(float64(nominal)*1.2), b.Max)
		for _, rnd := range []float64{0, 0.001, 0.25, 0.5, 0.75, 0.999} {
			d := b.Delay(n, rnd)
			assert.GreaterOrEqual(t, d, lo-1, "n=%d rnd=%v", n, rnd)
			assert.LessOrEqual(t, d, hi, "n=%d rnd=%v", n, rnd)
			assert.LessOrEqual(t, d, b.Max, "never above Max")
		}
		assert.Equal(t, nominal, b.Delay(n, 0.5), "rnd 0.5 is the nominal delay")
	}
	// Exact ends for the first delay.
	assert.InDelta(t, float64(40*ms), float64(b.Delay(1, 0)), 1)
	assert.InDelta(t, float64(59980*time.Microsecond), float64(b.Delay(1, 0.999)), 1)
	// At the cap, jitter only goes down.
	assert.InDelta(t, float64(4*time.Second), float64(b.Delay(20, 0)), 1)
	assert.Equal(t, 5*time.Second, b.Delay(20, 0.999))
}

func TestBackoffNoOverflow(t *testing.T) {
	tests := []struct {
		name string
		b    supervisor.Backoff
		want time.Duration
	}{
		{"defaults", supervisor.Backoff{Initial: 50 * ms, Max: 5 * time.Second, Multiplier: 2}, 5 * time.Second},
		{"huge multiplier", supervisor.Backoff{Initial: 50 * ms, Max: time.Hour, Multiplier: 1e300}, time.Hour},
		{"max at the limit", supervisor.Backoff{Initial: time.Hour, Max: time.Duration(math.MaxInt64), Multiplier: 10, Jitter: 0.5},
			time.Duration(math.MaxInt64)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, n := range []int{64, 1000, 10_000, math.MaxInt32, math.MaxInt} {
				assert.Equal(t, tt.want, tt.b.Delay(n, 0.999), "n=%d", n)
				d := tt.b.Delay(n, 0)
				assert.Positive(t, d, "n=%d", n)
				assert.LessOrEqual(t, d, tt.want, "n=%d", n)
			}
		})
	}
}

func TestBackoffMonotonicWithoutJitter(t *testing.T) {
	b := supervisor.Backoff{Initial: 7 * ms, Max: 13 * time.Second, Multiplier: 1.7}
	prev := time.Duration(0)
	for n := 1; n <= 200; n++ {
		d := b.Delay(n, 0.3)
		assert.GreaterOrEqual(t, d, prev, "n=%d", n)
		prev = d
	}
	assert.Equal(t, 13*time.Second, prev)
}
