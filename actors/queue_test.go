package actors

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool/codec"
)

func TestJobQueueOrderGrowthAndRemoval(t *testing.T) {
	var q jobQueue
	jobs := make([]*Job, 40)
	for i := range jobs {
		jobs[i] = NewJob(Blob, nil)
	}
	for _, j := range jobs[1:] {
		q.pushBack(j)
	}
	q.pushFront(jobs[0]) // a retried job goes first
	require.Equal(t, 40, q.len())
	assert.True(t, q.remove(jobs[7]))
	assert.False(t, q.remove(jobs[7]), "removed once")
	for i, j := range jobs {
		if i == 7 {
			continue
		}
		require.Same(t, j, q.popFront(), "position %d", i)
	}
	assert.Zero(t, q.len())
}

func TestGateSlotsFollowTheQueue(t *testing.T) {
	g := newGate(4, codec.DefaultMaxFrame)
	a, b := &workerState{}, &workerState{}
	g.pushSlot(a)
	g.pushSlot(b)
	assert.Same(t, b, g.takeSlot(), "most recently freed first")
	g.setQueued(1)
	assert.Nil(t, g.takeSlot(), "a queued job goes before a new one")
	assert.False(t, g.giveSlot(b), "with jobs queued, a freed slot goes to the router")
	assert.Same(t, a, g.nextSlot(1))
	g.closeWorker(a)
	assert.False(t, g.giveSlot(a), "a closed worker's slot is void")
	g.pushSlot(a)
	assert.Nil(t, g.takeSlot())
	assert.True(t, g.giveSlot(b))
	g.closeWorker(b)
	assert.Nil(t, g.takeSlot(), "closing withdraws published slots")
}
