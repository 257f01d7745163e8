package supervisor

import (
	"math"
	"time"
)

const maxDuration = time.Duration(math.MaxInt64)

// Delay returns the delay before the restart that follows the consecutive-th
// consecutive failure, given rnd, a random number in [0,1).
//
// The nominal delay is Initial * Multiplier^(consecutive-1), capped at Max:
// consecutive 1 gives Initial. Jitter then scales it linearly by
// 1 + Jitter*(2*rnd-1), which spreads it uniformly over
// [d*(1-Jitter), d*(1+Jitter)); rnd 0.5 gives the nominal delay exactly. The
// result is never above Max, and huge counts saturate at Max without
// overflowing.
//
// Delay applies [Backoff.WithDefaults] first. A consecutive count below 1 is
// treated as 1; rnd outside [0,1] is clamped and a NaN rnd counts as 0.5.
// Out-of-range fields (which [Policy.Validate] rejects) are clamped: a
// negative Initial gives 0, a Multiplier below 1 acts as 1, a Jitter outside
// [0,1] is clamped.
func (b Backoff) Delay(consecutive int, rnd float64) time.Duration {
	b = b.WithDefaults()
	if b.Initial <= 0 {
		return 0
	}
	limit := b.Max
	if limit <= 0 {
		limit = maxDuration
	}
	if consecutive < 1 {
		consecutive = 1
	}
	m := b.Multiplier
	if !(m >= 1) || math.IsInf(m, 0) { // also catches NaN
		m = 1
	}
	d := float64(b.Initial) * math.Pow(m, float64(consecutive-1))
	if math.IsNaN(d) || d > float64(limit) {
		d = float64(limit)
	}
	j := clamp01(b.Jitter, 0)
	r := clamp01(rnd, 0.5)
	d *= 1 + j*(2*r-1)
	if d >= float64(limit) {
		return limit
	}
	if d <= 0 {
		return 0
	}
	return time.Duration(d)
}

// clamp01 clamps x to [0,1]; NaN becomes nan.
func clamp01(x, nan float64) float64 {
	switch {
	case math.IsNaN(x):
		return nan
	case x < 0:
		return 0
	case x > 1:
		return 1
	}
	return x
}
