package sandbox

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSweepKillsAndRemovesTheCgroupsOfDeadHosts: a cgroup named for a
// host that is gone (it was SIGKILLed) is emptied and removed by the next
// host's probe, its processes killed.
func TestSweepKillsAndRemovesTheCgroupsOfDeadHosts(t *testing.T) {
	sup := probeCgroups()
	if sup.v2Path == "" || sup.kill != "cgroup.kill" {
		t.Skipf("no cgroup v2 with cgroup.kill here: %s", sup.why)
	}
	// A pid that is surely gone: a child, reaped.
	dead := exec.Command("/bin/true")
	require.NoError(t, dead.Run())
	dir := filepath.Join(sup.v2Mount, sup.v2Path, "procpool-"+strconv.Itoa(dead.Process.Pid)+"-1")
	require.NoError(t, os.Mkdir(dir, 0o755))
	t.Cleanup(func() { _ = os.Remove(dir) })
	left := exec.Command("sleep", "60")
	require.NoError(t, left.Start())
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(left.Process.Pid)), 0))
	sup.sweep()
	err := left.Wait()
	require.Error(t, err, "the process the dead host left was killed")
	require.Equal(t, syscall.SIGKILL, left.ProcessState.Sys().(syscall.WaitStatus).Signal())
	require.Eventually(t, func() bool { _, err := os.Stat(dir); return os.IsNotExist(err) }, 5*time.Second, 10*time.Millisecond)
}
