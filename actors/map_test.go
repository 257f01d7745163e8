package actors

import (
	"errors"
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

// TestMapBatchSize checks how many items a Map's next batch takes: small
// items fill batches up to maxBatchItems or batchBytes, spread over two
// batches per worker however many slots the pool has; large items go one
// per batch; few items at hand are spread rather than sent in one.
func TestMapBatchSize(t *testing.T) {
	m := &mapRun{}
	for _, c := range []struct {
		name                     string
		first, atHand            int
		workers, inFlight, wantN int
	}{
		{"64 B, pool of 2 × 2", 64, 2047, 2, 2, 512},
		{"64 B, pool of 2 × 8: as large as 2 × 2", 64, 2047, 2, 8, 512},
		{"64 B, pool of 2 × 1", 64, 2047, 2, 1, 1024},
		{"64 B, many workers", 64, 2047, 16, 8, 64},
		{"4 KiB: batchBytes bounds it", 4 << 10, 2047, 1, 1, 256},
		{"few at hand", 64, 9, 2, 8, 3},
		{"one at hand", 64, 0, 2, 8, 1},
		{"1 MiB: alone", 1 << 20, 2047, 2, 8, 1},
	} {
		spread := batchSpread(c.workers, c.inFlight)
		require.Equal(t, c.wantN, m.batchSize(c.first, c.atHand, spread, 0), c.name)
	}
	require.Equal(t, 1, batchSpread(0, 0), "a spread is at least one batch")
}

// TestBatchGiveMany checks the delivery of a batch response's outcomes at
// once: each item is delivered once (a repeat is dropped), an outcome left
// to the caller's context is not delivered, and the Map's sink maps items
// to inputs, around those refused before the batch was made.
func TestBatchGiveMany(t *testing.T) {
	m := &mapRun{ordered: true, ready: make([]mapSlot, minReady), wake: make(chan struct{}, 1), room: make(chan struct{}, 1),
		ended: make(chan struct{}, 1)}
	m.pulled = 5
	m.open.Store(1)
	j := &Job{}
	// Inputs 0..4; input 1 was refused: items 0..3 are inputs 0, 2, 3, 4.
	b := newBatch(j, make([][]byte, 4), &mapSink{m: m, base: 0, index: []int{0, 2, 3, 4}})
	j.batch = b
	boom := errors.New("boom")
	b.giveMany([]itemOutcome{
		{item: 0, result: []byte("a")},
		{item: 1, err: errCallerDecides},
		{item: 0, result: []byte("again")},
		{item: 3, err: boom},
	})
	require.False(t, b.allDone())
	require.Equal(t, []int{1, 2}, b.pending())
	b.give(1, []byte("c"), nil)
	b.giveMany([]itemOutcome{{item: 2, result: []byte("d")}, {item: 3, result: []byte("late")}})
	require.True(t, b.allDone())
	require.Zero(t, m.open.Load(), "the Map job ended, once")
	require.Len(t, m.ended, 1)
	want := map[int]MapResult{0: {Index: 0, Payload: []byte("a")}, 2: {Index: 2, Payload: []byte("c")},
		3: {Index: 3, Payload: []byte("d")}, 4: {Index: 4, Err: boom}}
	for index, r := range want {
		s := m.ready[index]
		require.True(t, s.full, "input %d delivered", index)
		require.Equal(t, r, s.r, "input %d", index)
	}
	require.False(t, m.ready[1].full, "the refused input is not the batch's")
}
