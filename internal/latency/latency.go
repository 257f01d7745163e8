// Package latency is a lock-free latency histogram: many goroutines record
// durations with atomic adds, and a reader estimates quantiles from a
// snapshot. Buckets are log-linear (8 per power of two), so an estimate is
// within about 6% of the true value.
package latency

import (
	"math/bits"
	"sync/atomic"
	"time"
)

const (
	subBits    = 3
	subBuckets = 1 << subBits
	groups     = 64 - subBits
	nBuckets   = groups*subBuckets + subBuckets
)

// Histogram records durations. The zero value is ready to use.
type Histogram struct {
	counts [nBuckets]atomic.Uint64
}

// Record adds one observation. Negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	h.counts[index(uint64(max(d, 0)))].Add(1)
}

// RecordN adds n observations of d.
func (h *Histogram) RecordN(d time.Duration, n uint64) {
	h.counts[index(uint64(max(d, 0)))].Add(n)
}

// index maps a value to its bucket: values below 8 get a bucket each; above,
// each power of two is split in 8 equal sub-buckets.
func index(v uint64) int {
	if v < subBuckets {
		return int(v)
	}
	exp := bits.Len64(v) - 1 // >= subBits
	shift := exp - subBits
	sub := int(v>>shift) & (subBuckets - 1)
	return (shift+1)*subBuckets + sub
}

// lowerBound is the smallest value of bucket i, and upper the first value
// past it.
func bounds(i int) (lower, upper uint64) {
	if i < subBuckets {
		return uint64(i), uint64(i) + 1
	}
	shift := i/subBuckets - 1
	sub := uint64(i % subBuckets)
	lower = (subBuckets + sub) << shift
	return lower, lower + 1<<shift
}

// Snapshot is a copy of a histogram's counts at one moment.
type Snapshot struct {
	counts [nBuckets]uint64
	total  uint64
}

// Snapshot copies the current counts.
func (h *Histogram) Snapshot() *Snapshot {
	s := new(Snapshot)
	for i := range h.counts {
		c := h.counts[i].Load()
		s.counts[i] = c
		s.total += c
	}
	return s
}

// Count returns the number of observations.
func (s *Snapshot) Count() uint64 { return s.total }

// Quantile estimates the q-quantile (0 <= q <= 1) as the midpoint of the
// bucket holding it; 0 with no observations.
func (s *Snapshot) Quantile(q float64) time.Duration {
	if s.total == 0 {
		return 0
	}
	q = min(max(q, 0), 1)
	rank := uint64(q*float64(s.total-1)) + 1
	var seen uint64
	for i, c := range s.counts {
		seen += c
		if seen >= rank {
			lo, hi := bounds(i)
			return time.Duration(lo + (hi-lo)/2)
		}
	}
	return 0
}
