package actors

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
