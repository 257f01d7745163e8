package procpool_test

import (
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/actors"
	"github.com/procpool/procpool/internal/proctest"
	"github.com/procpool/procpool/supervisor"
)

// events collects the supervision events of one system.
type events struct {
	mu  sync.Mutex
	all []*procpool.WorkerEvent
}

func watchEvents(sys *procpool.System) *events {
	e := &events{}
	sys.ActorSystem().EventStream.Subscribe(func(m any) {
		if ev, ok := m.(*procpool.WorkerEvent); ok {
			e.mu.Lock()
			e.all = append(e.all, ev)
			e.mu.Unlock()
		}
	})
	return e
}

func (e *events) of(kind actors.EventKind) []*procpool.WorkerEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*procpool.WorkerEvent
	for _, ev := range e.all {
		if ev.Kind == kind {
			out = append(out, ev)
		}
	}
	return out
}

// chaos runs n jobs of mixed sizes through a pool while another goroutine
// SIGKILLs a random worker every 20–50 ms, and returns each job's outcome.
func chaos(t *testing.T, policy supervisor.Policy, n, inFlight int) (*procpool.Router, []error) {
	sys := newSystem(t)
	jt := jobType(t, "sha512")
	jt.MinWorkers, jt.MaxWorkers, jt.InFlight = 2, 4, inFlight
	jt.Policy = policy
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()

	stop := make(chan struct{})
	var killer sync.WaitGroup
	var kills atomic.Int64
	killer.Add(1)
	go func() {
		defer killer.Done()
		rnd := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(20+rnd.IntN(31)) * time.Millisecond):
			}
			if kids := proctest.Children(); len(kids) > 0 {
				if syscall.Kill(kids[rnd.IntN(len(kids))], syscall.SIGKILL) == nil {
					kills.Add(1)
				}
			}
		}
	}()

	sizes := []int{0, 64, 1 << 10, 16 << 10, 256 << 10}
	payloads := make([][]byte, len(sizes))
	sums := make([][64]byte, len(sizes))
	for i, sz := range sizes {
		payloads[i] = make([]byte, sz)
		for k := range payloads[i] {
			payloads[i][k] = byte(k * (i + 1))
		}
		sums[i] = sha512.Sum512(payloads[i])
	}
	errs := make([]error, n)
	var resolved atomic.Int64
	var wg sync.WaitGroup
	const callers = 8
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; i < n; i += callers {
				k := i % len(sizes)
				var sum []byte
				var err error
				if i%3 == 0 { // a future: its answer is read by the background reader
					var j *procpool.Job
					if j, err = r.Submit(ctx, procpool.Blob, payloads[k]); err == nil {
						sum, err = j.Wait(ctx)
					}
				} else {
					sum, err = r.Call(ctx, procpool.Blob, payloads[k])
				}
				resolved.Add(1)
				if err == nil && string(sum) != string(sums[k][:]) {
					err = fmt.Errorf("job %d: wrong digest", i)
				}
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	close(stop)
	killer.Wait()
	require.EqualValues(t, n, resolved.Load(), "every job resolved")
	assert.Positive(t, kills.Load(), "the chaos monkey killed workers")
	t.Logf("%d jobs, %d workers killed", n, kills.Load())

	st, err := r.Stats(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, n, st.Accepted)
	assert.EqualValues(t, n, st.Succeeded+st.Failed, "each accepted job resolved exactly once")
	assert.Positive(t, st.SharedRequests, "the 256 KiB payloads crossed through shared memory, killed workers and all")
	require.Eventually(t, func() bool {
		st, err := r.Stats(ctx)
		return err == nil && st.Workers() >= 2 && st.Workers() <= 4 && st.Starting == 0
	}, 10*time.Second, 10*time.Millisecond, "worker count back within min..max")
	// The last worker killed may not be reaped yet.
	require.Eventually(t, func() bool { return len(proctest.Zombies()) == 0 }, 10*time.Second, 10*time.Millisecond)
	return r, errs
}

func chaosJobs() int {
	if testing.Short() {
		return 2000
	}
	return 20000
}

func chaosPolicy() supervisor.Policy {
	return supervisor.Policy{
		Intensity: supervisor.Intensity{MaxRestarts: 100000, Window: time.Second},
		Backoff:   supervisor.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond, Multiplier: 2},
	}
}

func TestChaosWithRetryEveryJobSucceeds(t *testing.T) {
	p := chaosPolicy()
	p.Jobs = supervisor.JobFailure{MaxAttempts: 100, PoisonAfter: 100}
	for _, inFlight := range []int{1, 3} {
		t.Run(fmt.Sprintf("inflight=%d", inFlight), func(t *testing.T) {
			_, errs := chaos(t, p, chaosJobs(), inFlight)
			for i, err := range errs {
				require.NoError(t, err, "job %d", i)
			}
		})
	}
}

func TestChaosFailFastGivesTypedCrashErrors(t *testing.T) {
	_, errs := chaos(t, chaosPolicy(), chaosJobs(), 1)
	failed := 0
	for i, err := range errs {
		if err == nil {
			continue
		}
		failed++
		require.ErrorIs(t, err, procpool.ErrWorkerCrashed, "job %d", i)
		var ce *procpool.CrashError
		require.ErrorAs(t, err, &ce)
		assert.NotZero(t, ce.PID)
		assert.Equal(t, syscall.SIGKILL, ce.Signal, "job %d: %v", i, err)
		assert.Equal(t, 1, ce.Attempt)
	}
	assert.Positive(t, failed, "some jobs were running when their worker was killed")
}

func TestCrashLoopBacksOffGivesUpAndRecovers(t *testing.T) {
	sys := newSystem(t)
	ev := watchEvents(sys)
	broken := filepath.Join(t.TempDir(), "broken")
	require.NoError(t, os.WriteFile(broken, nil, 0o600))
	jt := jobType(t, "echo")
	jt.MinWorkers, jt.MaxWorkers = 1, 2
	jt.Env = []string{"TESTWORKER_EXIT_AT_START_FILE=" + broken}
	jt.Policy = supervisor.Policy{
		Intensity: supervisor.Intensity{MaxRestarts: 4, Window: time.Minute},
		Backoff:   supervisor.Backoff{Initial: 50 * time.Millisecond, Max: time.Second, Multiplier: 2},
		Cooldown:  time.Second,
	}
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()

	require.Eventually(t, func() bool { return len(ev.of(actors.EventGaveUp)) == 1 }, 20*time.Second, 10*time.Millisecond)
	started := ev.of(actors.EventStarted)
	require.Len(t, started, 5, "the first start and four restarts")
	for i := 2; i < len(started); i++ {
		gap := started[i].Time.Sub(started[i-1].Time)
		want := 50 * time.Millisecond << (i - 1)
		assert.GreaterOrEqual(t, gap, want, "restart %d spaced by the backoff", i)
	}

	// Unavailable: jobs fail fast, and nothing is respawned (no busy loop).
	st, err := r.Stats(ctx)
	require.NoError(t, err)
	assert.False(t, st.Available)
	begin := time.Now()
	_, err = r.Call(ctx, procpool.Blob, []byte("x"))
	assert.ErrorIs(t, err, procpool.ErrUnavailable)
	assert.Less(t, time.Since(begin), time.Second, "fails fast")
	spawns := st.Spawns
	time.Sleep(300 * time.Millisecond)
	st, err = r.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, spawns, st.Spawns, "no spawn during the cool-down")

	// Fix the worker; after the cool-down the job type recovers.
	require.NoError(t, os.Remove(broken))
	require.Eventually(t, func() bool {
		out, err := r.Call(ctx, procpool.Blob, []byte("back"))
		return err == nil && string(out) == "back"
	}, 20*time.Second, 50*time.Millisecond)
	assert.Len(t, ev.of(actors.EventRecovered), 1)
}

func TestHungWorkerFoundByHeartbeat(t *testing.T) {
	sys := newSystem(t)
	// A worker that never answers pings and is stuck in a job that ignores
	// cancellation looks hung to the host: no frame comes back.
	jt := jobType(t, "sleep_ignore_cancel")
	jt.MaxWorkers = 1
	jt.Env = []string{"TESTWORKER_NO_PONG=1"}
	jt.HeartbeatInterval, jt.HeartbeatTimeout = 50*time.Millisecond, 300*time.Millisecond
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	_, err = r.Call(context.Background(), procpool.Blob, []byte("60000"))
	require.ErrorIs(t, err, procpool.ErrWorkerCrashed, "no job timeout is set: the heartbeat finds it")
	var ce *procpool.CrashError
	require.ErrorAs(t, err, &ce)
	assert.Contains(t, ce.Reason, "no pong")
}

func TestPoisonJobQuarantined(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "mixed")
	jt.MinWorkers, jt.MaxWorkers = 2, 2
	jt.Policy = supervisor.Policy{
		Intensity: supervisor.Intensity{MaxRestarts: 100, Window: time.Minute},
		Backoff:   supervisor.Backoff{Initial: time.Millisecond, Max: 10 * time.Millisecond, Multiplier: 2},
		Jobs:      supervisor.JobFailure{MaxAttempts: 10, PoisonAfter: 3},
	}
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	var wg sync.WaitGroup
	var good atomic.Int64
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				msg := fmt.Sprintf("echo:%d-%d", g, i)
				out, err := r.Call(ctx, procpool.Blob, []byte(msg))
				if assert.NoError(t, err) && assert.Equal(t, msg[5:], string(out)) {
					good.Add(1)
				}
			}
		}()
	}
	_, err = r.Call(ctx, procpool.Blob, []byte("exit:7"))
	wg.Wait()
	require.ErrorIs(t, err, procpool.ErrPoisonJob)
	var ce *procpool.CrashError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, 3, ce.Attempt, "it killed three workers, then was quarantined")
	assert.Equal(t, 7, ce.ExitCode)
	assert.EqualValues(t, 200, good.Load(), "other jobs kept succeeding")
	st, err := r.Stats(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 3, st.Crashes)
	assert.EqualValues(t, 2, st.Retried)
}

func TestAllForOneRestartsSiblings(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "mixed")
	jt.MinWorkers, jt.MaxWorkers = 3, 3
	jt.Policy = supervisor.Policy{Strategy: supervisor.AllForOne}
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	require.Eventually(t, func() bool {
		st, err := r.Stats(ctx)
		return err == nil && st.Idle == 3
	}, 10*time.Second, 10*time.Millisecond)
	before := proctest.Children()
	require.Len(t, before, 3)

	_, err = r.Call(ctx, procpool.Blob, []byte("exit:3"))
	require.ErrorIs(t, err, procpool.ErrWorkerCrashed)
	require.Eventually(t, func() bool {
		st, err := r.Stats(ctx)
		return err == nil && st.Idle == 3 && st.Spawns == 6
	}, 10*time.Second, 10*time.Millisecond, "all three replaced")
	after := proctest.Children()
	for _, pid := range before {
		assert.NotContains(t, after, pid, "sibling %d was restarted", pid)
	}
	out, err := r.Call(ctx, procpool.Blob, []byte("echo:ok"))
	require.NoError(t, err)
	assert.Equal(t, "ok", string(out))
}

func TestRecyclingKeepsJobsIntact(t *testing.T) {
	t.Run("by job count", func(t *testing.T) {
		sys := newSystem(t)
		jt := jobType(t, "sha512")
		jt.MinWorkers, jt.MaxWorkers, jt.RecycleAfterJobs = 1, 2, 10
		r, err := sys.Spawn(jt)
		require.NoError(t, err)
		ctx := context.Background()
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 50 {
					in := []byte(fmt.Sprintf("%d-%d", g, i))
					sum, err := r.Call(ctx, procpool.Blob, in)
					want := sha512.Sum512(in)
					if !assert.NoError(t, err) || !assert.Equal(t, want[:], sum) {
						return
					}
				}
			}()
		}
		wg.Wait()
		st, err := r.Stats(ctx)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, st.Recycles, uint64(3), "workers retired every ~10 jobs (more while a replacement starts)")
		assert.Greater(t, st.Spawns, st.Recycles)
		assert.Zero(t, st.Failed)
		assert.Zero(t, st.Crashes, "recycling is not a failure")
	})
	t.Run("by memory", func(t *testing.T) {
		sys := newSystem(t)
		jt := jobType(t, "mixed")
		jt.MinWorkers, jt.MaxWorkers = 1, 1
		jt.MaxRSS = 64 << 20
		jt.HeartbeatInterval = 200 * time.Millisecond
		r, err := sys.Spawn(jt)
		require.NoError(t, err)
		ctx := context.Background()
		pid1, err := r.Call(ctx, procpool.Blob, []byte("pidns:"))
		require.NoError(t, err)
		_, err = r.Call(ctx, procpool.Blob, []byte("alloc:128"))
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			st, err := r.Stats(ctx)
			return err == nil && st.Recycles == 1 && st.Workers() == 1 && st.Idle == 1
		}, 10*time.Second, 10*time.Millisecond, "the bloated worker is replaced between jobs")
		pid2, err := r.Call(ctx, procpool.Blob, []byte("pidns:"))
		require.NoError(t, err)
		assert.NotEqual(t, string(pid1), string(pid2))
		st, err := r.Stats(ctx)
		require.NoError(t, err)
		assert.Zero(t, st.Failed)
		assert.Zero(t, st.Crashes)
	})
}

func TestGarbageReplacesOnlyThatWorker(t *testing.T) {
	sys := newSystem(t)
	ev := watchEvents(sys)
	jt := jobType(t, "mixed")
	jt.MinWorkers, jt.MaxWorkers = 2, 2
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	slow, err := r.Submit(ctx, procpool.Blob, []byte("sleep:300"))
	require.NoError(t, err)
	_, err = r.Call(ctx, procpool.Blob, []byte("garbage:"))
	require.ErrorIs(t, err, procpool.ErrWorkerCrashed)
	out, err := slow.Wait(ctx)
	require.NoError(t, err, "the other worker's job is untouched")
	assert.Equal(t, "slept", string(out))
	require.Eventually(t, func() bool { return len(ev.of(actors.EventCrashed)) == 1 }, 5*time.Second, 5*time.Millisecond)
	crashed := ev.of(actors.EventCrashed)
	assert.Equal(t, supervisor.ProtocolFailure, crashed[0].Failure.Kind)
	out, err = r.Call(ctx, procpool.Blob, []byte("echo:fine"))
	require.NoError(t, err)
	assert.Equal(t, "fine", string(out))
}

var _ = errors.Is
var _ = strconv.Itoa

// recordingStrategy is a user's supervisor strategy that records what its
// children escalate, then resumes them (the test stops the parent after).
type recordingStrategy struct{ reasons chan any }

func (s recordingStrategy) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, _ *actor.RestartStatistics, reason any, _ any) {
	s.reasons <- reason
	sup.ResumeChildren(child)
}

func TestGiveUpEscalatesToUsersActor(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "echo")
	jt.MinWorkers = 1
	jt.Env = []string{"TESTWORKER_EXIT_AT_START=4"}
	jt.Policy = supervisor.Policy{
		Intensity: supervisor.Intensity{MaxRestarts: 1, Window: time.Minute},
		Backoff:   supervisor.Backoff{Initial: time.Millisecond, Max: time.Millisecond, Multiplier: 1},
		GiveUp:    supervisor.EscalateToParent,
	}
	strategy := recordingStrategy{reasons: make(chan any, 4)}
	parent := sys.ActorSystem().Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if _, ok := ctx.Message().(*actor.Started); ok {
			props, _, err := actors.RouterProps(jt, actors.RouterOptions{Dispatcher: sys.Dispatcher()})
			if assert.NoError(t, err) {
				ctx.Spawn(props)
			}
		}
	}, actor.WithSupervisor(strategy)))
	select {
	case reason := <-strategy.reasons:
		err, ok := reason.(error)
		require.True(t, ok, "reason %T", reason)
		assert.ErrorIs(t, err, procpool.ErrUnavailable)
	case <-time.After(20 * time.Second):
		t.Fatal("nothing escalated")
	}
	require.NoError(t, sys.ActorSystem().Root.StopFuture(parent).Wait())
	require.Eventually(t, func() bool { return len(proctest.Children()) == 0 }, 10*time.Second, 10*time.Millisecond)
}

func TestMemoryCeilingKillsABusyWorker(t *testing.T) {
	sys := newSystem(t)
	ev := watchEvents(sys)
	jt := jobType(t, "mixed")
	jt.MinWorkers, jt.MaxWorkers, jt.InFlight = 1, 1, 2
	jt.KillRSS = 64 << 20
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	// One job keeps the worker busy; another grows it past the ceiling: the
	// reading after that job kills the worker, busy as it is.
	busy, err := r.Submit(ctx, procpool.Blob, []byte("sleep:10000"))
	require.NoError(t, err)
	// The alloc job itself may be killed too, if a heartbeat's reading
	// comes while it allocates.
	_, err = r.Call(ctx, procpool.Blob, []byte("alloc:128"))
	if err != nil {
		require.ErrorIs(t, err, procpool.ErrWorkerCrashed)
	}
	_, err = busy.Wait(ctx)
	require.ErrorIs(t, err, procpool.ErrWorkerCrashed)
	var ce *procpool.CrashError
	require.ErrorAs(t, err, &ce)
	assert.Contains(t, ce.Reason, "above the ceiling")
	assert.Greater(t, ce.RSS, uint64(64<<20), "forensics carry the memory at death")
	require.Eventually(t, func() bool { return len(ev.of(actors.EventCrashed)) > 0 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, supervisor.MemoryFailure, ev.of(actors.EventCrashed)[0].Failure.Kind)
	out, err := r.Call(ctx, procpool.Blob, []byte("echo:fresh"))
	require.NoError(t, err, "a replacement serves the next job")
	assert.Equal(t, "fresh", string(out))
}
