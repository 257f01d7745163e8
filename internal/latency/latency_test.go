package latency

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIndexBoundsAgree(t *testing.T) {
	for _, v := range []uint64{0, 1, 7, 8, 9, 15, 16, 17, 1000, 123456789, 1 << 40, 1<<63 + 5, ^uint64(0)} {
		i := index(v)
		lo, hi := bounds(i)
		assert.LessOrEqual(t, lo, v, "value %d bucket %d", v, i)
		if hi != 0 { // the last bucket's upper bound overflows
			assert.Less(t, v, hi, "value %d bucket %d", v, i)
		}
	}
}

func TestQuantilesWithinSixPercent(t *testing.T) {
	var h Histogram
	r := rand.New(rand.NewPCG(1, 2))
	vals := make([]time.Duration, 20000)
	for i := range vals {
		vals[i] = time.Duration(r.ExpFloat64() * float64(50*time.Microsecond))
		h.Record(vals[i])
	}
	slices.Sort(vals)
	s := h.Snapshot()
	require.EqualValues(t, len(vals), s.Count())
	for _, q := range []float64{0.5, 0.9, 0.99} {
		want := float64(vals[int(q*float64(len(vals)-1))])
		got := float64(s.Quantile(q))
		assert.InEpsilon(t, want, got, 0.07, "q=%v", q)
	}
}

func TestEmptyAndConcurrent(t *testing.T) {
	var h Histogram
	assert.Zero(t, h.Snapshot().Quantile(0.5))
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				h.Record(time.Millisecond)
			}
		}()
	}
	wg.Wait()
	s := h.Snapshot()
	assert.EqualValues(t, 4000, s.Count())
	assert.InEpsilon(t, float64(time.Millisecond), float64(s.Quantile(0.99)), 0.07)
}
