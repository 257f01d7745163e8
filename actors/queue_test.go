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

func TestCrashErrorShowsTheTellingStderrLine(t *testing.T) {
	tail := []string{
		"worker: panic in job 1 of type \"x\": boom",
		"goroutine 5 [running]:",
		"main.handler({0x1, 0x2})",
		"\t/src/main.go:12 +0x45",
		"created by worker.(*conn).startJob in goroutine 19",
		"\t/src/conn.go:435 +0x82c",
	}
	e := &CrashError{Cause: ErrWorkerCrashed, StderrTail: tail}
	assert.Contains(t, e.Error(), `last stderr: "worker: panic in job 1 of type \"x\": boom"`)
	assert.Equal(t, "only", tellingLine([]string{"only"}))
	assert.Equal(t, "\tframe", tellingLine([]string{"\tframe"}), "nothing telling: the last line")
	assert.Empty(t, tellingLine(nil))
}
