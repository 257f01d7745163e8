package sandbox_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/procpool/procpool/sandbox"
)

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		name string
		sb   sandbox.Sandbox
		want string // "" for valid
	}{
		{"zero", sandbox.Sandbox{}, ""},
		{"everything", sandbox.Sandbox{Credential: &sandbox.Credential{UID: 1, GID: 1}, Memory: 1 << 30, CPU: 1.5, Pids: 10,
			Namespaces: sandbox.Namespaces{User: true, Network: true, PID: true}, Seccomp: &sandbox.Seccomp{Deny: []string{"chroot"}},
			Landlock: &sandbox.Landlock{ReadOnly: []string{"/usr"}}}, ""},
		{"negative CPU", sandbox.Sandbox{CPU: -1}, "CPU -1"},
		{"tiny CPU", sandbox.Sandbox{CPU: 0.001}, "0.01 CPU"},
		{"negative pids", sandbox.Sandbox{Pids: -2}, "Pids -2"},
		{"tiny memory", sandbox.Sandbox{Memory: 1000}, "Memory 1000"},
		{"user namespace without credential", sandbox.Sandbox{Namespaces: sandbox.Namespaces{User: true}}, "needs Credential"},
		{"unknown call", sandbox.Sandbox{Seccomp: &sandbox.Seccomp{Deny: []string{"nope"}}}, `unknown system call "nope"`},
		{"duplicate call", sandbox.Sandbox{Seccomp: &sandbox.Seccomp{Allow: []string{"read", "read"}}}, `"read" twice`},
		{"deny with allow", sandbox.Sandbox{Seccomp: &sandbox.Seccomp{Allow: []string{"read"}, Deny: []string{"write"}}}, "no effect"},
		{"relative path", sandbox.Sandbox{Landlock: &sandbox.Landlock{ReadWrite: []string{"tmp"}}}, "not an absolute path"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.sb.Validate()
			if c.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, sandbox.ErrInvalid)
			assert.Contains(t, err.Error(), c.want)
		})
	}
}

func TestIsZeroAndImplications(t *testing.T) {
	var z sandbox.Sandbox
	assert.True(t, z.IsZero())
	assert.False(t, z.NeedsNoNewPrivs())
	assert.False(t, z.NeedsCgroup())
	s := sandbox.Sandbox{Landlock: &sandbox.Landlock{}}
	assert.False(t, s.IsZero())
	assert.True(t, s.NeedsNoNewPrivs(), "Landlock needs no_new_privs")
	assert.True(t, (&sandbox.Sandbox{Seccomp: &sandbox.Seccomp{}}).NeedsNoNewPrivs())
	assert.True(t, (&sandbox.Sandbox{Pids: 3}).NeedsCgroup())
	assert.Equal(t, uintptr(unix.CLONE_NEWNET|unix.CLONE_NEWUTS),
		(&sandbox.Sandbox{Namespaces: sandbox.Namespaces{Network: true, UTS: true, PID: true}}).CloneFlags(),
		"the PID namespace is the containment's business")
}

func TestSeccompPrograms(t *testing.T) {
	def, err := (&sandbox.Seccomp{}).Program()
	require.NoError(t, err)
	// The first three instructions check the architecture: another ABI
	// kills the process.
	require.Greater(t, len(def), 3)
	assert.Equal(t, uint16(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS), def[0].Code)
	assert.Equal(t, uint32(4), def[0].K, "seccomp_data.arch")
	assert.Equal(t, uint32(unix.SECCOMP_RET_KILL_PROCESS), def[2].K)

	allow, err := (&sandbox.Seccomp{Allow: []string{"read", "write", "exit_group"}}).Program()
	require.NoError(t, err)
	more, err := (&sandbox.Seccomp{Allow: []string{"read", "write", "exit_group"}}).Program("execve")
	require.NoError(t, err)
	assert.Greater(t, len(more), len(allow), "alsoAllow adds to an allow-list")
	assert.Less(t, len(allow), len(def), "three calls take fewer instructions than the default profile")
}

func TestLandlockRuleset(t *testing.T) {
	if sandbox.LandlockABI() == 0 {
		t.Skip("the kernel has no Landlock")
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	fd, _, err := (&sandbox.Landlock{ReadOnly: []string{dir, file}, ReadWrite: []string{t.TempDir()}}).Ruleset()
	require.NoError(t, err, "files and directories both")
	unix.Close(fd)
	_, _, err = (&sandbox.Landlock{ReadOnly: []string{"/nonexistent/x"}}).Ruleset()
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.Contains(t, err.Error(), "/nonexistent/x")
}

// cgroupSupported skips the test where this host cannot make the
// cgroups, saying why.
func cgroupSupported(t *testing.T, sb *sandbox.Sandbox, killable bool) *sandbox.Cgroup {
	t.Helper()
	c, err := sandbox.NewCgroup(sb, killable)
	if errors.Is(err, sandbox.ErrUnsupported) {
		t.Skipf("no cgroup here: %v", err)
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Delete() })
	return c
}

func TestCgroupKillsEveryMember(t *testing.T) {
	c := cgroupSupported(t, &sandbox.Sandbox{}, true)
	require.True(t, c.Killable())
	cmd := exec.Command("/bin/sh", "-c", "sleep 60 & sleep 60 & wait")
	require.NoError(t, cmd.Start())
	require.NoError(t, c.Add(cmd.Process.Pid))
	time.Sleep(100 * time.Millisecond) // the shell forks its two children
	assert.False(t, c.Empty())
	require.NoError(t, c.KillAll(10*time.Second))
	assert.True(t, c.Empty())
	assert.True(t, c.Killed())
	err := cmd.Wait()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, syscall.SIGKILL, ee.Sys().(syscall.WaitStatus).Signal())
	require.NoError(t, c.Delete())
	require.NoError(t, c.Delete(), "twice is harmless")
}

func TestCgroupCountsOOMKills(t *testing.T) {
	c := cgroupSupported(t, &sandbox.Sandbox{Memory: 32 << 20}, false)
	n, err := c.OOMKills()
	require.NoError(t, err)
	assert.Zero(t, n)
	// A shell child that grows past the limit: python3 or dd allocate
	// fast; head -c of /dev/zero into a variable is enough too.
	cmd := exec.Command("/bin/sh", "-c", `x=$(head -c 200000000 /dev/zero | tr '\0' x); echo ${#x}`)
	require.NoError(t, cmd.Start())
	require.NoError(t, c.Add(cmd.Process.Pid))
	_ = cmd.Wait()
	require.Eventually(t, func() bool {
		n, err = c.OOMKills()
		return err == nil && n > 0
	}, 10*time.Second, 10*time.Millisecond, "an OOM kill in the cgroup is counted")
}

// TestCgroupWithoutMemoryCountsNoOOMKills: a cgroup with no memory
// controller (only Pids or CPU limits, killable or not) has no OOM kill
// counter of its own: OOMKills is zero, and ResetCounters succeeds, so that
// the cgroup can be reused. (A killable one on a host with cgroup v1 limits
// and cgroup.kill on v2 once read memory.events of its v2 part, which has
// no memory controller, and failed.)
func TestCgroupWithoutMemoryCountsNoOOMKills(t *testing.T) {
	for _, c := range []struct {
		name     string
		sb       sandbox.Sandbox
		killable bool
	}{
		{"pids", sandbox.Sandbox{Pids: 64}, false},
		{"pids killable", sandbox.Sandbox{Pids: 64}, true},
		{"cpu", sandbox.Sandbox{CPU: 1}, false},
		{"cpu killable", sandbox.Sandbox{CPU: 1}, true},
		{"killable only", sandbox.Sandbox{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cg := cgroupSupported(t, &c.sb, c.killable)
			n, err := cg.OOMKills()
			require.NoError(t, err)
			assert.Zero(t, n)
			assert.NoError(t, cg.ResetCounters())
		})
	}
}

func TestCheckSaysWhatIsMissing(t *testing.T) {
	// This host (root) can apply everything but what it truly lacks; a
	// credential change without CAP_SETUID is what a user host lacks.
	if os.Geteuid() == 0 {
		assert.NoError(t, (&sandbox.Sandbox{Credential: &sandbox.Credential{UID: 65534, GID: 65534}}).Check())
	}
	err := (&sandbox.Sandbox{Landlock: &sandbox.Landlock{ReadOnly: []string{"/nonexistent/y"}}}).Check()
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "/nonexistent/y"), "%v", err)
}
