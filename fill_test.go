package procpool_test

import (
	"bytes"
	"context"
	"crypto/sha512"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool"
)

// TestCallFillBuildsThePayloadInPlace: a large payload built by CallFill
// crosses through the worker's shared memory region without a copy; small
// ones, queued ones and ones that find no room go in buffers of their own,
// all byte-exact.
func TestCallFillBuildsThePayloadInPlace(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "sha512")
	jt.MinWorkers, jt.MaxWorkers = 1, 1
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, r.Ready(ctx))
	for _, n := range []int{0, 100, 64 << 10, 1 << 20, 12 << 20} {
		src := bytes.Repeat([]byte{byte(n), 7}, n/2)
		sum, err := r.CallFill(ctx, procpool.Blob, len(src), func(p []byte) {
			require.Len(t, p, len(src))
			copy(p, src)
		})
		require.NoError(t, err, "size %d", n)
		want := sha512.Sum512(src)
		require.Equal(t, want[:], sum, "size %d", n)
	}
	st, err := r.Stats(ctx)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, st.SharedRequests, uint64(2), "the large ones were built in the region")

	// Four callers on one worker: some wait in the queue.
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := bytes.Repeat([]byte{byte(g)}, 256<<10)
			want := sha512.Sum512(src)
			for range 5 {
				sum, err := r.CallFill(ctx, procpool.Blob, len(src), func(p []byte) { copy(p, src) })
				if !assert.NoError(t, err) || !assert.Equal(t, want[:], sum) {
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestCallFillRefusesABadValue(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "echov")
	jt.MinWorkers, jt.MaxWorkers = 1, 1
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, r.Ready(ctx))
	for _, n := range []int{16, 128 << 10} { // in a buffer, in the region
		_, err = r.CallFill(ctx, procpool.Value, n, func(p []byte) {
			for i := range p {
				p[i] = 0xc1 // never valid msgpack
			}
		})
		assert.ErrorIs(t, err, procpool.ErrBadPayload, "size %d", n)
	}
	out, err := r.Call(ctx, procpool.Value, []byte{0x80}) // {} decodes into the echo value
	require.NoError(t, err, "the worker was not harmed")
	assert.NotEmpty(t, out)
	st, err := r.Stats(ctx)
	require.NoError(t, err)
	assert.Zero(t, st.Crashes)
}
