package actors

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMapRingGrows checks the ordered Map's result ring: however many
// items are open when it grows, and in whatever order their results
// arrive, each is taken once, in input order, with its own result.
func TestMapRingGrows(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	m := &mapRun{ordered: true, ready: make([]mapSlot, minReady), wake: make(chan struct{}, 1), room: make(chan struct{}, 1)}
	var open []int // pulled, result not yet put
	for round := range 200 {
		// Submit a batch, as submit does.
		n := 1 + rng.IntN(1000)
		m.mu.Lock()
		m.grow(m.pulled + n - m.taken)
		for i := range n {
			open = append(open, m.pulled+i)
		}
		m.pulled += n
		m.mu.Unlock()
		require.GreaterOrEqual(t, len(m.ready), m.pulled-m.taken, "round %d", round)
		// Deliver a random part of the open items, in random order.
		rng.Shuffle(len(open), func(i, j int) { open[i], open[j] = open[j], open[i] })
		k := rng.IntN(len(open) + 1)
		for _, i := range open[:k] {
			m.put(i, []byte{byte(i), byte(i >> 8), byte(i >> 16)}, nil)
		}
		open = open[k:]
		// Take what is in order.
		for {
			m.mu.Lock()
			ready := m.ready[m.taken%len(m.ready)].full
			m.mu.Unlock()
			if !ready {
				break
			}
			want := m.taken
			r, ok := m.next()
			require.True(t, ok)
			require.Equal(t, want, r.Index)
			require.Equal(t, []byte{byte(want), byte(want >> 8), byte(want >> 16)}, r.Payload, "item %d", want)
		}
		// Keep the ring from growing without bound: the real window does.
		if m.pulled-m.taken > 4096 {
			for _, i := range open {
				m.put(i, []byte{byte(i), byte(i >> 8), byte(i >> 16)}, nil)
			}
			open = open[:0]
		}
	}
	require.Greater(t, len(m.ready), minReady, "the ring never grew")
	require.Greater(t, m.taken, 1000)
}
