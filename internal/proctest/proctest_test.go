package proctest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool/internal/proctest"
)

func TestMain(m *testing.M) { proctest.VerifyTestMain(m) }

// fakeT records failures instead of failing the real test.
type fakeT struct {
	testing.TB
	failed bool
	msgs   []string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Errorf(format string, args ...any) {
	f.failed = true
	f.msgs = append(f.msgs, format)
}
func (f *fakeT) Error(args ...any) { f.failed = true }

func TestChildrenZombiesAlive(t *testing.T) {
	defer proctest.VerifyNone(t)
	require.Empty(t, proctest.Children())

	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	pid := cmd.Process.Pid
	assert.Equal(t, []int{pid}, proctest.Children())
	assert.Empty(t, proctest.Zombies())
	assert.True(t, proctest.Alive(pid))
	assert.True(t, proctest.ProcessGroupAlive(pid))
	assert.Contains(t, proctest.Describe(pid), "sleep 60")

	f := &fakeT{TB: t}
	proctest.VerifyNoChildren(f, 50*time.Millisecond)
	assert.True(t, f.failed, "a live child is reported")

	require.NoError(t, cmd.Process.Kill())
	require.True(t, proctest.WaitFor(10*time.Second, func() bool { return len(proctest.Zombies()) == 1 }))
	assert.Equal(t, []int{pid}, proctest.Zombies())
	assert.False(t, proctest.Alive(pid), "a zombie is not alive")
	assert.False(t, proctest.ProcessGroupAlive(pid))

	_ = cmd.Wait()
	assert.Empty(t, proctest.Children())
	assert.False(t, proctest.Alive(pid))
}

func TestCheckFDs(t *testing.T) {
	defer proctest.VerifyNone(t)
	f := &fakeT{TB: t}
	check := proctest.CheckFDs(f)
	file, err := os.Open("/dev/null")
	require.NoError(t, err)
	n := proctest.FDCount()
	check()
	assert.True(t, f.failed, "a leaked descriptor is reported")
	file.Close()
	assert.Equal(t, n-1, proctest.FDCount())

	f = &fakeT{TB: t}
	check = proctest.CheckFDs(f)
	file, err = os.Open("/dev/null")
	require.NoError(t, err)
	go func() {
		time.Sleep(50 * time.Millisecond)
		file.Close()
	}()
	check()
	assert.False(t, f.failed, "a descriptor closed a little later is waited for")
}

func TestReadProcOddNames(t *testing.T) {
	defer proctest.VerifyNone(t)
	p, err := proctest.ReadProc(os.Getpid())
	require.NoError(t, err)
	assert.Equal(t, os.Getpid(), p.PID)
	assert.Equal(t, os.Getppid(), p.PPID)
	assert.Equal(t, syscall.Getpgrp(), p.PGID)

	// A command name with spaces and parentheses.
	sleep, err := exec.LookPath("sleep")
	require.NoError(t, err)
	odd := filepath.Join(t.TempDir(), "a) b (c")
	require.NoError(t, os.Symlink(sleep, odd))
	cmd := exec.Command(odd, "60")
	require.NoError(t, cmd.Start())
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	p, err = proctest.ReadProc(cmd.Process.Pid)
	require.NoError(t, err)
	assert.Equal(t, "a) b (c", p.Comm)
	assert.Equal(t, os.Getpid(), p.PPID)
	assert.Equal(t, []int{cmd.Process.Pid}, proctest.Children())
}
