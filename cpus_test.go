package procpool_test

import (
	"context"
	"runtime"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool"
)

// TestWorkersShareTheCPUs: a pool of one Go worker per CPU runs each with
// GOMAXPROCS 1, not one thread of Go code per CPU in every worker; a job
// type that sets GOMAXPROCS keeps its own.
func TestWorkersShareTheCPUs(t *testing.T) {
	ncpu := runtime.NumCPU()
	if ncpu < 2 {
		t.Skip("one CPU: every share is the whole machine")
	}
	gomaxprocs := func(t *testing.T, jt procpool.JobType) int {
		r, err := newSystem(t).Spawn(jt)
		require.NoError(t, err)
		out, err := r.Call(context.Background(), procpool.Blob, nil)
		require.NoError(t, err)
		n, err := strconv.Atoi(string(out))
		require.NoError(t, err)
		return n
	}
	t.Run("one worker per CPU", func(t *testing.T) {
		jt := jobType(t, "gomaxprocs")
		jt.MaxWorkers = ncpu
		require.Equal(t, 1, gomaxprocs(t, jt))
	})
	t.Run("two CPUs each", func(t *testing.T) {
		jt := jobType(t, "gomaxprocs")
		jt.MaxWorkers = max(1, ncpu/2)
		require.Equal(t, ncpu/jt.MaxWorkers, gomaxprocs(t, jt))
	})
	t.Run("the job type's own", func(t *testing.T) {
		jt := jobType(t, "gomaxprocs")
		jt.MaxWorkers, jt.Env = ncpu, []string{"GOMAXPROCS=3"}
		require.Equal(t, 3, gomaxprocs(t, jt))
	})
}
