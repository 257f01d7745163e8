package procpool_test

import (
	"bytes"
	"context"
	"crypto/sha512"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/actors"
	"github.com/procpool/procpool/internal/proctest"
	"github.com/procpool/procpool/supervisor"
)

// workerPID asks a "mixed" pool's worker for its host-side pid.
func workerPID(t *testing.T, r *procpool.Router) int {
	t.Helper()
	// A worker lives in a PID namespace (childproc's containment): it
	// tells which, and its pid there, by which the host finds it.
	out, err := r.Call(context.Background(), procpool.Blob, []byte("pidns:"))
	require.NoError(t, err)
	want, nspid, _ := strings.Cut(string(out), " ")
	last := regexp.MustCompile(`(?m)^NSpid:.*\s` + regexp.QuoteMeta(nspid) + `$`)
	for _, p := range proctest.All() {
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", p.PID))
		if err != nil || ns != want {
			continue
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID))
		if err == nil && last.Match(status) {
			return p.PID
		}
	}
	t.Fatalf("no process in PID namespace %s", out)
	return 0
}

// sharedMapping reports whether process pid maps a procpool shared memory
// region, and whether it still holds a descriptor of one.
func sharedMapping(t *testing.T, pid int) (mapped, fdOpen bool) {
	t.Helper()
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	require.NoError(t, err)
	mapped = bytes.Contains(maps, []byte("memfd:procpool-"))
	fds, err := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	require.NoError(t, err)
	for _, fd := range fds {
		if target, err := os.Readlink(fd); err == nil && strings.HasPrefix(target, "/memfd:procpool-") {
			fdOpen = true
		}
	}
	return mapped, fdOpen
}

func TestSharedMemoryCarriesLargePayloads(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "mixed")
	jt.MaxWorkers = 1
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()

	mapped, fdOpen := sharedMapping(t, workerPID(t, r))
	assert.True(t, mapped, "the worker maps the region")
	assert.False(t, fdOpen, "and closes its descriptor, which its own children would inherit")

	// 64 KiB and up cross through the region both ways; smaller ones and
	// those larger than half the region (32 MiB by default) in frames.
	sizes := []int{1 << 10, 64 << 10, 1 << 20, 5 << 20, 20 << 20}
	for _, n := range sizes {
		in := append([]byte("echo:"), bytes.Repeat([]byte{byte(n >> 10)}, n)...)
		out, err := r.Call(ctx, procpool.Blob, in)
		require.NoError(t, err, "size %d", n)
		require.True(t, bytes.Equal(in[5:], out), "size %d", n)
	}
	st, err := r.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(3), st.SharedRequests, "requests of 64 KiB and more up to what fits the requests' half")
	assert.Equal(t, uint64(3), st.SharedResults, "results of 64 KiB and more up to what fits the results' half")
}

func TestSharedMemoryUnderConcurrencyAndFallback(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "echo")
	jt.MaxWorkers, jt.InFlight = 2, 4
	jt.SharedMemory = 2 << 20 // about 1 MiB each way: most jobs find it full
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 16 {
		wg.Go(func() {
			for i := range 10 {
				in := bytes.Repeat([]byte{byte(g), byte(i)}, (300<<10+g*4096)/2)
				out, err := r.Call(ctx, procpool.Blob, in)
				if err == nil && !bytes.Equal(in, out) {
					err = fmt.Errorf("goroutine %d job %d: wrong result", g, i)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st, err := r.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(160), st.Succeeded)
	assert.NotZero(t, st.SharedRequests)
	assert.Less(t, st.SharedRequests, uint64(160), "a full region sends payloads in frames")
	assert.NotZero(t, st.SharedResults)
}

func TestSharedMemoryOffOrDeclined(t *testing.T) {
	for name, set := range map[string]func(*procpool.JobType){
		"off":      func(jt *procpool.JobType) { jt.SharedMemory = -1 },
		"declined": func(jt *procpool.JobType) { jt.Env = []string{"TESTWORKER_NO_SHARED=1"} },
	} {
		t.Run(name, func(t *testing.T) {
			sys := newSystem(t)
			jt := jobType(t, "mixed")
			jt.MaxWorkers = 1
			set(&jt)
			r, err := sys.Spawn(jt)
			require.NoError(t, err)
			ctx := context.Background()
			in := append([]byte("sha512:"), bytes.Repeat([]byte("x"), 1<<20)...)
			out, err := r.Call(ctx, procpool.Blob, in)
			require.NoError(t, err)
			want := sha512.Sum512(in[7:])
			assert.Equal(t, want[:], out)
			st, err := r.Stats(ctx)
			require.NoError(t, err)
			assert.Zero(t, st.SharedRequests)
			mapped, _ := sharedMapping(t, workerPID(t, r))
			assert.False(t, mapped)
		})
	}
}

func TestSharedMemoryGarbageIsAProtocolFailure(t *testing.T) {
	for name, shared := range map[string]int{"out of bounds": 0, "without a region": -1} {
		t.Run(name, func(t *testing.T) {
			sys := newSystem(t)
			ev := watchEvents(sys)
			jt := jobType(t, "mixed")
			jt.MaxWorkers = 1
			jt.SharedMemory = shared
			jt.Policy = supervisor.Policy{Jobs: supervisor.JobFailure{MaxAttempts: 1}}
			r, err := sys.Spawn(jt)
			require.NoError(t, err)
			ctx := context.Background()
			_, err = r.Call(ctx, procpool.Blob, []byte("garbage:badspan"))
			require.ErrorIs(t, err, procpool.ErrWorkerCrashed)
			var ce *procpool.CrashError
			require.ErrorAs(t, err, &ce)
			assert.Contains(t, ce.Reason, "shared memory")
			require.Eventually(t, func() bool { return len(ev.of(actors.EventCrashed)) == 1 }, 5*time.Second, 5*time.Millisecond)
			crashed := ev.of(actors.EventCrashed)
			assert.Equal(t, supervisor.ProtocolFailure, crashed[0].Failure.Kind)
			out, err := r.Call(ctx, procpool.Blob, []byte("echo:fine"))
			require.NoError(t, err, "a replacement serves the next job")
			assert.Equal(t, "fine", string(out))
		})
	}
}
