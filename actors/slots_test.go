package actors

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSlotBoardFollowsTheQueue(t *testing.T) {
	b := newSlotBoard()
	a, c := &workerState{}, &workerState{}
	all := []*workerState{a, c}
	for _, w := range all {
		b.open(w, 1, -1, 1<<20)
		b.publish(w)
		require.NoError(t, b.check(all))
	}
	w, _ := b.take(10)
	assert.Same(t, c, w, "most recently freed first")
	b.setQueued(1)
	w, _ = b.take(10)
	assert.Nil(t, w, "a queued job goes before a new one")
	assert.False(t, b.finish(c), "with jobs queued, a freed slot is handed to the router")
	require.NoError(t, b.check(all))
	ok, _ := b.place(c)
	assert.True(t, ok, "the router places a queued job on it")
	b.setQueued(0)
	b.close(a)
	require.NoError(t, b.check(all))
	w, _ = b.take(10)
	assert.Nil(t, w, "closing withdraws the published slots")
	assert.True(t, b.finish(c), "with nothing queued, a freed slot goes back on the board")
	w, _ = b.take(10)
	assert.Same(t, c, w)
	require.NoError(t, b.check(all))
}

func TestSlotBoardBudgetAndLimits(t *testing.T) {
	b := newSlotBoard()
	small, big := &workerState{}, &workerState{}
	all := []*workerState{small, big}
	b.open(small, 2, -1, 100)
	b.open(big, 2, 3, 1<<20)
	for _, w := range all {
		b.publish(w)
		b.publish(w)
	}
	require.NoError(t, b.check(all))
	w, _ := b.take(1000)
	assert.Same(t, big, w, "only a worker whose frame limit fits")
	w, due := b.take(1000)
	assert.Same(t, big, w)
	assert.False(t, due)
	assert.True(t, b.finish(big))
	w, due = b.take(1000)
	assert.Same(t, big, w)
	assert.True(t, due, "its third job spends its budget")
	require.NoError(t, b.check(all))
	w, _ = b.take(1000)
	assert.Nil(t, w, "a spent worker takes no job")
	assert.False(t, b.finish(big), "nor gets its slots back")
	w, _ = b.take(10)
	assert.Same(t, small, w)
	require.NoError(t, b.check(all))
}

// TestSlotBoardRulesHoldUnderRandomSteps drives a board through random
// sequences of every operation the router and callers use, checking its
// rules after each step.
func TestSlotBoardRulesHoldUnderRandomSteps(t *testing.T) {
	for seed := range 200 {
		rnd := rand.New(rand.NewPCG(uint64(seed), 7))
		b := newSlotBoard()
		var workers []*workerState
		for range 1 + rnd.IntN(4) {
			workers = append(workers, &workerState{})
		}
		opened := map[*workerState]bool{}
		busy := map[*workerState]int{}
		queued := 0
		for step := range 300 {
			w := workers[rnd.IntN(len(workers))]
			switch op := rnd.IntN(9); {
			case op == 0 && !opened[w]:
				budget := -1
				if rnd.IntN(2) == 0 {
					budget = 1 + rnd.IntN(5)
				}
				b.open(w, 1+rnd.IntN(4), budget, int64(rnd.IntN(3))*100)
				opened[w] = true
			case op == 1:
				b.publish(w)
			case op == 2:
				if ok, _ := b.place(w); ok {
					busy[w]++
				}
			case op == 3:
				if got, _ := b.take(int64(rnd.IntN(3)) * 100); got != nil {
					busy[got]++
					require.Zero(t, queued, "a caller took a slot while jobs were queued")
				}
			case op == 4:
				if got, _ := b.takeFor(int64(rnd.IntN(3)) * 100); got != nil {
					busy[got]++
				}
			case op == 5 && busy[w] > 0:
				busy[w]--
				b.finish(w)
			case op == 6 && busy[w] > 0:
				busy[w]--
				b.abandon(w)
			case op == 7 && rnd.IntN(4) == 0:
				b.close(w)
			case op == 8:
				queued = rnd.IntN(3)
				b.setQueued(queued)
			}
			require.NoError(t, b.check(workers), "seed %d step %d", seed, step)
			for _, w := range workers {
				require.Equal(t, busy[w], b.busy(w), "seed %d step %d: busy", seed, step)
			}
		}
	}
}
