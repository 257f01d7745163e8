package childproc_test

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool/childproc"
	"github.com/procpool/procpool/internal/proctest"
)

func TestKill(t *testing.T) {
	clean(t)
	p := start(t, selfSpec(t, "sleep"))
	require.Equal(t, "ready", newLineReader(t, p).next())
	require.NoError(t, p.Kill())
	exit := waitDone(t, p)
	assert.Equal(t, syscall.SIGKILL, exit.Signal)
	assert.Equal(t, -1, exit.Code)
	assert.False(t, exit.Requested)
	assert.Equal(t, "killed by SIGKILL", exit.String())
	assert.ErrorIs(t, p.Kill(), os.ErrProcessDone)
	assert.ErrorIs(t, p.Signal(syscall.SIGTERM), os.ErrProcessDone)
	_, err := p.RSS()
	assert.ErrorIs(t, err, os.ErrProcessDone)
	_, err = p.Memory()
	assert.ErrorIs(t, err, os.ErrProcessDone)
}

func TestSignal(t *testing.T) {
	clean(t)
	p := start(t, selfSpec(t, "sleep"))
	require.Equal(t, "ready", newLineReader(t, p).next())
	require.NoError(t, p.Signal(syscall.SIGTERM))
	exit := waitDone(t, p)
	assert.Equal(t, syscall.SIGTERM, exit.Signal)
	assert.Equal(t, "killed by SIGTERM", exit.String())
}

func TestSelfKillSIGSEGV(t *testing.T) {
	clean(t)
	noCore := uint64(0)
	p := start(t, childproc.Spec{
		Path:   "/bin/sh",
		Args:   []string{"-c", "echo about to crash >&2; kill -SEGV $$"},
		Limits: childproc.Limits{CoreSize: &noCore},
	})
	exit := waitDone(t, p)
	assert.Equal(t, syscall.SIGSEGV, exit.Signal)
	assert.Equal(t, -1, exit.Code)
	assert.False(t, exit.CoreDumped)
	assert.Equal(t, "killed by SIGSEGV", exit.String())
	assert.Equal(t, []string{"about to crash"}, exit.StderrTail)
}

func TestStopIsGracefulFirst(t *testing.T) {
	clean(t)
	p := start(t, selfSpec(t, "echo"))
	_, err := p.Input().Write([]byte("hello\n"))
	require.NoError(t, err)
	require.Equal(t, "hello", newLineReader(t, p).next())
	began := time.Now()
	exit := p.Stop(context.Background(), waitLong)
	// A Go child killed by SIGTERM would report the signal: code 0 means
	// it left on its own, at the EOF on fd 3.
	assert.Equal(t, 0, exit.Code)
	assert.Zero(t, exit.Signal)
	assert.True(t, exit.Requested)
	assert.Less(t, time.Since(began), waitLong)
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
}

func TestStopEscalatesToSIGTERM(t *testing.T) {
	clean(t)
	p := start(t, selfSpec(t, "sleep")) // does not read fd 3, dies of SIGTERM
	require.Equal(t, "ready", newLineReader(t, p).next())
	exit := p.Stop(context.Background(), 200*time.Millisecond)
	assert.Equal(t, syscall.SIGTERM, exit.Signal)
	assert.True(t, exit.Requested)
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	clean(t)
	p := start(t, selfSpec(t, "stubborn")) // ignores EOF and SIGTERM
	require.Equal(t, "ready", newLineReader(t, p).next())
	const grace = 300 * time.Millisecond
	began := time.Now()
	exit := p.Stop(context.Background(), grace)
	took := time.Since(began)
	assert.Equal(t, syscall.SIGKILL, exit.Signal)
	assert.True(t, exit.Requested)
	assert.GreaterOrEqual(t, took, grace+grace/2, "the graces are waited")
	assert.Less(t, took, grace+grace/2+waitGone)
}

func TestStopContextEndCutsGraceShort(t *testing.T) {
	clean(t)
	p := start(t, selfSpec(t, "stubborn"))
	require.Equal(t, "ready", newLineReader(t, p).next())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	exit := p.Stop(ctx, time.Hour)
	assert.Less(t, time.Since(began), waitLong)
	assert.Equal(t, syscall.SIGKILL, exit.Signal)
	assert.True(t, exit.Requested)
}

func TestStopKillsGrandchild(t *testing.T) {
	for _, mode := range []string{"echo", "exit"} {
		t.Run(mode, func(t *testing.T) {
			clean(t)
			tag := newTag(t)
			p := start(t, selfSpec(t, "grandchild", mode, tag))
			require.Equal(t, "started", newLineReader(t, p).next())
			if mode == "echo" { // alive while the worker is
				gc := others(requireTagged(t, tag, 2), p.PID())[0] // the worker carries the tag too
				info, err := proctest.ReadProc(gc)
				require.NoError(t, err)
				require.Equal(t, p.PID(), info.PGID, "the grandchild is in the worker's group")
			}

			var exit childproc.ExitInfo
			if mode == "echo" { // stopped: leaves at EOF, the group is killed
				exit = p.Stop(context.Background(), waitLong)
				assert.True(t, exit.Requested)
			} else { // exits by itself, leaving the grandchild behind
				exit = waitDone(t, p)
				assert.False(t, exit.Requested)
			}
			assert.True(t, exit.Success(), "exit %v", exit)
			requireGone(t, tag, "the grandchild")
			assert.False(t, proctest.ProcessGroupAlive(p.PID()))
		})
	}
}

// TestEscapedGrandchildDoesNotBlockDone: a grandchild that left the
// worker's process group and holds stdout, stderr and fd 4 neither
// survives the worker nor delays Done.
func TestEscapedGrandchildDoesNotBlockDone(t *testing.T) {
	clean(t)
	tag := newTag(t)
	p := start(t, selfSpec(t, "grandchild", "escape", tag))
	require.Equal(t, "started", newLineReader(t, p).next())
	exit := waitDone(t, p)
	assert.True(t, exit.Success(), "exit %v", exit)
	assert.Empty(t, tagged(tag), "the escaped grandchild is gone when Done closes")
}

func TestHostDeathKillsWorker(t *testing.T) {
	for _, mode := range []string{"plain", "controls"} {
		t.Run(mode, func(t *testing.T) {
			clean(t)
			tag := newTag(t)
			host := start(t, selfSpec(t, "host", mode, tag))
			require.Equal(t, "started", newLineReader(t, host).next(), "host stderr: %q", host.StderrTail())
			worker := others(requireTagged(t, tag, 2), host.PID())[0] // the host carries the tag too
			// The host started it from a thread that has exited since:
			// it must still be alive.
			time.Sleep(200 * time.Millisecond)
			require.True(t, proctest.Alive(worker), "worker died with the forking thread")
			info, err := proctest.ReadProc(worker)
			require.NoError(t, err)
			require.Equal(t, host.PID(), info.PPID)

			require.NoError(t, host.Kill())
			exit := waitDone(t, host)
			require.Equal(t, syscall.SIGKILL, exit.Signal)
			requireGone(t, tag, "the worker after its host")
		})
	}
}
