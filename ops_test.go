package procpool_test

// Running a pool in production (issue 11): readiness and causes, resize,
// rolling update, shutdown modes, per-worker statistics.

import (
	"context"
	"io/fs"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool"
)

func TestReadyWaitsForTheMinimum(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "echo")
	jt.MinWorkers, jt.MaxWorkers = 2, 3
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, r.Ready(ctx))
	st, err := r.Stats(ctx)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, st.Idle+st.Busy, 2)
}

func TestReadySaysWhyAStartFailed(t *testing.T) {
	missingDir := t.TempDir()
	for _, tc := range []struct {
		name  string
		spec  func(procpool.JobType) procpool.JobType
		check func(t *testing.T, err error)
	}{
		{"missing binary", func(jt procpool.JobType) procpool.JobType {
			jt.Command = "./bin/nope"
			jt.Dir = missingDir
			return jt
		}, func(t *testing.T, err error) {
			assert.ErrorIs(t, err, fs.ErrNotExist, "the start's own error is reachable")
			var pe *fs.PathError
			assert.ErrorAs(t, err, &pe)
			msg := err.Error()
			assert.Equal(t, 1, strings.Count(msg, "./bin/nope"), "the program named once in %q", msg)
			assert.Equal(t, 1, strings.Count(msg, missingDir), "the dir named once in %q", msg)
			assert.Contains(t, msg, "childproc: start ./bin/nope (dir "+missingDir+"): no such file or directory")
		}},
		{"a name the worker does not serve", func(jt procpool.JobType) procpool.JobType {
			jt.Name = "no-such-job-type"
			return jt
		}, func(t *testing.T, err error) {
			assert.Contains(t, err.Error(), `not "no-such-job-type"`)
		}},
		{"not a worker", func(jt procpool.JobType) procpool.JobType {
			jt.Command, jt.Args = "/bin/cat", nil
			return jt
		}, func(t *testing.T, err error) {
			var ce *procpool.CrashError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, 0, ce.ExitCode, "cat read the end of its input and exited")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := newSystem(t)
			jt := tc.spec(jobType(t, "echo"))
			jt.MinWorkers = 1
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := sys.SpawnReady(ctx, jt)
			require.Error(t, err)
			assert.ErrorIs(t, err, procpool.ErrWorkerCrashed)
			var ce *procpool.CrashError
			require.ErrorAs(t, err, &ce)
			tc.check(t, err)
			assert.Empty(t, sys.JobTypes(), "SpawnReady shut the broken router down")
		})
	}
}

func TestUnavailableCarriesTheLastFailure(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "echo")
	jt.Command, jt.Dir = "./bin/nope", t.TempDir()
	jt.MinWorkers = 1
	jt.Policy = procpool.Policy{
		Intensity: procpool.Intensity{MaxRestarts: 1, Window: time.Minute},
		Backoff:   procpool.Backoff{Initial: time.Millisecond, Max: time.Millisecond, Multiplier: 1},
	}
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	require.Eventually(t, func() bool {
		st, err := r.Stats(ctx)
		return err == nil && !st.Available
	}, 20*time.Second, 5*time.Millisecond)
	_, err = r.Call(ctx, procpool.Blob, []byte("x"))
	require.ErrorIs(t, err, procpool.ErrUnavailable)
	var ce *procpool.CrashError
	require.ErrorAs(t, err, &ce, "the cause behind the give-up")
	assert.ErrorIs(t, err, fs.ErrNotExist)
	st, err := r.Stats(ctx)
	require.NoError(t, err)
	require.NotNil(t, st.LastFailure)
	assert.ErrorIs(t, st.LastFailure, fs.ErrNotExist)
}

func TestResizeTakesEffectAtOnce(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "echo")
	jt.MinWorkers, jt.MaxWorkers = 0, 1
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, r.Resize(ctx, 3, 4))
	require.NoError(t, r.Ready(ctx), "the new minimum is started")
	assert.Equal(t, 3, r.JobType().MinWorkers)
	require.NoError(t, r.Resize(ctx, 1, 1))
	require.Eventually(t, func() bool {
		st, err := r.Stats(ctx)
		return err == nil && st.Workers() == 1
	}, 20*time.Second, 10*time.Millisecond, "workers above the new maximum retire")
	out, err := r.Call(ctx, procpool.Blob, []byte("still"))
	require.NoError(t, err)
	assert.Equal(t, "still", string(out))
	assert.ErrorIs(t, r.Resize(ctx, 2, 1), procpool.ErrInvalidJobType)
}

// workerEnv returns the value of GEN in the environment of the worker that
// runs the job.
func workerEnv(ctx context.Context, r *procpool.Router) (string, error) {
	out, err := r.Call(ctx, procpool.Blob, []byte("env:"))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "GEN="); ok {
			return v, nil
		}
	}
	return "", nil
}

func TestUpdateRollsEveryWorkerOver(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "mixed")
	jt.MinWorkers, jt.MaxWorkers, jt.InFlight = 3, 3, 2
	jt.Env = []string{"GEN=1"}
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, r.Ready(ctx))

	// Callers keep the pool busy through the rollout; none may fail.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var calls, most atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := r.Call(ctx, procpool.Blob, []byte("sleep:5"))
				assert.NoError(t, err)
				calls.Add(1)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
				if n := int64(liveChildren()); n > most.Load() {
					most.Store(n)
				}
			}
		}
	}()
	next := jt
	next.Env = []string{"GEN=2"}
	require.NoError(t, r.Update(ctx, next))
	close(stop)
	wg.Wait()
	assert.Positive(t, calls.Load())
	assert.LessOrEqual(t, most.Load(), int64(4), "MaxWorkers 3, plus one during the rollout")
	st, err := r.Stats(ctx)
	require.NoError(t, err)
	for _, w := range st.PerWorker {
		assert.Equal(t, 2, w.Generation, "worker %d", w.PID)
	}
	for range 6 {
		gen, err := workerEnv(ctx, r)
		require.NoError(t, err)
		require.Equal(t, "2", gen)
	}
	assert.Zero(t, st.Failed)
	assert.Zero(t, st.Crashes)

	bad := next
	bad.Command = "./bin/nope"
	bad.Dir = t.TempDir()
	err = r.Update(ctx, bad)
	require.Error(t, err, "a binary that does not start aborts the rollout")
	assert.ErrorIs(t, err, fs.ErrNotExist)
	for range 6 {
		gen, err := workerEnv(ctx, r)
		require.NoError(t, err, "the old workers keep serving")
		require.Equal(t, "2", gen)
	}
	assert.Equal(t, next.Command, r.JobType().Command)
	renamed := next
	renamed.Name = "other"
	assert.ErrorIs(t, r.Update(ctx, renamed), procpool.ErrInvalidJobType)
}

func TestNameCanBeSpawnedAgainAfterShutdown(t *testing.T) {
	sys := newSystem(t)
	r, err := sys.Spawn(jobType(t, "echo"))
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, r.Shutdown(ctx))
	assert.Empty(t, sys.JobTypes())
	_, err = sys.Router("echo")
	assert.ErrorIs(t, err, procpool.ErrShuttingDown)
	r2, err := sys.Spawn(jobType(t, "echo"))
	require.NoError(t, err)
	out, err := r2.Call(ctx, procpool.Blob, []byte("again"))
	require.NoError(t, err)
	assert.Equal(t, "again", string(out))
	assert.Equal(t, []string{"echo"}, sys.JobTypes())
}

func TestShutdownModes(t *testing.T) {
	for _, mode := range []procpool.ShutdownMode{procpool.Drain, procpool.CancelQueued, procpool.Abort} {
		t.Run(mode.String(), func(t *testing.T) {
			sys := newSystem(t)
			jt := jobType(t, "sleep")
			jt.MinWorkers, jt.MaxWorkers = 1, 1
			r, err := sys.Spawn(jt)
			require.NoError(t, err)
			ctx := context.Background()
			require.NoError(t, r.Ready(ctx))
			running, err := r.Submit(ctx, procpool.Blob, []byte("300"))
			require.NoError(t, err)
			var queued []*procpool.Job
			for range 4 {
				j, err := r.Submit(ctx, procpool.Blob, []byte("1"))
				require.NoError(t, err)
				queued = append(queued, j)
			}
			time.Sleep(50 * time.Millisecond) // the first one runs
			require.NoError(t, r.ShutdownWith(ctx, mode))
			_, err = running.Wait(ctx)
			if mode == procpool.Abort {
				assert.ErrorIs(t, err, procpool.ErrShuttingDown)
			} else {
				assert.NoError(t, err, "the running job finishes")
			}
			for _, j := range queued {
				_, err := j.Wait(ctx)
				if mode == procpool.Drain {
					assert.NoError(t, err, "a drain runs the queue")
				} else {
					assert.ErrorIs(t, err, procpool.ErrShuttingDown)
				}
			}
		})
	}
}

func TestStatsPerWorkerAndLatencySplit(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "sleep")
	jt.MinWorkers, jt.MaxWorkers = 2, 2
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, r.Ready(ctx))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := r.Call(ctx, procpool.Blob, []byte("20"))
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	st, err := r.Stats(ctx)
	require.NoError(t, err)
	require.Len(t, st.PerWorker, 2)
	var done uint64
	for _, w := range st.PerWorker {
		assert.Positive(t, w.PID)
		assert.Equal(t, procpool.PhaseReady, w.Phase)
		assert.Equal(t, 1, w.Generation)
		assert.Positive(t, w.RSS)
		assert.Positive(t, w.Uptime)
		assert.Contains(t, []string{"session", "cgroup", "shared-namespace", "pid-namespace"}, w.Containment, "the containment tier in force")
		done += w.JobsDone
	}
	assert.Equal(t, uint64(8), done)
	assert.GreaterOrEqual(t, st.RunTimeP50, 15*time.Millisecond, "the run time includes the handler's sleep of 20 ms (the histogram rounds)")
	assert.Positive(t, st.QueueWaitP99, "8 jobs on 2 workers: some waited")
	assert.Less(t, st.QueueWaitP50, st.LatencyP99)
	assert.Equal(t, "crashed", procpool.EventCrashed.String(), "the event kinds are reachable from the root package")
}
