package procpool_test

import (
	"bytes"
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/actors"
	"github.com/procpool/procpool/internal/proctest"
	"github.com/procpool/procpool/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// newSystem starts a system whose logs go to the test log, and checks at
// the end of the test that it shut down with nothing left behind.
func newSystem(t *testing.T) *procpool.System {
	t.Helper()
	var out io.Writer = testWriter{t}
	if os.Getenv("PROCPOOL_TEST_LOG") != "" {
		out = os.Stderr
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "test", Level: testLogLevel(), Output: out})
	testbin.Path(t) // built before counting file descriptors
	checkFDs := proctest.CheckFDs(t)
	sys := procpool.NewSystem(procpool.Config{Logger: logger})
	// Every message the pool sends to a stopped actor must be one it
	// expects to (a late timer, a process exit): anything else is a lost
	// message.
	var deadMu sync.Mutex
	var dead []string
	sys.ActorSystem().EventStream.Subscribe(func(m any) {
		if d, ok := m.(*actor.DeadLetterEvent); ok {
			// A stopping parent sends Stop to every child whose Terminated
			// it has not yet processed, including one that has just
			// stopped: that Stop carries nothing to lose.
			if _, stop := d.Message.(*actor.Stop); stop {
				return
			}
			if _, ignorable := d.Message.(actor.IgnoreDeadLetterLogging); !ignorable {
				deadMu.Lock()
				dead = append(dead, fmt.Sprintf("%T to %v", d.Message, d.PID))
				deadMu.Unlock()
			}
		}
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		assert.NoError(t, sys.Shutdown(ctx))
		deadMu.Lock()
		assert.Empty(t, dead, "unexpected dead letters")
		deadMu.Unlock()
		proctest.VerifyNone(t)
		checkFDs()
	})
	return sys
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// jobType is a job type served by the test worker.
func jobType(t *testing.T, name string) procpool.JobType {
	return procpool.JobType{
		Name:              name,
		Command:           testbin.Path(t),
		MaxWorkers:        2,
		HeartbeatInterval: 200 * time.Millisecond,
		StopGrace:         2 * time.Second,
	}
}

func TestCallBlobRoundTrips(t *testing.T) {
	sys := newSystem(t)
	r, err := sys.Spawn(jobType(t, "echo"))
	require.NoError(t, err)
	h, err := sys.Spawn(jobType(t, "sha512"))
	require.NoError(t, err)
	ctx := context.Background()
	for _, n := range []int{0, 1, 64, 1 << 10, 64<<10 + 1, 1 << 20, 8 << 20} {
		in := bytes.Repeat([]byte{byte(n)}, n)
		out, err := r.Call(ctx, procpool.Blob, in)
		require.NoError(t, err, "size %d", n)
		require.Equal(t, len(in), len(out), "size %d", n)
		require.True(t, bytes.Equal(in, out), "size %d", n)
		sum, err := sys.Call(ctx, "sha512", in)
		require.NoError(t, err)
		want := sha512.Sum512(in)
		require.Equal(t, want[:], sum)
	}
	_ = h
}

type sizeSeed struct {
	Size int
	Seed byte
}

func TestCallValue(t *testing.T) {
	sys := newSystem(t)
	r, err := sys.Spawn(jobType(t, "sha512v"))
	require.NoError(t, err)
	for _, n := range []int{0, 1024, 1 << 20} {
		got, err := procpool.CallValue[[]byte](context.Background(), r, sizeSeed{Size: n, Seed: 7})
		require.NoError(t, err)
		buf := make([]byte, n)
		for i := range buf {
			buf[i] = 7 + byte(i)
		}
		want := sha512.Sum512(buf)
		assert.Equal(t, want[:], got, "size %d", n)
	}
	f, err := procpool.SubmitValue[[]byte](context.Background(), r, sizeSeed{Size: 10})
	require.NoError(t, err)
	got, err := f.Wait(context.Background())
	require.NoError(t, err)
	assert.Len(t, got, 64)
	// A result that does not fit the caller's type is a typed error.
	_, err = procpool.CallValue[map[string]int](context.Background(), r, sizeSeed{Size: 1})
	assert.ErrorIs(t, err, procpool.ErrBadResult)
}

func TestBadInput(t *testing.T) {
	sys := newSystem(t)
	_, err := sys.Call(context.Background(), "nope", nil)
	assert.ErrorIs(t, err, procpool.ErrUnknownJobType)

	jt := jobType(t, "echo")
	jt.MaxFrame = 1 << 20
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	_, err = r.Call(context.Background(), procpool.Blob, make([]byte, 1<<20))
	assert.ErrorIs(t, err, procpool.ErrPayloadTooLarge)
	_, err = sys.Spawn(jt)
	assert.ErrorIs(t, err, procpool.ErrInvalidJobType, "duplicate name")
	_, err = sys.Spawn(procpool.JobType{Name: "x"})
	assert.ErrorIs(t, err, procpool.ErrInvalidJobType, "no command")
	bad := jobType(t, "y")
	bad.MinWorkers, bad.MaxWorkers = 3, 2
	_, err = sys.Spawn(bad)
	assert.ErrorIs(t, err, procpool.ErrInvalidJobType)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = r.Call(ctx, procpool.Blob, []byte("x"))
	assert.ErrorIs(t, err, procpool.ErrCancelled)
	assert.ErrorIs(t, err, context.Canceled)

	// A worker error comes back as a RemoteError with its code.
	u := jobType(t, "unknown-to-worker")
	u.Command = testbin.Path(t)
	ur, err := sys.Spawn(u)
	require.NoError(t, err)
	_, err = ur.Call(context.Background(), procpool.Blob, nil)
	assert.Error(t, err, "a worker that does not serve the job type never becomes ready")
}

func TestWorkerErrorsAreTyped(t *testing.T) {
	sys := newSystem(t)
	r, err := sys.Spawn(jobType(t, "panic"))
	require.NoError(t, err)
	_, err = r.Call(context.Background(), procpool.Blob, nil)
	var re *procpool.RemoteError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "panic", re.Code)
	assert.ErrorIs(t, err, procpool.ErrRemote)
}

func TestCrashMidJobIsReportedAndReplaced(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "exit")
	jt.MaxWorkers = 1
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	_, err = r.Call(context.Background(), procpool.Blob, []byte("3"))
	require.ErrorIs(t, err, procpool.ErrWorkerCrashed)
	var ce *procpool.CrashError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, 3, ce.ExitCode)
	assert.NotZero(t, ce.PID)
	assert.Equal(t, 1, ce.Attempt)
	// The pool replaces the worker: the next job runs.
	_, err = r.Call(context.Background(), procpool.Blob, []byte("4"))
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, 4, ce.ExitCode)
	st, err := r.Stats(context.Background())
	require.NoError(t, err)
	assert.GreaterOrEqual(t, st.Crashes, uint64(2))
	assert.GreaterOrEqual(t, st.Spawns, uint64(2))
}

// liveChildren counts this process's live worker processes.
func liveChildren() int { return len(proctest.Children()) }

// TestArticleScalingScenario: min 2, max 5, idle 3 s; 100 jobs of 1 MiB, a
// pause, 100 more: five workers start, three retire in the pause, two
// stay, new ones start for the second burst, all exit on shutdown.
func TestArticleScalingScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("takes ~10 s")
	}
	sys := newSystem(t)
	jt := jobType(t, "sha512")
	jt.MinWorkers, jt.MaxWorkers, jt.IdleTimeout = 2, 5, 3*time.Second
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	require.Eventually(t, func() bool {
		st, err := r.Stats(ctx)
		return err == nil && st.Idle == 2
	}, 10*time.Second, 10*time.Millisecond, "pre-warm reaches min")
	assert.Equal(t, 2, liveChildren())

	buf := bytes.Repeat([]byte{1}, 1<<20)
	want := sha512.Sum512(buf)
	burst := func() {
		var wg sync.WaitGroup
		for range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sum, err := r.Call(ctx, procpool.Blob, buf)
				if assert.NoError(t, err) {
					assert.Equal(t, want[:], sum)
				}
			}()
		}
		wg.Wait()
	}
	burst()
	st, err := r.Stats(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 5, st.Spawns, "five workers start")
	assert.Equal(t, 5, st.Workers())

	require.Eventually(t, func() bool {
		st, err := r.Stats(ctx)
		return err == nil && st.Workers() == 2 && st.Passivations == 3
	}, 10*time.Second, 20*time.Millisecond, "three retire in the pause")
	require.Eventually(t, func() bool { return liveChildren() == 2 }, 5*time.Second, 10*time.Millisecond)

	burst()
	st, err = r.Stats(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 8, st.Spawns, "three new ones start for the second burst")
	assert.EqualValues(t, 200, st.Succeeded)

	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	require.NoError(t, sys.Shutdown(sctx))
	assert.Equal(t, 0, liveChildren(), "all exit on shutdown")
}

func TestBurstNeverExceedsMax(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "sha512")
	jt.MinWorkers, jt.MaxWorkers = 1, 3
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()

	var peak atomic.Int64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n := int64(liveChildren()); n > peak.Load() {
				peak.Store(n)
			}
			if st, err := r.Stats(ctx); err == nil && int64(st.Workers()) > peak.Load() {
				peak.Store(int64(st.Workers()))
			}
			time.Sleep(time.Millisecond)
		}
	}()
	jobs := make([]*procpool.Job, 0, 1000)
	for i := range 1000 {
		j, err := r.Submit(ctx, procpool.Blob, []byte(strconv.Itoa(i)))
		require.NoError(t, err)
		jobs = append(jobs, j)
	}
	for i, j := range jobs {
		sum, err := j.Wait(ctx)
		require.NoError(t, err)
		want := sha512.Sum512([]byte(strconv.Itoa(i)))
		require.Equal(t, want[:], sum)
	}
	close(stop)
	sampler.Wait()
	assert.LessOrEqual(t, peak.Load(), int64(3))
	assert.GreaterOrEqual(t, peak.Load(), int64(1))
}

func TestBackpressure(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "sleep")
	jt.MaxWorkers, jt.QueueCapacity = 1, 2
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	// One running, two queued: the gate is full.
	var held []*procpool.Job
	for range 3 {
		j, err := r.Submit(ctx, procpool.Blob, []byte("400"))
		require.NoError(t, err)
		held = append(held, j)
	}
	_, err = r.TrySubmit(ctx, procpool.Blob, []byte("1"))
	assert.ErrorIs(t, err, procpool.ErrQueueFull, "try-submit fails fast")

	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = r.Submit(wctx, procpool.Blob, []byte("1"))
	cancel()
	assert.ErrorIs(t, err, context.DeadlineExceeded, "a blocked submit ends with its context")

	// A blocked submit goes through once a slot frees.
	done := make(chan error, 1)
	go func() {
		_, err := r.Call(ctx, procpool.Blob, []byte("1"))
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("submit did not block: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	for _, j := range held {
		_, err := j.Wait(ctx)
		require.NoError(t, err)
	}
	require.NoError(t, <-done)
}

func TestQueueWait(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "sleep")
	jt.MaxWorkers, jt.QueueCapacity, jt.QueueWait = 1, 1, 50*time.Millisecond
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	a, err := r.Submit(ctx, procpool.Blob, []byte("300"))
	require.NoError(t, err)
	b, err := r.Submit(ctx, procpool.Blob, []byte("300"))
	require.NoError(t, err)
	_, err = r.Call(ctx, procpool.Blob, []byte("1"))
	assert.ErrorIs(t, err, procpool.ErrQueueFull)
	_, _ = a.Wait(ctx)
	_, _ = b.Wait(ctx)
}

func TestCancelQueuedAndRunning(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "sleep")
	jt.MaxWorkers = 1
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()

	// Running: a 60 s sleep, cancelled; the handler sees its context end,
	// so the single worker is free again long before 60 s.
	rctx, rcancel := context.WithCancel(ctx)
	running, err := r.Submit(rctx, procpool.Blob, []byte("60000"))
	require.NoError(t, err)
	// Queued behind it:
	qctx, qcancel := context.WithCancel(ctx)
	queued, err := r.Submit(qctx, procpool.Blob, []byte("60000"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st, err := r.Stats(ctx)
		return err == nil && st.Running == 1 && st.Queued == 1
	}, 10*time.Second, 5*time.Millisecond)

	qcancel()
	_, err = queued.Wait(ctx)
	assert.ErrorIs(t, err, procpool.ErrCancelled)
	assert.ErrorIs(t, err, context.Canceled)
	require.Eventually(t, func() bool {
		st, err := r.Stats(ctx)
		return err == nil && st.Queued == 0
	}, 5*time.Second, 5*time.Millisecond, "the queued job is removed")

	rcancel()
	_, err = running.Wait(ctx)
	assert.ErrorIs(t, err, procpool.ErrCancelled)

	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := r.Call(cctx, procpool.Blob, []byte("1"))
	require.NoError(t, err, "the worker was freed by the cancel message")
	assert.Equal(t, "slept", string(out))
	st, err := r.Stats(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 1, st.Spawns, "the worker was not killed")
	assert.EqualValues(t, 2, st.Cancelled)
}

func TestJobTimeoutKillsAndReplaces(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "sleep_ignore_cancel")
	jt.MaxWorkers, jt.JobTimeout, jt.CancelGrace = 1, 200*time.Millisecond, 200*time.Millisecond
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	_, err = r.Call(ctx, procpool.Blob, []byte("60000"))
	require.ErrorIs(t, err, procpool.ErrJobTimeout)
	require.Eventually(t, func() bool {
		st, err := r.Stats(ctx)
		return err == nil && st.Crashes == 1
	}, 10*time.Second, 10*time.Millisecond, "the worker is killed after the grace")
	out, err := r.Call(ctx, procpool.Blob, []byte("1"))
	require.NoError(t, err, "a replacement serves the next job")
	assert.Equal(t, "slept", string(out))
}

func TestShutdownDrainsEveryJob(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "sha512")
	jt.MaxWorkers = 2
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	jobs := make([]*procpool.Job, 1000)
	for i := range jobs {
		jobs[i], err = r.Submit(ctx, procpool.Blob, []byte(strconv.Itoa(i)))
		require.NoError(t, err)
	}
	require.NoError(t, sys.Shutdown(ctx))
	for i, j := range jobs {
		select {
		case <-j.Done():
		default:
			t.Fatalf("job %d not resolved after Shutdown", i)
		}
		sum, err := j.Result()
		require.NoError(t, err, "job %d", i)
		want := sha512.Sum512([]byte(strconv.Itoa(i)))
		require.Equal(t, want[:], sum)
	}
	_, err = r.Submit(ctx, procpool.Blob, nil)
	assert.ErrorIs(t, err, procpool.ErrShuttingDown)
	_, err = sys.Call(ctx, "sha512", nil)
	assert.ErrorIs(t, err, procpool.ErrShuttingDown)
	assert.Equal(t, 0, liveChildren())
}

func TestShutdownDeadlineFailsTheRest(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "sleep_ignore_cancel")
	jt.MaxWorkers = 2
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	jobs := make([]*procpool.Job, 20)
	for i := range jobs {
		jobs[i], err = r.Submit(ctx, procpool.Blob, []byte("60000"))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		st, err := r.Stats(ctx)
		return err == nil && st.Running == 2
	}, 10*time.Second, 5*time.Millisecond)
	sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = sys.Shutdown(sctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 20*time.Second)
	for i, j := range jobs {
		_, err := j.Wait(ctx)
		assert.ErrorIs(t, err, procpool.ErrShuttingDown, "job %d", i)
	}
	assert.Equal(t, 0, liveChildren())
}

// userActor spawns a router as its own child and runs a job through it
// with ordinary actor messages.
type userActor struct {
	jt     procpool.JobType
	disp   *actors.Dispatcher
	router *actor.PID
	handle *actors.Router
	result chan *actors.Result
}

func (u *userActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		props, h, err := actors.RouterProps(u.jt, actors.RouterOptions{Dispatcher: u.disp})
		if err != nil {
			u.result <- &actors.Result{Err: err}
			return
		}
		u.handle = h
		u.router = ctx.Spawn(props)
	case string:
		ctx.Request(u.router, actors.NewJob(procpool.Blob, []byte(msg)))
	case *actors.Result:
		u.result <- msg
	}
}

func TestRouterAsChildOfUserActor(t *testing.T) {
	sys := newSystem(t)
	u := &userActor{jt: jobType(t, "echo"), disp: sys.Dispatcher(), result: make(chan *actors.Result, 1)}
	pid := sys.ActorSystem().Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return u }))
	sys.ActorSystem().Root.Send(pid, "hello from an actor")
	select {
	case res := <-u.result:
		require.NoError(t, res.Err)
		assert.Equal(t, "hello from an actor", string(res.Payload))
	case <-time.After(20 * time.Second):
		t.Fatal("no result")
	}
	require.Equal(t, 1, liveChildren())
	// Stopping the user's actor stops its router and the router's workers.
	// The router's Shutdown, called while that happens, returns once every
	// worker process has been reaped, as it promises, not when the router
	// begins to stop.
	stopped := sys.ActorSystem().Root.StopFuture(pid)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, u.handle.Shutdown(ctx))
	assert.Equal(t, 0, liveChildren(), "a worker process outlived Router.Shutdown")
	require.NoError(t, stopped.Wait())
}

func TestStatsAndConcurrentCalls(t *testing.T) {
	sys := newSystem(t)
	r, err := sys.Spawn(jobType(t, "echo"))
	require.NoError(t, err)
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				msg := fmt.Sprintf("%d-%d", g, i)
				out, err := r.Call(ctx, procpool.Blob, []byte(msg))
				if !assert.NoError(t, err) || !assert.Equal(t, msg, string(out)) {
					return
				}
			}
		}()
	}
	wg.Wait()
	st, err := sys.Stats(ctx, "echo")
	require.NoError(t, err)
	assert.EqualValues(t, 400, st.Accepted)
	assert.EqualValues(t, 400, st.Succeeded)
	assert.Zero(t, st.Failed)
	assert.Positive(t, st.LatencyP50)
	assert.GreaterOrEqual(t, st.LatencyP99, st.LatencyP50)
	assert.True(t, st.Available)
	assert.LessOrEqual(t, st.Workers(), 2)
	assert.Equal(t, []string{"echo"}, sys.JobTypes())
}

var _ = errors.Is

func testLogLevel() hclog.Level {
	if l := hclog.LevelFromString(os.Getenv("PROCPOOL_TEST_LOG")); l != hclog.NoLevel {
		return l
	}
	return hclog.Warn
}

func TestCallsOnAStoppedRouterFailFast(t *testing.T) {
	sys := newSystem(t)
	h, pid, err := actors.SpawnRouter(sys.ActorSystem().Root, jobType(t, "echo"), actors.RouterOptions{Dispatcher: sys.Dispatcher()})
	require.NoError(t, err)
	ctx := context.Background()
	out, err := h.Call(ctx, procpool.Blob, []byte("hi"))
	require.NoError(t, err)
	assert.Equal(t, "hi", string(out))
	require.NoError(t, sys.ActorSystem().Root.StopFuture(pid).Wait())
	_, err = h.Call(ctx, procpool.Blob, []byte("hi"))
	assert.ErrorIs(t, err, procpool.ErrShuttingDown)
	done := make(chan error, 1)
	go func() { done <- h.Shutdown(ctx) }()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown of a stopped router hangs")
	}
	require.Eventually(t, func() bool { return liveChildren() == 0 }, 10*time.Second, 10*time.Millisecond)
}

type echoValue struct {
	Data []byte
	N    int
}

func TestLargePayloadsAndFrameLimits(t *testing.T) {
	sys := newSystem(t)
	r, err := sys.Spawn(jobType(t, "echo"))
	require.NoError(t, err)
	v, err := sys.Spawn(jobType(t, "echov"))
	require.NoError(t, err)
	ctx := context.Background()
	// The largest payload that fits the default 64 MiB frame, both kinds.
	big := bytes.Repeat([]byte("0123456789abcdef"), (64<<20-1024)/16)
	out, err := r.Call(ctx, procpool.Blob, big)
	require.NoError(t, err)
	require.True(t, bytes.Equal(big, out))
	got, err := procpool.CallValue[echoValue](ctx, v, echoValue{Data: big, N: 7})
	require.NoError(t, err)
	require.True(t, bytes.Equal(big, got.Data))
	assert.Equal(t, 7, got.N)

	// Over the limit on the host side: refused before it is sent.
	_, err = r.Call(ctx, procpool.Blob, make([]byte, 64<<20))
	assert.ErrorIs(t, err, procpool.ErrPayloadTooLarge)

	// Over the limit on the worker side: a result larger than the host
	// accepts is answered with an error, and the worker carries on.
	jt := jobType(t, "repeat")
	jt.MaxFrame = 1 << 20
	rep, err := sys.Spawn(jt)
	require.NoError(t, err)
	_, err = rep.Call(ctx, procpool.Blob, []byte(strconv.Itoa(2<<20)))
	var re *procpool.RemoteError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "too_large", re.Code)
	out, err = rep.Call(ctx, procpool.Blob, []byte("10"))
	require.NoError(t, err)
	assert.Len(t, out, 10)
	st, err := rep.Stats(ctx)
	require.NoError(t, err)
	assert.Zero(t, st.Crashes)
}

func TestWorkerOutputGoesToTheLogNotThePipe(t *testing.T) {
	var buf safeBuffer
	logger := hclog.New(&hclog.LoggerOptions{Name: "spam", Level: hclog.Info, Output: &buf})
	sys := procpool.NewSystem(procpool.Config{Logger: logger})
	defer func() {
		require.NoError(t, sys.Shutdown(context.Background()))
		proctest.VerifyNone(t)
	}()
	jt := jobType(t, "spam")
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	for i := range 20 {
		out, err := r.Call(context.Background(), procpool.Blob, []byte("500"))
		require.NoError(t, err, "call %d", i)
		assert.Equal(t, "500", string(out))
	}
	require.Eventually(t, func() bool {
		s := buf.String()
		return strings.Contains(s, "spam stdout 499") && strings.Contains(s, "spam stderr 499")
	}, 10*time.Second, 10*time.Millisecond)
	s := buf.String()
	assert.Contains(t, s, "pid=")
	assert.Contains(t, s, "stream=stderr")
}

type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestJobTimeoutHonouredByWorkerKeepsIt(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "sleep")
	jt.MaxWorkers, jt.JobTimeout = 1, 200*time.Millisecond
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	for range 3 {
		_, err = r.Call(ctx, procpool.Blob, []byte("60000"))
		require.ErrorIs(t, err, procpool.ErrJobTimeout)
	}
	out, err := r.Call(ctx, procpool.Blob, []byte("1"))
	require.NoError(t, err)
	assert.Equal(t, "slept", string(out))
	st, err := r.Stats(ctx)
	require.NoError(t, err)
	assert.Zero(t, st.Crashes, "a worker that stops the job in time is kept")
	assert.EqualValues(t, 1, st.Spawns)
	assert.EqualValues(t, 3, st.TimedOut)
}

// TestCallCancelledWhileReadingItsAnswer: a Call on an idle worker reads
// its own answer; when its context ends mid-job it must return at once,
// and the worker's late answer must still be read (by the background
// reader) so that the worker is free for the next call.
func TestCallCancelledWhileReadingItsAnswer(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "sleep")
	jt.MinWorkers, jt.MaxWorkers = 1, 1
	jt.HeartbeatInterval = time.Hour // no ping takes the read role meanwhile
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	_, err = r.Call(ctx, procpool.Blob, []byte("1"))
	require.NoError(t, err)
	for range 3 {
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		begin := time.Now()
		_, err = r.Call(cctx, procpool.Blob, []byte("60000"))
		cancel()
		require.ErrorIs(t, err, procpool.ErrCancelled)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Less(t, time.Since(begin), 10*time.Second)
		out, err := r.Call(ctx, procpool.Blob, []byte("5"))
		require.NoError(t, err)
		assert.Equal(t, "slept", string(out))
	}
	st, err := r.Stats(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 1, st.Spawns)
	assert.EqualValues(t, 3, st.Cancelled)
}

func TestStoppingARouterWhileItsWorkersStartLeavesNoProcess(t *testing.T) {
	sys := newSystem(t)
	for range 5 {
		jt := jobType(t, "echo")
		jt.MinWorkers, jt.MaxWorkers = 4, 4
		parent := sys.ActorSystem().Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
			if _, ok := ctx.Message().(*actor.Started); ok {
				props, _, err := actors.RouterProps(jt, actors.RouterOptions{Dispatcher: sys.Dispatcher()})
				if assert.NoError(t, err) {
					ctx.Spawn(props)
				}
			}
		}))
		// Stop the router while its workers' processes are being started:
		// a process that starts after its actor stopped must not live on.
		time.Sleep(time.Millisecond)
		require.NoError(t, sys.ActorSystem().Root.StopFuture(parent).Wait())
		require.Eventually(t, func() bool { return liveChildren() == 0 }, 5*time.Second, 10*time.Millisecond,
			"%d worker processes outlived their router", liveChildren())
	}
}

func TestMalformedValuePayloadIsRefused(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "echov")
	jt.MaxWorkers = 1
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	big := append([]byte{0xc6, 0, 2, 0, 0}, make([]byte, 128<<10)...) // a bin32 of 128 KiB...
	for name, p := range map[string][]byte{
		"invalid code":   {0xc1},
		"two values":     {0x01, 0x02},
		"truncated":      {0x92, 0x01},
		"large trailing": append(big, 0x01), // ...and a byte after it
	} {
		_, err := r.Call(ctx, procpool.Value, p)
		assert.ErrorIs(t, err, procpool.ErrBadPayload, name)
	}
	got, err := procpool.CallValue[echoValue](ctx, r, echoValue{Data: []byte("ok"), N: 1})
	require.NoError(t, err, "the worker was never sent the bad payloads")
	assert.Equal(t, "ok", string(got.Data))
	st, err := r.Stats(ctx)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), st.Accepted, "refused before admission")
}

func TestWorkerFrameLimitIsHonoured(t *testing.T) {
	for name, shared := range map[string]int{"frames": -1, "shared memory": 0} {
		t.Run(name, func(t *testing.T) {
			sys := newSystem(t)
			jt := jobType(t, "echo")
			jt.MaxWorkers = 1
			jt.SharedMemory = shared
			jt.Env = []string{"TESTWORKER_MAX_FRAME=1048576", "TESTWORKER_HANDSHAKE_DELAY=200"} // the job type allows 64 MiB
			r, err := sys.Spawn(jt)
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			// Sent before the worker is ready: refused once it is, since
			// no worker of the type takes it.
			_, err = r.Call(ctx, procpool.Blob, make([]byte, 2<<20))
			assert.ErrorIs(t, err, procpool.ErrPayloadTooLarge)
			// Later, refused by the router at once.
			_, err = r.Call(ctx, procpool.Blob, make([]byte, 2<<20))
			assert.ErrorIs(t, err, procpool.ErrPayloadTooLarge)
			out, err := r.Call(ctx, procpool.Blob, bytes.Repeat([]byte("x"), 512<<10))
			require.NoError(t, err)
			assert.Len(t, out, 512<<10)
			st, err := r.Stats(ctx)
			require.NoError(t, err)
			assert.Zero(t, st.Crashes, "nothing too large ever reached the worker")
			assert.Equal(t, uint64(1), st.Spawns)
		})
	}
}
