package procpool_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool"
)

// TestStreamYieldsEveryChunkThenTheAnswer: more chunks than the window,
// taken slowly: each arrives once, in order, and the worker waits for
// credit rather than the host buffering them.
func TestStreamYieldsEveryChunkThenTheAnswer(t *testing.T) {
	sys := newSystem(t)
	r, err := sys.Spawn(jobType(t, "stream"))
	require.NoError(t, err)
	ctx := context.Background()
	s, err := r.Stream(ctx, procpool.Blob, []byte("100"))
	require.NoError(t, err)
	i := 0
	for c := range s.Chunks() {
		require.Equal(t, fmt.Sprintf("chunk %d", i), string(c))
		if i < 40 {
			time.Sleep(time.Millisecond) // a slow consumer
		}
		i++
	}
	assert.Equal(t, 100, i)
	out, err := s.Wait(ctx)
	require.NoError(t, err)
	assert.Equal(t, "done", string(out))
}

func TestStreamStopsWhenTheCallerDoes(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "stream")
	jt.MaxWorkers = 1
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	s, err := r.Stream(ctx, procpool.Blob, []byte("100000"))
	require.NoError(t, err)
	n := 0
	for range s.Chunks() {
		if n++; n == 5 {
			break
		}
	}
	_, err = s.Wait(ctx)
	assert.ErrorIs(t, err, procpool.ErrCancelled, "ending the loop cancels the job")
	out, err := r.Call(ctx, procpool.Blob, []byte("3"))
	require.NoError(t, err, "the worker stopped its handler and serves the next job")
	assert.Equal(t, "done", string(out))
	st, err := r.Stats(ctx)
	require.NoError(t, err)
	assert.Zero(t, st.Crashes)
}

func TestStreamWithoutTheFeatureGivesTheAnswerOnly(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "stream")
	jt.NoFeatures = true
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	s, err := r.Stream(ctx, procpool.Blob, []byte("10"))
	require.NoError(t, err)
	n := 0
	for range s.Chunks() {
		n++
	}
	assert.Zero(t, n)
	out, err := s.Wait(ctx)
	require.NoError(t, err)
	assert.Equal(t, "done", string(out))
}
