package procpool_test

// Hostile and buggy workers: each test here is one way a worker can try to
// hurt its host (issue 9). The host must kill and report the bad worker,
// resolve every job by its caller's deadline with a typed error, keep its
// own memory bounded, and keep serving with healthy replacements.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/actors"
	"github.com/procpool/procpool/supervisor"
)

// rogueType is a job type whose workers break the protocol as mode says
// (see internal/testworker/rogue.go).
func rogueType(t *testing.T, name, mode string, env ...string) procpool.JobType {
	jt := jobType(t, name)
	jt.Env = append([]string{"TESTWORKER_ROGUE=" + mode, "TESTWORKER_ROGUE_TYPES=" + name}, env...)
	return jt
}

// rogueOnce is a job type whose first worker is rogue and whose later ones
// serve normally.
func rogueOnce(t *testing.T, name, mode string, env ...string) procpool.JobType {
	once := filepath.Join(t.TempDir(), "rogue-once")
	return rogueType(t, name, mode, append(env, "TESTWORKER_ROGUE_ONCE="+once)...)
}

// crashKinds returns the failure kinds of the crash events seen so far.
func crashKinds(ev *events) []supervisor.FailureKind {
	var kinds []supervisor.FailureKind
	for _, e := range ev.of(actors.EventCrashed) {
		kinds = append(kinds, e.Failure.Kind)
	}
	return kinds
}

// Item 1: a panic answer means the worker is leaving; the next job must
// wait for a replacement instead of being sent to the dying worker.
func TestJobAfterAPanicGoesToAReplacement(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "mixed")
	jt.MaxWorkers = 1
	jt.Policy.Intensity = supervisor.Intensity{MaxRestarts: 100, Window: time.Minute} // each panic is a crash
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	for round := range 6 {
		_, err := r.Call(ctx, procpool.Blob, []byte("panic:boom"))
		var re *procpool.RemoteError
		require.ErrorAs(t, err, &re, "round %d", round)
		require.Equal(t, "panic", re.Code)
		out, err := r.Call(ctx, procpool.Blob, []byte("echo:hello"))
		require.NoError(t, err, "round %d: the job after a panic is lost", round)
		require.Equal(t, "hello", string(out))
	}
}

// Item 2: MaxRSS is checked after jobs, so a leaky worker that is never
// idle is retired too, gently: no job fails.
func TestMaxRSSRetiresABusyWorker(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "alloc")
	jt.MaxWorkers, jt.InFlight = 1, 4
	jt.MaxRSS = 48 << 20
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	var mu sync.Mutex
	peak := 0
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 60 {
				out, err := r.Call(ctx, procpool.Blob, []byte("1"))
				if !assert.NoError(t, err) {
					return
				}
				kept, _ := strconv.Atoi(string(out))
				mu.Lock()
				peak = max(peak, kept)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	st, err := r.Stats(ctx)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, st.Recycles, uint64(2), "240 MiB allocated through one busy worker under a 48 MiB MaxRSS")
	assert.Less(t, peak, 100, "MiB kept by one worker")
	assert.Zero(t, st.Failed)
	assert.Zero(t, st.Crashes)
}

// Item 3: a worker retired for memory while busy is stopped once its jobs
// finish; the pool never holds more than MaxWorkers+1 processes, and
// Shutdown returns.
func TestWorkerRetiredForMemoryStops(t *testing.T) {
	for round := range 3 {
		t.Run(strconv.Itoa(round), func(t *testing.T) {
			sys := newSystem(t)
			jt := jobType(t, "mixed")
			jt.MinWorkers, jt.MaxWorkers, jt.InFlight = 1, 1, 2
			jt.MaxRSS = 24 << 20
			jt.HeartbeatInterval = 200 * time.Millisecond
			r, err := sys.Spawn(jt)
			require.NoError(t, err)
			ctx := context.Background()
			done := make(chan struct{})
			var wg sync.WaitGroup
			for range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-done:
							return
						default:
						}
						job := "sleep:5"
						if i%4 == 0 {
							job = "alloc:8"
						}
						_, err := r.Call(ctx, procpool.Blob, []byte(job))
						assert.NoError(t, err)
					}
				}()
			}
			most := 0
			deadline := time.Now().Add(3 * time.Second)
			for time.Now().Before(deadline) {
				most = max(most, liveChildren())
				time.Sleep(5 * time.Millisecond)
			}
			close(done)
			wg.Wait()
			st, err := r.Stats(ctx)
			require.NoError(t, err)
			assert.GreaterOrEqual(t, st.Recycles, uint64(2))
			assert.LessOrEqual(t, most, 2, "MaxWorkers 1 plus one replacement")
			require.Eventually(t, func() bool {
				st, err := r.Stats(ctx)
				return err == nil && st.Workers() == 1
			}, 10*time.Second, 10*time.Millisecond, "retired workers stop")
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			require.NoError(t, sys.Shutdown(sctx))
		})
	}
}

// Item 4: a worker that stops reading its input cannot hold a caller past
// its deadline, and is killed for it.
func TestStalledWorkerCannotHoldTheCaller(t *testing.T) {
	for _, tc := range []struct {
		name string
		jt   func(t *testing.T) procpool.JobType
		prep string // a job that stalls the worker first, if any
	}{
		{"stops reading", func(t *testing.T) procpool.JobType { return rogueType(t, "echo", "no_read") }, ""},
		{"SIGSTOPped", func(t *testing.T) procpool.JobType { return jobType(t, "mixed") }, "hang_all:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := newSystem(t)
			ev := watchEvents(sys)
			jt := tc.jt(t)
			jt.MaxWorkers, jt.InFlight = 1, 2
			jt.SharedMemory = -1 // the payload travels in its frame
			// Heartbeats alone would find the stall only after 5 s.
			jt.HeartbeatInterval = time.Second
			jt.MinWorkers = 1
			r, err := sys.Spawn(jt)
			require.NoError(t, err)
			// Ready first, so that the call takes the fast path, where the
			// caller's goroutine writes its own request.
			require.Eventually(t, func() bool {
				st, err := r.Stats(context.Background())
				return err == nil && st.Idle == 1
			}, 10*time.Second, 5*time.Millisecond)
			if tc.prep != "" {
				_, err := r.Submit(context.Background(), procpool.Blob, []byte(tc.prep))
				require.NoError(t, err)
				time.Sleep(100 * time.Millisecond)
			}
			payload := bytes.Repeat([]byte("x"), 20<<20)
			if tc.prep != "" {
				payload = append([]byte("echo:"), payload...)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			start := time.Now()
			_, err = r.Call(ctx, procpool.Blob, payload)
			took := time.Since(start)
			require.Error(t, err)
			assert.ErrorIs(t, err, procpool.ErrCancelled)
			assert.ErrorIs(t, err, context.DeadlineExceeded)
			assert.Less(t, took, 3500*time.Millisecond, "the caller returns at its deadline, not at the heartbeat's kill (5 s)")
			require.Eventually(t, func() bool { return len(ev.of(actors.EventCrashed)) > 0 }, 10*time.Second, 10*time.Millisecond,
				"the stalled worker is killed")
		})
	}
}

// Item 4: pongs that answer no ping are no sign of life.
func TestUnsolicitedPongsAreNoSignOfLife(t *testing.T) {
	sys := newSystem(t)
	ev := watchEvents(sys)
	jt := rogueType(t, "echo", "wrong_pong")
	jt.MaxWorkers = 1
	jt.HeartbeatInterval = 100 * time.Millisecond
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = r.Call(ctx, procpool.Blob, []byte("x"))
	require.ErrorIs(t, err, procpool.ErrWorkerCrashed, "killed, not waited for")
	require.Eventually(t, func() bool { return len(ev.of(actors.EventCrashed)) > 0 }, 5*time.Second, 5*time.Millisecond)
}

// Item 5: a live worker that closes its answer pipe has broken the
// protocol: killed and replaced at once, even without heartbeats.
func TestClosedAnswerPipeKillsTheWorker(t *testing.T) {
	sys := newSystem(t)
	ev := watchEvents(sys)
	jt := rogueOnce(t, "echo", "close_answers")
	jt.MaxWorkers = 1
	jt.HeartbeatInterval = -1
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = r.Call(ctx, procpool.Blob, []byte("x"))
	require.ErrorIs(t, err, procpool.ErrWorkerCrashed)
	require.Eventually(t, func() bool { return len(ev.of(actors.EventCrashed)) == 1 }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, []supervisor.FailureKind{supervisor.ProtocolFailure}, crashKinds(ev))
	out, err := r.Call(ctx, procpool.Blob, []byte("again"))
	require.NoError(t, err)
	assert.Equal(t, "again", string(out))
}

// Item 6: responses the host did not ask for break the protocol.
func TestUnaskedResponsesKillTheWorker(t *testing.T) {
	for _, mode := range []string{"unknown_id", "duplicate", "flood"} {
		t.Run(mode, func(t *testing.T) {
			sys := newSystem(t)
			ev := watchEvents(sys)
			jt := rogueOnce(t, "echo", mode)
			jt.MaxWorkers = 1
			r, err := sys.Spawn(jt)
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			first, err := r.Call(ctx, procpool.Blob, []byte("one"))
			if mode == "duplicate" {
				require.NoError(t, err, "the first answer is the job's")
				assert.Equal(t, "one", string(first))
			} else {
				require.ErrorIs(t, err, procpool.ErrWorkerCrashed)
			}
			require.Eventually(t, func() bool { return len(ev.of(actors.EventCrashed)) == 1 }, 5*time.Second, 5*time.Millisecond)
			assert.Equal(t, []supervisor.FailureKind{supervisor.ProtocolFailure}, crashKinds(ev))
			out, err := r.Call(ctx, procpool.Blob, []byte("two"))
			require.NoError(t, err, "a replacement serves")
			assert.Equal(t, "two", string(out))
		})
	}
}

// Item 7: a refused handshake changes nothing, and a worker's own frame
// limit belongs to that worker.
func TestFrameLimitsBelongToTheirWorker(t *testing.T) {
	t.Run("refused handshake", func(t *testing.T) {
		sys := newSystem(t)
		jt := rogueOnce(t, "echo", "bad_version")
		jt.MinWorkers, jt.MaxWorkers = 1, 1
		r, err := sys.Spawn(jt)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := r.Call(ctx, procpool.Blob, []byte("hello!"))
		require.NoError(t, err)
		assert.Equal(t, "hello!", string(out))
	})
	t.Run("another worker takes it", func(t *testing.T) {
		sys := newSystem(t)
		once := filepath.Join(t.TempDir(), "small")
		jt := jobType(t, "echo")
		// The first worker accepts frames of 4 KiB only; the second, default.
		jt.Env = []string{"TESTWORKER_ROGUE=small", "TESTWORKER_ROGUE_ONCE=" + once}
		jt.MinWorkers, jt.MaxWorkers = 2, 2
		r, err := sys.Spawn(jt)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		big := bytes.Repeat([]byte("b"), 64<<10)
		for range 20 {
			out, err := r.Call(ctx, procpool.Blob, big)
			require.NoError(t, err)
			require.Equal(t, len(big), len(out))
		}
		out, err := r.Call(ctx, procpool.Blob, []byte("small"))
		require.NoError(t, err)
		assert.Equal(t, "small", string(out))
	})
	t.Run("no worker can take it", func(t *testing.T) {
		sys := newSystem(t)
		jt := jobType(t, "echo")
		jt.Env = []string{"TESTWORKER_MAX_FRAME=4096"}
		jt.MinWorkers, jt.MaxWorkers = 1, 1
		r, err := sys.Spawn(jt)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err = r.Call(ctx, procpool.Blob, bytes.Repeat([]byte("b"), 64<<10))
		require.ErrorIs(t, err, procpool.ErrPayloadTooLarge)
	})
}

// Item 9: a worker that exits badly when asked to stop is reported.
func TestBadExitAfterAStopIsReported(t *testing.T) {
	sys := newSystem(t)
	ev := watchEvents(sys)
	jt := rogueType(t, "echo", "exit_on_shutdown")
	jt.MinWorkers, jt.MaxWorkers = 1, 1
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	_, err = r.Call(ctx, procpool.Blob, []byte("x"))
	require.NoError(t, err)
	require.NoError(t, r.Shutdown(ctx))
	require.Eventually(t, func() bool { return len(ev.of(actors.EventUncleanStop)) == 1 }, 5*time.Second, 5*time.Millisecond)
	assert.Contains(t, ev.of(actors.EventUncleanStop)[0].Detail, "exit 3")
}

// Item 10: a result of the wrong kind, or a VALUE of more than one value,
// is ErrBadResult, never garbage.
func TestResultsOfTheWrongShapeAreBadResults(t *testing.T) {
	sys := newSystem(t)
	mismatch, err := sys.Spawn(rogueType(t, "mismatch", "kind_mismatch"))
	require.NoError(t, err)
	trailing, err := sys.Spawn(rogueType(t, "trailing", "trailing"))
	require.NoError(t, err)
	ctx := context.Background()
	v, err := procpool.CallValue[any](ctx, mismatch, "x")
	assert.ErrorIs(t, err, procpool.ErrBadResult, "a VALUE call answered with a BLOB (got %v)", v)
	b, err := mismatch.Call(ctx, procpool.Blob, []byte("x"))
	assert.ErrorIs(t, err, procpool.ErrBadResult, "a BLOB call answered with a VALUE (got %q)", b)
	// In a frame, bytes after the value break the frame itself: a protocol
	// violation. (In the shared memory region they are ErrBadResult; see
	// TestDecodeValueTakesExactlyOneValue.)
	n, err := procpool.CallValue[int](ctx, trailing, 1)
	var ce *procpool.CrashError
	require.ErrorAs(t, err, &ce, "two values where one was asked for (got %d)", n)
	assert.Contains(t, ce.Reason, "trailing bytes")
}

// Item 11: escalation while callers submit concurrently is race-free (run
// with -race).
func TestEscalationWhileSubmittingIsRaceFree(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "mixed")
	jt.MaxWorkers, jt.InFlight = 2, 2
	jt.Policy = supervisor.Policy{
		Intensity: supervisor.Intensity{MaxRestarts: 2, Window: time.Minute},
		Backoff:   supervisor.Backoff{Initial: time.Millisecond, Max: time.Millisecond, Multiplier: 1},
		GiveUp:    supervisor.EscalateToParent,
	}
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				job := "echo:x"
				if (g+i)%7 == 0 {
					job = "exit:3"
				}
				if j, err := r.Submit(ctx, procpool.Blob, []byte(job)); err == nil {
					_, _ = j.Wait(ctx)
				}
			}
		}()
	}
	wg.Wait()
}

// Item 12: Stats after Shutdown says so.
func TestStatsAfterShutdown(t *testing.T) {
	sys := newSystem(t)
	r, err := sys.Spawn(jobType(t, "echo"))
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, sys.Shutdown(ctx))
	_, err = sys.Stats(ctx, "echo")
	assert.ErrorIs(t, err, procpool.ErrShuttingDown)
	_, err = r.Stats(ctx)
	assert.ErrorIs(t, err, procpool.ErrShuttingDown)
}

// Item 13: an answer written just before the worker exits is the job's
// (here a panic answer, after which the worker exits at once).
func TestAnswerWrittenBeforeExitIsKept(t *testing.T) {
	sys := newSystem(t)
	jt := rogueType(t, "echo", "answer_exit")
	jt.MaxWorkers = 1
	jt.Policy = supervisor.Policy{
		Intensity: supervisor.Intensity{MaxRestarts: 1000, Window: time.Minute},
		Backoff:   supervisor.Backoff{Initial: time.Millisecond, Max: time.Millisecond, Multiplier: 1},
	}
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	lost := 0
	for i := range 150 {
		_, err := r.Call(ctx, procpool.Blob, []byte(fmt.Sprint(i)))
		var re *procpool.RemoteError
		if errors.As(err, &re) && re.Code == "panic" {
			continue
		}
		require.ErrorIs(t, err, procpool.ErrWorkerCrashed)
		lost++
	}
	assert.Zero(t, lost, "answers lost to the worker's exit")
}

// Item 14: a cancelled job's error matches ErrCancelled, ctx.Err() and
// context.Cause(ctx), whenever the context ended.
func TestCancellationKeepsItsCause(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "sleep")
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	cause := errors.New("the user went away")
	check := func(t *testing.T, err error, ctxErr error) {
		t.Helper()
		assert.ErrorIs(t, err, procpool.ErrCancelled)
		assert.ErrorIs(t, err, ctxErr)
		assert.ErrorIs(t, err, cause)
	}
	t.Run("before submission", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(cause)
		_, err := r.Call(ctx, procpool.Blob, []byte("1000"))
		check(t, err, context.Canceled)
	})
	t.Run("while running", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(context.Background())
		time.AfterFunc(100*time.Millisecond, func() { cancel(cause) })
		_, err := r.Call(ctx, procpool.Blob, []byte("5000"))
		check(t, err, context.Canceled)
	})
	t.Run("future", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(context.Background())
		j, err := r.Submit(ctx, procpool.Blob, []byte("5000"))
		require.NoError(t, err)
		time.AfterFunc(100*time.Millisecond, func() { cancel(cause) })
		<-j.Done()
		_, err = j.Result()
		check(t, err, context.Canceled)
	})
	t.Run("timeout with a cause", func(t *testing.T) {
		ctx, cancel := context.WithTimeoutCause(context.Background(), 100*time.Millisecond, cause)
		defer cancel()
		_, err := r.Call(ctx, procpool.Blob, []byte("5000"))
		check(t, err, context.DeadlineExceeded)
	})
}

// Item 15: RecycleAfterJobs is an exact cap.
func TestRecycleAfterJobsIsExact(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "pid")
	jt.MaxWorkers, jt.InFlight, jt.RecycleAfterJobs = 2, 2, 3
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	ctx := context.Background()
	var mu sync.Mutex
	perPID := map[string]int{}
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				out, err := r.Call(ctx, procpool.Blob, nil)
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				perPID[string(out)]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for pid, n := range perPID {
		assert.LessOrEqual(t, n, 3, "jobs run by worker %s", pid)
	}
	assert.GreaterOrEqual(t, len(perPID), 20)
}

// Item 16: a result over the frame limit matches ErrPayloadTooLarge.
func TestResultOverTheLimitIsPayloadTooLarge(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "repeat")
	jt.MaxFrame = 1 << 20
	jt.SharedMemory = -1
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	_, err = r.Call(context.Background(), procpool.Blob, []byte(strconv.Itoa(2<<20)))
	var re *procpool.RemoteError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, "too_large", re.Code)
	assert.ErrorIs(t, err, procpool.ErrPayloadTooLarge)
}

// The request carries the caller's deadline when it is sooner than
// JobTimeout, so that the worker can stop in time (issue 12).
func TestRequestCarriesTheCallersDeadline(t *testing.T) {
	sys := newSystem(t)
	plain, err := sys.Spawn(jobType(t, "budget"))
	require.NoError(t, err)
	jt := jobType(t, "mixed")
	jt.JobTimeout = time.Second
	timed, err := sys.Spawn(jt)
	require.NoError(t, err)
	budget := func(r *procpool.Router, ctx context.Context, payload string) string {
		out, err := r.Call(ctx, procpool.Blob, []byte(payload))
		require.NoError(t, err)
		return string(out)
	}
	assert.Equal(t, "none", budget(plain, context.Background(), ""), "no deadline, no JobTimeout")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ms, err := strconv.Atoi(budget(plain, ctx, ""))
	require.NoError(t, err)
	assert.InDelta(t, 5000, ms, 1000, "the caller's deadline")
	ms, err = strconv.Atoi(budget(timed, ctx, "budget:"))
	require.NoError(t, err)
	assert.InDelta(t, 1000, ms, 500, "JobTimeout, sooner than the caller's deadline")

	// A worker that stops at the caller's deadline: the caller's error is
	// its deadline's, whichever side noticed first.
	sctx, scancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer scancel()
	_, err = timed.Call(sctx, procpool.Blob, []byte("sleep:5000"))
	assert.ErrorIs(t, err, procpool.ErrCancelled)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}
