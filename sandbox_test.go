package procpool_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/actors"
	"github.com/procpool/procpool/internal/proctest"
	"github.com/procpool/procpool/internal/testbin"
	"github.com/procpool/procpool/sandbox"
	"github.com/procpool/procpool/supervisor"
)

// TestSandboxOOMKillIsAMemoryFailure: a worker that allocates past its
// sandbox's memory limit is killed by the kernel at once, and the pool
// reports it as a memory failure, from the cgroup's own counter.
func TestSandboxOOMKillIsAMemoryFailure(t *testing.T) {
	sb := procpool.Sandbox{Memory: 96 << 20}
	if err := sb.Check(); errors.Is(err, sandbox.ErrUnsupported) {
		t.Skipf("no memory limit here: %v", err)
	}
	sys := newSystem(t)
	ev := watchEvents(sys)
	jt := jobType(t, "alloc")
	jt.MaxWorkers, jt.Sandbox = 1, sb
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	_, err = r.Call(context.Background(), procpool.Blob, []byte("512"))
	require.ErrorIs(t, err, procpool.ErrWorkerCrashed)
	var ce *procpool.CrashError
	require.ErrorAs(t, err, &ce)
	assert.Contains(t, ce.Reason, "out of memory")
	require.Eventually(t, func() bool { return len(ev.of(actors.EventCrashed)) > 0 }, 10*time.Second, 10*time.Millisecond)
	crash := ev.of(actors.EventCrashed)[0]
	require.NotNil(t, crash.Failure)
	assert.Equal(t, supervisor.MemoryFailure, crash.Failure.Kind)
}

// TestSpawnRefusesASandboxItCannotApply: the refusal says which control and
// why, and matches both ErrInvalidJobType and the sandbox's own error.
func TestSpawnRefusesASandboxItCannotApply(t *testing.T) {
	sys := newSystem(t)
	jt := jobType(t, "echo")
	jt.Sandbox = procpool.Sandbox{Namespaces: sandbox.Namespaces{User: true}}
	_, err := sys.Spawn(jt)
	require.ErrorIs(t, err, procpool.ErrInvalidJobType)
	assert.ErrorIs(t, err, sandbox.ErrInvalid)
	assert.Contains(t, err.Error(), "Namespaces.User needs Credential")

	jt.Sandbox = procpool.Sandbox{Landlock: &sandbox.Landlock{ReadOnly: []string{"/nonexistent/dir"}}}
	_, err = sys.Spawn(jt)
	require.ErrorIs(t, err, procpool.ErrInvalidJobType)
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.Contains(t, err.Error(), "/nonexistent/dir")
}

// TestSandboxedPoolRunsJobs: a job type under every control at once still
// runs its jobs, in a namespace of its own per worker.
func TestSandboxedPoolRunsJobs(t *testing.T) {
	sb := procpool.Sandbox{
		Credential: &sandbox.Credential{UID: 65534, GID: 65534},
		Memory:     512 << 20, CPU: 1, Pids: 128,
		Namespaces: sandbox.Namespaces{User: true, Network: true, PID: true, Mount: true, IPC: true, UTS: true},
		Seccomp:    &sandbox.Seccomp{},
	}
	if err := sb.Check(); errors.Is(err, sandbox.ErrUnsupported) {
		t.Skipf("this machine cannot apply the sandbox: %v", err)
	}
	sys := newSystem(t)
	jt := jobType(t, "echo")
	jt.Sandbox = sb
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	out, err := r.Call(context.Background(), procpool.Blob, []byte("hello, sandbox"))
	require.NoError(t, err)
	assert.Equal(t, "hello, sandbox", string(out))
	jt2 := jobType(t, "selfinfo")
	jt2.Sandbox = sb
	r2, err := sys.Spawn(jt2)
	require.NoError(t, err)
	info, err := r2.Call(context.Background(), procpool.Blob, nil)
	require.NoError(t, err)
	assert.Contains(t, string(info), "Uid:\t65534\t65534\t65534\t65534")
	assert.Contains(t, string(info), "NoNewPrivs:\t1")
	assert.Contains(t, string(info), "Seccomp:\t2")
}

// slowSink takes a millisecond per record, as a remote log service might.
type slowSink struct {
	mu sync.Mutex
	n  int
}

func (s *slowSink) Write(b []byte) (int, error) {
	time.Sleep(time.Millisecond)
	s.mu.Lock()
	s.n++
	s.mu.Unlock()
	return len(b), nil
}

// TestShutdownIsNotDelayedByASlowLogger: workers that flood stdout into a
// logger taking a millisecond per record do not hold Shutdown past its
// deadline (issue 9, item 8: it took 37 s for a 10 s deadline).
func TestShutdownIsNotDelayedByASlowLogger(t *testing.T) {
	testbin.Path(t)
	sink := &slowSink{}
	sys := procpool.NewSystem(procpool.Config{Logger: hclog.New(&hclog.LoggerOptions{Output: sink, Level: hclog.Info})})
	jt := jobType(t, "spam")
	jt.MinWorkers = 2
	r, err := sys.Spawn(jt)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = r.Call(context.Background(), procpool.Blob, []byte("20000"))
		}()
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	assert.NoError(t, sys.Shutdown(ctx), "Shutdown waited for the logger")
	proctest.VerifyNone(t)
}

// TestEscapedGrandchildrenDieWithTheirPool: what a worker starts, in a
// session of its own or not, is gone once the pool has shut down.
func TestEscapedGrandchildrenDieWithTheirPool(t *testing.T) {
	sys := newSystem(t)
	r, err := sys.Spawn(jobType(t, "grandchild"))
	require.NoError(t, err)
	ns, err := r.Call(context.Background(), procpool.Blob, []byte("setsid"))
	require.NoError(t, err)
	_, err = strconv.Atoi(string(ns))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, sys.Shutdown(ctx))
	// The grandchild's command line is the test worker's own, with
	// TESTWORKER_MODE in its environment: none must be left.
	require.Eventually(t, func() bool {
		for _, p := range proctest.All() {
			env, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/environ")
			if err == nil && strings.Contains(string(env), "TESTWORKER_MODE=sleep_forever") && p.State != 'Z' {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "a worker's grandchild outlived its pool")
}

// TestShutdownLeavesNoNamespaceInit: when Shutdown returns, no process of
// the pool is left, not even the PID namespace inits that childproc keeps
// ready for the next start (the shared one by default, spares made ahead
// for workers with namespaces of their own), which used to linger a
// second longer.
func TestShutdownLeavesNoNamespaceInit(t *testing.T) {
	for _, tc := range []struct {
		name string
		sb   procpool.Sandbox
	}{
		{"shared namespace", procpool.Sandbox{}},
		{"own namespace", procpool.Sandbox{Namespaces: sandbox.Namespaces{PID: true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.sb.Check(); errors.Is(err, sandbox.ErrUnsupported) {
				t.Skipf("this machine cannot apply the sandbox: %v", err)
			}
			sys := procpool.NewSystem(procpool.Config{})
			jt := jobType(t, "echo")
			jt.Sandbox = tc.sb
			jt.MinWorkers, jt.MaxWorkers = 2, 2
			r, err := sys.Spawn(jt)
			require.NoError(t, err)
			_, err = r.Call(context.Background(), procpool.Blob, []byte("x"))
			require.NoError(t, err)
			if len(proctest.NamespaceInits()) == 0 {
				t.Skip("no PID namespace here: nothing to leave behind")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			require.NoError(t, sys.Shutdown(ctx))
			assert.Empty(t, proctest.NamespaceInits(), "namespace inits left after Shutdown")
			assert.Empty(t, proctest.Children())
		})
	}
}
