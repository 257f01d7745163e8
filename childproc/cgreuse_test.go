package childproc_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool/childproc"
	"github.com/procpool/procpool/sandbox"
)

// TestSingleLimitCgroupReused: a sandbox with one cgroup limit only
// (Pids, Memory or CPU) gets its cgroup reused like one with all three:
// the next worker of the job type is in the cgroup of the one that ended
// (read from /proc/<pid>/cgroup, in the limit's own controller), and
// ReleaseSpares removes it. It holds for a cgroup that is also killable
// (the host's containment, ContainSharedNamespace or ContainCgroup) and
// for one that only limits (ContainSession). On a host with the limits on
// cgroup v1 and cgroup.kill on v2, the killable Pids and CPU cgroups were
// not reused: their OOM kill counter could not be read (see
// sandbox.Cgroup.OOMKills).
func TestSingleLimitCgroupReused(t *testing.T) {
	limits := []struct {
		name string
		ctrl string // the v1 controller the limit needs
		sb   sandbox.Sandbox
	}{
		{"pids", "pids", sandbox.Sandbox{Pids: 64}},
		{"memory", "memory", sandbox.Sandbox{Memory: 256 << 20}},
		{"cpu", "cpu", sandbox.Sandbox{CPU: 1}},
	}
	for _, tier := range []childproc.Containment{childproc.HostContainmentForTest(), childproc.ContainSession} {
		for _, tc := range limits {
			t.Run(tier.String()+"/"+tc.name, func(t *testing.T) {
				clean(t)
				t.Cleanup(childproc.ForceContainmentForTest(tier))
				name := "reuse-" + tc.name
				a := startNamedProbe(t, name, tc.sb)
				require.Equal(t, tier, a.p.Containment())
				dir := workerCgroupDir(t, a.p.PID(), tc.ctrl)
				require.Contains(t, filepath.Base(dir), "procpool-", "the worker has a cgroup of its own")
				exit := a.p.Stop(context.Background(), waitLong)
				require.True(t, exit.Success(), "exit %v, stderr %q", exit, exit.StderrTail)

				b := startNamedProbe(t, name, tc.sb)
				assert.Equal(t, dir, workerCgroupDir(t, b.p.PID(), tc.ctrl), "the next worker of the job type reuses the cgroup")
				exit = b.p.Stop(context.Background(), waitLong)
				require.True(t, exit.Success(), "exit %v, stderr %q", exit, exit.StderrTail)

				childproc.ReleaseSpares(name)
				_, err := os.Stat(dir)
				assert.ErrorIs(t, err, os.ErrNotExist, "ReleaseSpares removes the kept cgroup")
			})
		}
	}
}

// workerCgroupDir returns the directory of process pid's cgroup that
// procpool made (named procpool-...): in the v1 hierarchy of controller
// ctrl, else in the unified one; "" if it has none.
func workerCgroupDir(t *testing.T, pid int, ctrl string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	require.NoError(t, err)
	unified := ""
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || !strings.Contains(parts[2], "procpool-") {
			continue
		}
		switch {
		case strings.Contains(","+parts[1]+",", ","+ctrl+","):
			return filepath.Join("/sys/fs/cgroup", ctrl, parts[2])
		case parts[1] == "":
			unified = filepath.Join("/sys/fs/cgroup/unified", parts[2])
		}
	}
	return unified
}
