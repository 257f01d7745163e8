package procpool_test

import (
	"context"
	"crypto/sha512"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool"
)

// mapYields ranges over r.Map of inputs and requires every item to succeed
// with want of its input, in input order; it returns how many came.
func mapYields(t *testing.T, r *procpool.Router, inputs [][]byte, want func(in []byte) []byte) int {
	t.Helper()
	i := 0
	for out, err := range r.Map(context.Background(), procpool.Blob, slices.Values(inputs)) {
		require.NoError(t, err, "item %d", i)
		require.Equal(t, want(inputs[i]), out, "item %d", i)
		i++
	}
	return i
}

// digest is the result of the sha512 job type.
func digest(in []byte) []byte {
	d := sha512.Sum512(in)
	return d[:]
}

// same is the result of the echo job type.
func same(in []byte) []byte { return in }

func mapInputs(n, size int) [][]byte {
	in := make([][]byte, n)
	for i := range in {
		in[i] = []byte(fmt.Sprintf("%0*d", size, i))
	}
	return in
}

// jobsDone is the sum of r's workers' JobsDone.
func jobsDone(t *testing.T, r *procpool.Router) uint64 {
	t.Helper()
	st, err := r.Stats(context.Background())
	require.NoError(t, err)
	var done uint64
	for _, w := range st.PerWorker {
		done += w.JobsDone
	}
	return done
}

// TestMapYieldsEveryResultInOrder: thousands of small items, batched,
// every result correct and in input order, counted as jobs one by one:
// a worker's JobsDone counts an item before its result is yielded, so
// that a caller never has more results than the workers have answered.
func TestMapYieldsEveryResultInOrder(t *testing.T) {
	for _, noFeatures := range []bool{false, true} {
		t.Run(fmt.Sprintf("noFeatures=%v", noFeatures), func(t *testing.T) {
			sys := newSystem(t)
			jt := jobType(t, "sha512")
			jt.MaxWorkers, jt.InFlight, jt.NoFeatures = 2, 2, noFeatures
			r, err := sys.Spawn(jt)
			require.NoError(t, err)
			ctx := context.Background()
			inputs := mapInputs(5000, 100)
			i := 0
			for out, err := range r.Map(ctx, procpool.Blob, slices.Values(inputs)) {
				require.NoError(t, err, "item %d", i)
				require.Equal(t, digest(inputs[i]), out, "item %d", i)
				i++
				if i%250 == 0 {
					require.GreaterOrEqual(t, jobsDone(t, r), uint64(i), "JobsDone after %d results", i)
				}
			}
			assert.Equal(t, len(inputs), i)
			st, err := r.Stats(ctx)
			require.NoError(t, err)
			assert.EqualValues(t, len(inputs), st.Accepted, "items count as jobs")
			assert.EqualValues(t, len(inputs), st.Succeeded)
			assert.EqualValues(t, len(inputs), jobsDone(t, r), "the workers' JobsDone count each item")
		})
	}
}

func TestMapUnorderedYieldsEachIndexOnce(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "sha512")
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	inputs := mapInputs(3000, 64)
	seen := make([]bool, len(inputs))
	for res := range r.MapUnordered(context.Background(), procpool.Blob, slices.Values(inputs)) {
		require.NoError(t, res.Err)
		require.False(t, seen[res.Index], "index %d twice", res.Index)
		seen[res.Index] = true
		want := sha512.Sum512(inputs[res.Index])
		require.Equal(t, want[:], res.Payload)
	}
	for i, s := range seen {
		require.True(t, s, "index %d missing", i)
	}
}

// TestMapItemsFailOneByOne: a bad item, a crashing item and a panicking
// item fail on their own; with retries, the others of a crashed batch run
// again and succeed.
func TestMapItemsFailOneByOne(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "mixed")
	jt.MaxWorkers, jt.InFlight = 2, 1
	jt.Policy = procpool.Policy{
		Intensity: procpool.Intensity{MaxRestarts: 100, Window: time.Minute},
		Jobs:      procpool.JobFailure{MaxAttempts: 3, PoisonAfter: 2},
	}
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	var inputs [][]byte
	for i := range 600 {
		switch i {
		case 100:
			inputs = append(inputs, []byte("nope:x")) // an error of its own
		case 300:
			inputs = append(inputs, []byte("exit:3")) // kills every worker it runs on
		default:
			inputs = append(inputs, []byte(fmt.Sprintf("echo:%d", i)))
		}
	}
	i := 0
	for out, err := range r.Map(context.Background(), procpool.Blob, slices.Values(inputs)) {
		switch i {
		case 100:
			assert.ErrorIs(t, err, procpool.ErrRemote)
		case 300:
			assert.ErrorIs(t, err, procpool.ErrPoisonJob, "quarantined after 2 crashes")
		default:
			if assert.NoError(t, err, "item %d", i) {
				assert.Equal(t, fmt.Sprint(i), string(out))
			}
		}
		i++
	}
	assert.Equal(t, len(inputs), i)
}

func TestMapStopsWithItsContextAndItsLoop(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "sleep")
	jt.MaxWorkers, jt.InFlight = 2, 2
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	inputs := func(yield func([]byte) bool) {
		for {
			if !yield([]byte("20")) {
				return
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n, cancelled := 0, 0
	for _, err := range r.Map(ctx, procpool.Blob, inputs) {
		n++
		if n == 20 {
			cancel()
		}
		if err != nil {
			require.ErrorIs(t, err, procpool.ErrCancelled)
			cancelled++
		}
	}
	assert.GreaterOrEqual(t, n, 20, "an endless input stops with its context")
	n = 0
	for _, err := range r.Map(context.Background(), procpool.Blob, inputs) {
		require.NoError(t, err)
		if n++; n == 10 {
			break
		}
	}
	require.Eventually(t, func() bool {
		st, err := r.Stats(context.Background())
		return err == nil && st.Running == 0 && st.Queued == 0
	}, 10*time.Second, 10*time.Millisecond, "what was in flight after the loop ended was cancelled")
}

func TestMapValue(t *testing.T) {
	sys := newSystem(t)
	r, err := sys.Spawn(jobType(t, "echov"))
	require.NoError(t, err)
	in := func(yield func(any) bool) {
		for i := range 500 {
			var v any = echoValue{N: i}
			if i == 7 {
				v = make(chan int) // cannot be encoded
			}
			if !yield(v) {
				return
			}
		}
	}
	i := 0
	for out, err := range procpool.MapValue[echoValue](context.Background(), r, in) {
		if i == 7 {
			assert.ErrorContains(t, err, "encode chan int")
		} else if assert.NoError(t, err) {
			assert.Equal(t, i, out.N)
		}
		i++
	}
	assert.Equal(t, 500, i)
}

// TestMapLargeItemsTakeTheSharedRegion: a Map's items of 64 KiB and more
// travel through the worker's shared memory region, as a Call's do; the
// small ones beside them take it too with a worker that negotiated
// "shareditems" (the Go SDK), and travel in frames without the features.
// Every result is right.
func TestMapLargeItemsTakeTheSharedRegion(t *testing.T) {
	for _, noFeatures := range []bool{false, true} {
		t.Run(fmt.Sprintf("noFeatures=%v", noFeatures), func(t *testing.T) {
			sys := newSystem(t)
			jt := jobType(t, "sha512")
			jt.MaxWorkers, jt.InFlight, jt.NoFeatures = 1, 2, noFeatures
			r, err := sys.Spawn(jt)
			require.NoError(t, err)
			ctx := context.Background()
			var inputs [][]byte
			large := 0
			for i := range 40 {
				size := 100
				if i%3 == 0 {
					size, large = 128<<10, large+1
				}
				in := make([]byte, size)
				for k := range in {
					in[k] = byte(i + k)
				}
				inputs = append(inputs, in)
			}
			i := mapYields(t, r, inputs, digest)
			require.Equal(t, len(inputs), i)
			st, err := r.Stats(ctx)
			require.NoError(t, err)
			if noFeatures {
				assert.EqualValues(t, large, st.SharedRequests, "every large item, and only those, through the region")
			} else {
				assert.Greater(t, st.SharedRequests, uint64(large), "small items through the region too")
			}
		})
	}
}

// TestMapSmallItemsShareTheRegion: with "shareditems", the small items of
// each batch travel in one block of the worker's shared memory region,
// released once the batch's last item is answered: a region far smaller
// than what crosses it carries nearly every item, which it could not if a
// block outlived its batch (the items would fall back to frames). Echoes
// that return their payloads, read in place from the block, check that no
// block is reused while an item of its batch still runs, one of them 30 ms
// after the others are answered; a payload over the worker's frame limit
// fails alone, as it would without the region. (TestMapItemsFailOneByOne
// crashes workers mid-batch, with the items in the region.)
func TestMapSmallItemsShareTheRegion(t *testing.T) {
	t.Run("echo", func(t *testing.T) {
		sys := newSystem(t)
		jt := jobType(t, "echo")
		// Two batches of 256 KB (512 items, spread over two per worker)
		// per worker: half of its region.
		jt.MaxWorkers, jt.InFlight, jt.SharedMemory = 2, 2, 1<<20
		r, err := sys.Spawn(jt)
		require.NoError(t, err)
		ctx := context.Background()
		inputs := mapInputs(20000, 500) // 10 MB: twenty times the region
		require.Equal(t, len(inputs), mapYields(t, r, inputs, same))
		st, err := r.Stats(ctx)
		require.NoError(t, err)
		assert.Greater(t, st.SharedRequests, uint64(len(inputs)*9/10), "items through the region (of %d)", len(inputs))
	})
	t.Run("slow item", func(t *testing.T) {
		// The first item of each batch reads its payload 30 ms after the
		// others are answered and the next batches sent: its block must
		// still be its own.
		sys := newSystem(t)
		jt := jobType(t, "slowecho")
		jt.MaxWorkers, jt.InFlight = 1, 2
		r, err := sys.Spawn(jt)
		require.NoError(t, err)
		var inputs [][]byte
		for i := range 600 {
			ms := 0
			if i%100 == 0 {
				ms = 30
			}
			inputs = append(inputs, []byte(fmt.Sprintf("%d:item %04d", ms, i)))
		}
		i := 0
		for out, err := range r.Map(context.Background(), procpool.Blob, slices.Values(inputs)) {
			require.NoError(t, err, "item %d", i)
			require.Equal(t, fmt.Sprintf("item %04d", i), string(out), "item %d", i)
			i++
		}
		require.Equal(t, len(inputs), i)
	})
	t.Run("too large for the worker", func(t *testing.T) {
		sys := newSystem(t)
		jt := jobType(t, "echo")
		jt.MaxWorkers, jt.InFlight = 1, 2
		jt.Env = []string{"TESTWORKER_MAX_FRAME=4096"}
		r, err := sys.Spawn(jt)
		require.NoError(t, err)
		inputs := mapInputs(200, 100)
		inputs[77] = make([]byte, 10<<10) // fits the region, not the worker's frames
		i := 0
		for out, err := range r.Map(context.Background(), procpool.Blob, slices.Values(inputs)) {
			if i == 77 {
				require.ErrorIs(t, err, procpool.ErrPayloadTooLarge)
			} else {
				require.NoError(t, err, "item %d", i)
				require.Equal(t, string(inputs[i]), string(out), "item %d", i)
			}
			i++
		}
		require.Equal(t, len(inputs), i)
	})
}

// TestMapSendsSlowInputsWithoutWaitingForMore: while every worker has
// batches open, Map waits for more inputs to make a larger batch, but no
// longer than until a batch ends: inputs given one at a time, each only
// once the previous one's result is in, all get through behind two slow
// ones.
func TestMapSendsSlowInputsWithoutWaitingForMore(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "slowecho")
	jt.MaxWorkers, jt.InFlight = 1, 2 // two batches open fill the worker
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const fast = 5
	answered := make(chan struct{})
	inputs := func(yield func([]byte) bool) {
		for i := range 2 { // a batch each: Map sends the inputs at hand
			if !yield([]byte(fmt.Sprintf("300:slow %d", i))) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		for i := range fast {
			if !yield([]byte(fmt.Sprintf("0:fast %d", i))) {
				return
			}
			select {
			case <-answered:
			case <-ctx.Done():
				return
			}
		}
	}
	var got []string
	for res := range r.MapUnordered(ctx, procpool.Blob, inputs) {
		require.NoError(t, res.Err, "item %d", res.Index)
		got = append(got, string(res.Payload))
		if len(res.Payload) > 0 && res.Payload[0] == 'f' {
			answered <- struct{}{}
		}
	}
	require.NoError(t, ctx.Err(), "the inputs given one at a time were held back")
	require.ElementsMatch(t, []string{"slow 0", "slow 1", "fast 0", "fast 1", "fast 2", "fast 3", "fast 4"}, got)
}

// TestMapSendsInputsPastAHungBatch: a batch that does not end (here, two
// that sleep for seconds, as a hung worker's would until it is killed)
// holds back the inputs that come slowly behind them for a moment only:
// while a slot is free, their results arrive long before the slow ones.
func TestMapSendsInputsPastAHungBatch(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "slowecho")
	jt.MaxWorkers, jt.InFlight = 1, 4 // two batches open, two slots free
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const fast = 3
	answered := make(chan struct{})
	inputs := func(yield func([]byte) bool) {
		for i := range 2 { // a batch each: Map sends the inputs at hand
			if !yield([]byte(fmt.Sprintf("1500:slow %d", i))) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		for i := range fast {
			if !yield([]byte(fmt.Sprintf("0:fast %d", i))) {
				return
			}
			select {
			case <-answered:
			case <-ctx.Done():
				return
			}
		}
	}
	var got []string
	for res := range r.MapUnordered(ctx, procpool.Blob, inputs) {
		require.NoError(t, res.Err, "item %d", res.Index)
		got = append(got, string(res.Payload))
		if len(res.Payload) > 0 && res.Payload[0] == 'f' {
			answered <- struct{}{}
		}
	}
	require.Equal(t, []string{"fast 0", "fast 1", "fast 2"}, got[:fast], "the fast items wait for no slow batch")
	require.ElementsMatch(t, []string{"slow 0", "slow 1"}, got[fast:])
}
