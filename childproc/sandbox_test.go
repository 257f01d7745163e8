package childproc_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool/childproc"
	"github.com/procpool/procpool/sandbox"
)

// prober is a "probe" worker: it answers commands about itself.
type prober struct {
	t     *testing.T
	p     *childproc.Process
	lines *lineReader
}

// startProbe starts a probe worker under sb, skipping the test, and saying
// why, where this machine cannot apply sb.
func startProbe(t *testing.T, sb sandbox.Sandbox) *prober {
	t.Helper()
	requireSupported(t, sb)
	spec := selfSpec(t, "probe")
	spec.Sandbox = sb
	p := start(t, spec)
	return &prober{t: t, p: p, lines: newLineReader(t, p)}
}

// requireSupported skips the test, saying what is missing, where this
// machine cannot apply sb.
func requireSupported(t *testing.T, sb sandbox.Sandbox) {
	t.Helper()
	if err := sb.Check(); err != nil {
		if errors.Is(err, sandbox.ErrUnsupported) {
			t.Skipf("this machine cannot apply the sandbox: %v", err)
		}
		t.Fatal(err)
	}
}

// ask sends one command and returns the answer.
func (pr *prober) ask(cmd string) string {
	pr.t.Helper()
	_, err := pr.p.Input().Write([]byte(cmd + "\n"))
	require.NoError(pr.t, err, "sending %q (stderr %q)", cmd, pr.p.StderrTail())
	return pr.lines.next()
}

// startModes are the two ways a worker is set up.
var startModes = []string{"traced", "trampoline"}

func inMode(t *testing.T, mode string) {
	if mode == "trampoline" {
		t.Cleanup(childproc.DisablePtraceForTest())
	}
}

// TestSandboxIdentityAndSeccomp reads back, from inside the worker, its
// user and groups, no_new_privs and its seccomp filter, which denies what
// the default profile lists and nothing the worker needs.
func TestSandboxIdentityAndSeccomp(t *testing.T) {
	for _, mode := range startModes {
		t.Run(mode, func(t *testing.T) {
			inMode(t, mode)
			clean(t)
			// Without the filter, io_uring_setup works here: the filter
			// is what refuses it below.
			if ans := startProbe(t, sandbox.Sandbox{}).ask("iouring"); ans != "ok" {
				t.Skipf("io_uring_setup fails without a filter (%s): the kernel disables io_uring", ans)
			}
			pr := startProbe(t, sandbox.Sandbox{
				Credential: &sandbox.Credential{UID: 65534, GID: 65534},
				Seccomp:    &sandbox.Seccomp{},
			})
			assert.Equal(t, "65534 65534 65534 65534", pr.ask("status Uid"))
			assert.Equal(t, "65534 65534 65534 65534", pr.ask("status Gid"))
			assert.Equal(t, "", pr.ask("status Groups"), "the host's groups are dropped")
			assert.Equal(t, "1", pr.ask("status NoNewPrivs"), "seccomp implies no_new_privs")
			assert.Equal(t, "2", pr.ask("status Seccomp"), "a filter (mode 2)")
			assert.Equal(t, "error: EPERM", pr.ask("iouring"), "the default profile denies io_uring")
			assert.Contains(t, pr.ask("read /proc/self/status"), "ok ", "and not what the worker needs")
			exit := pr.p.Stop(context.Background(), waitLong)
			assert.True(t, exit.Success(), "exit %v, stderr %q", exit, exit.StderrTail)

			// Kill: a denied call kills the process.
			pr = startProbe(t, sandbox.Sandbox{Seccomp: &sandbox.Seccomp{Kill: true}})
			_, err := pr.p.Input().Write([]byte("iouring\n"))
			require.NoError(t, err)
			exit = waitDone(t, pr.p)
			assert.Equal(t, syscall.SIGSYS, exit.Signal, "exit %v", exit)
		})
	}
}

// TestSandboxSeccompAllowList: an allow-list permits what it lists and
// denies the rest, here socket(2).
func TestSandboxSeccompAllowList(t *testing.T) {
	for _, mode := range startModes {
		t.Run(mode, func(t *testing.T) {
			inMode(t, mode)
			clean(t)
			pr := startProbe(t, sandbox.Sandbox{Seccomp: &sandbox.Seccomp{Allow: goRuntimeCalls}})
			assert.Equal(t, "2", pr.ask("status Seccomp"))
			assert.Contains(t, pr.ask("read /proc/self/status"), "ok ", "listed calls work")
			assert.Equal(t, "error: EPERM", pr.ask("connect 127.0.0.1:9"), "socket(2) is not listed")
			assert.Equal(t, "error: EPERM", pr.ask("iouring"))
			exit := pr.p.Stop(context.Background(), waitLong)
			assert.True(t, exit.Success(), "exit %v, stderr %q", exit, exit.StderrTail)
		})
	}
}

// goRuntimeCalls is what the probe worker (a Go program reading files and
// answering on its pipes) makes, and no socket.
var goRuntimeCalls = []string{
	"read", "write", "close", "fstat", "lseek", "mmap", "mprotect", "munmap", "brk", "rt_sigaction",
	"rt_sigprocmask", "rt_sigreturn", "ioctl", "pread64", "pwrite64", "madvise", "sched_yield", "nanosleep",
	"getpid", "gettid", "tgkill", "clone", "exit", "exit_group", "futex", "sigaltstack", "openat",
	"newfstatat", "fcntl", "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_wait", "pipe2", "eventfd2",
	"readlinkat", "getdents64", "uname", "arch_prctl", "set_tid_address", "set_robust_list", "rseq",
	"prlimit64", "sched_getaffinity", "getrandom", "clock_gettime", "clock_nanosleep", "waitid", "wait4",
	"mincore", "setitimer", "timer_create", "timer_settime", "timer_delete", "prctl", "capget",
}

// TestSandboxNamespaces reads back the worker's namespaces: its own PID
// namespace (it is PID 2 and sees only itself and its init), a network
// namespace with only a loopback that is down, mount, IPC and UTS
// namespaces, and a user namespace mapping only its ids.
func TestSandboxNamespaces(t *testing.T) {
	for _, mode := range startModes {
		t.Run(mode, func(t *testing.T) {
			inMode(t, mode)
			clean(t)
			sb := sandbox.Sandbox{
				Credential: &sandbox.Credential{UID: 65534, GID: 65534},
				Namespaces: sandbox.Namespaces{Network: true, PID: true, Mount: true, IPC: true, UTS: true, User: mode == "traced"},
			}
			pr := startProbe(t, sb)
			assert.Equal(t, childproc.ContainPIDNamespace, pr.p.Containment())
			for _, kind := range []string{"pid", "net", "mnt", "ipc", "uts"} {
				own, err := os.Readlink("/proc/self/ns/" + kind)
				require.NoError(t, err)
				assert.NotEqual(t, own, pr.ask("ns "+kind), "a %s namespace of its own", kind)
			}
			// Its pid in its namespace (2 when traced; the trampoline's
			// init is a Go program, whose threads take the next few), in
			// whose /proc it sees only its init and itself.
			nspid := pr.ask("status NSpid")
			assert.NotContains(t, nspid, " ", "a single pid: /proc is its namespace's")
			if mode == "traced" {
				assert.Equal(t, "2", nspid)
			}
			assert.Equal(t, "1 "+nspid, pr.ask("procs"), "only its init and itself")
			assert.Equal(t, "lo:down", pr.ask("ifaces"))
			assert.Equal(t, "error: ENETUNREACH", pr.ask("connect 10.1.2.3:80"), "no network at all")
			if mode == "traced" {
				user, err := os.Readlink("/proc/self/ns/user")
				require.NoError(t, err)
				assert.NotEqual(t, user, pr.ask("ns user"))
				assert.Equal(t, "65534 65534 1", pr.ask("uidmap"), "only its own uid exists")
			}
			exit := pr.p.Stop(context.Background(), waitLong)
			assert.True(t, exit.Success(), "exit %v, stderr %q", exit, exit.StderrTail)
		})
	}
}

// TestSandboxLandlock: the worker reads what ReadOnly lists, writes what
// ReadWrite lists, and nothing else.
func TestSandboxLandlock(t *testing.T) {
	for _, mode := range startModes {
		t.Run(mode, func(t *testing.T) {
			inMode(t, mode)
			clean(t)
			ro, rw := t.TempDir(), t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(ro, "file"), []byte("readable"), 0o644))
			// The test binary loads its C library after the rules take
			// effect, and the Go runtime reads /proc.
			readOnly := []string{ro, "/proc"}
			for _, p := range []string{"/lib", "/lib64", "/usr/lib", "/etc/ld.so.cache"} {
				if _, err := os.Stat(p); err == nil {
					readOnly = append(readOnly, p)
				}
			}
			pr := startProbe(t, sandbox.Sandbox{Landlock: &sandbox.Landlock{ReadOnly: readOnly, ReadWrite: []string{rw}}})
			assert.Equal(t, "1", pr.ask("status NoNewPrivs"), "Landlock implies no_new_privs")
			assert.Equal(t, "ok 8", pr.ask("read "+filepath.Join(ro, "file")))
			assert.Equal(t, "error: EACCES", pr.ask("read /etc/hostname"), "a path Landlock denies")
			assert.Equal(t, "ok", pr.ask("create "+filepath.Join(rw, "new")))
			assert.Equal(t, "error: EACCES", pr.ask("create "+filepath.Join(ro, "new")))
			exit := pr.p.Stop(context.Background(), waitLong)
			assert.True(t, exit.Success(), "exit %v, stderr %q", exit, exit.StderrTail)
			_, err := os.Stat(filepath.Join(rw, "new"))
			assert.NoError(t, err)
		})
	}
}

// TestSandboxCgroupLimits reads the worker's cgroup limits back, forks
// past the task limit, and has a child allocate past the memory limit:
// the kernel kills it, and the cgroup's own counter says so in ExitInfo.
func TestSandboxCgroupLimits(t *testing.T) {
	for _, mode := range startModes {
		t.Run(mode, func(t *testing.T) {
			inMode(t, mode)
			clean(t)
			// The fork burst starts copies of this test binary: built
			// with -race, each takes tens of megabytes.
			memory := uint64(96 << 20)
			if raceEnabled {
				memory = 256 << 20
			}
			limit := strconv.FormatUint(memory, 10)
			sb := sandbox.Sandbox{Memory: memory, CPU: 0.25, Pids: 24}
			pr := startProbe(t, sb)
			v2 := strings.HasPrefix(pr.ask("cgroup memory memory.limit_in_bytes"), "error")
			if v2 {
				assert.Equal(t, limit, pr.ask("cgroup unified memory.max"))
				assert.Equal(t, "25000 100000", pr.ask("cgroup unified cpu.max"))
				assert.Equal(t, "24", pr.ask("cgroup unified pids.max"))
			} else {
				assert.Equal(t, limit, pr.ask("cgroup memory memory.limit_in_bytes"))
				assert.Equal(t, "25000", pr.ask("cgroup cpu cpu.cfs_quota_us"))
				assert.Equal(t, "100000", pr.ask("cgroup cpu cpu.cfs_period_us"))
				assert.Equal(t, "24", pr.ask("cgroup pids pids.max"))
			}
			// The worker's own threads count: it starts fewer than 24.
			fork := pr.ask("fork 24")
			assert.Regexp(t, `^failed after \d+: .*(EAGAIN|resource temporarily unavailable)`, fork)
			assert.Equal(t, "signal: killed", pr.ask("hog 400"), "a child past the memory limit is OOM-killed")
			exit := pr.p.Stop(context.Background(), waitLong)
			assert.Positive(t, exit.OOMKills, "the cgroup counted the child's OOM kill")
			assert.False(t, exit.OOMKilled(), "the worker itself survived: %v", exit)

			// The worker itself past the limit.
			pr = startProbe(t, sb)
			_, err := pr.p.Input().Write([]byte("alloc 400\n"))
			require.NoError(t, err)
			exit = waitDone(t, pr.p)
			assert.True(t, exit.OOMKilled(), "exit %v", exit)
			assert.Equal(t, "killed by SIGKILL (out of memory)", exit.String())
		})
	}
}

// TestSandboxRefusedWithItsReason: a sandbox that cannot be applied is
// refused at Validate (and Start), with an error that says which control
// and why, matching sandbox.ErrInvalid or sandbox.ErrUnsupported.
func TestSandboxRefusedWithItsReason(t *testing.T) {
	self, err := os.Executable()
	require.NoError(t, err)
	for _, c := range []struct {
		name string
		sb   sandbox.Sandbox
		is   error
		want string
	}{
		{"user namespace without credential", sandbox.Sandbox{Namespaces: sandbox.Namespaces{User: true}},
			sandbox.ErrInvalid, "Namespaces.User needs Credential"},
		{"unknown system call", sandbox.Sandbox{Seccomp: &sandbox.Seccomp{Allow: []string{"read", "frobnicate"}}},
			sandbox.ErrInvalid, `unknown system call "frobnicate"`},
		{"relative Landlock path", sandbox.Sandbox{Landlock: &sandbox.Landlock{ReadOnly: []string{"etc"}}},
			sandbox.ErrInvalid, `Landlock.ReadOnly[0] "etc" is not an absolute path`},
		{"missing Landlock path", sandbox.Sandbox{Landlock: &sandbox.Landlock{ReadOnly: []string{"/nonexistent/dir"}}},
			nil, "/nonexistent/dir"},
		{"memory below a megabyte", sandbox.Sandbox{Memory: 4096}, sandbox.ErrInvalid, "Memory 4096"},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := childproc.Spec{Path: self, Sandbox: c.sb}
			err := spec.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			if c.is != nil {
				assert.ErrorIs(t, err, c.is)
			}
			p, err := childproc.Start(spec)
			assert.Nil(t, p)
			assert.Error(t, err)
		})
	}
	t.Run("private PID namespace where the host cannot", func(t *testing.T) {
		defer childproc.NoPIDNamespacesForTest()()
		spec := childproc.Spec{Path: self, Sandbox: sandbox.Sandbox{Namespaces: sandbox.Namespaces{PID: true}}}
		err := spec.Validate()
		assert.ErrorIs(t, err, sandbox.ErrUnsupported)
		assert.Contains(t, err.Error(), "Namespaces.PID")
	})
	t.Run("user namespace through the trampoline", func(t *testing.T) {
		defer childproc.DisablePtraceForTest()()
		clean(t)
		p, err := childproc.Start(childproc.Spec{Path: self, Sandbox: sandbox.Sandbox{
			Credential: &sandbox.Credential{UID: 65534, GID: 65534}, Namespaces: sandbox.Namespaces{User: true}}})
		assert.Nil(t, p)
		assert.ErrorIs(t, err, sandbox.ErrUnsupported)
		assert.Contains(t, err.Error(), "needs ptrace")
	})
}

// TestSandboxCPUQuotaCapsASpinningWorker: under a quota of a quarter of a
// CPU, a worker spinning two threads for a second gets about a quarter of
// a second of CPU, as the kernel's own counters show (its cgroup throttled
// it; its CPU time from getrusage, not the wall clock); it runs under
// SCHED_BATCH with its nice kept, and a worker without a quota does not.
func TestSandboxCPUQuotaCapsASpinningWorker(t *testing.T) {
	for _, mode := range startModes {
		t.Run(mode, func(t *testing.T) {
			inMode(t, mode)
			clean(t)
			sb := sandbox.Sandbox{CPU: 0.25}
			requireSupported(t, sb)
			spec := selfSpec(t, "probe")
			spec.Sandbox = sb
			nice := 3
			spec.Nice = &nice
			p := start(t, spec)
			pr := &prober{t: t, p: p, lines: newLineReader(t, p)}
			assert.Equal(t, "3 3", pr.ask("policy"), "SCHED_BATCH (3), nice 3")
			f := strings.Fields(pr.ask("spin 1000 2"))
			require.Len(t, f, 2)
			cpuMS, throttled := atoi(f[0]), atoi(f[1])
			t.Logf("spinning 2 threads for 1 s under a quota of 0.25 CPU: %d ms of CPU, throttled %d times", cpuMS, throttled)
			assert.Positive(t, throttled, "the quota throttled the worker")
			// 25 ms per 100 ms period, and a period's worth of slack.
			assert.LessOrEqual(t, cpuMS, 250+50, "at most a quarter of a CPU over a second")
			exit := pr.p.Stop(context.Background(), waitLong)
			assert.True(t, exit.Success(), "exit %v, stderr %q", exit, exit.StderrTail)

			free := startProbe(t, sandbox.Sandbox{})
			assert.Equal(t, "0 0", free.ask("policy"), "SCHED_OTHER without a quota")
			exit = free.p.Stop(context.Background(), waitLong)
			assert.True(t, exit.Success(), "exit %v", exit)
		})
	}
}

// TestLimitedCgroupReusedWithinAJobType: the empty cgroup of an ended
// worker with limits is given to the next worker of the same job type and
// limits, its OOM kill count starting from zero again for it (the
// kernel's own counter keeps its predecessor's kill); a worker of another
// job type gets another cgroup; ReleaseSpares removes them all.
func TestLimitedCgroupReusedWithinAJobType(t *testing.T) {
	clean(t)
	memory := uint64(96 << 20)
	if raceEnabled {
		memory = 256 << 20
	}
	sb := sandbox.Sandbox{Memory: memory, CPU: 1, Pids: 64}
	startAs := func(name string) *prober { return startNamedProbe(t, name, sb) }
	a := startAs("echo")
	dir := workerCgroupDir(t, a.p.PID(), "memory")
	require.Contains(t, filepath.Base(dir), "procpool-", "the worker has a cgroup of its own")
	assert.Equal(t, "signal: killed", a.ask("hog 400"), "a child past the memory limit is OOM-killed")
	exit := a.p.Stop(context.Background(), waitLong)
	require.Positive(t, exit.OOMKills)

	b := startAs("echo")
	assert.Equal(t, dir, workerCgroupDir(t, b.p.PID(), "memory"), "the next worker of the job type reuses the cgroup")
	other := startAs("other")
	assert.NotEqual(t, dir, workerCgroupDir(t, other.p.PID(), "memory"), "another job type's worker does not")
	for _, pr := range []*prober{b, other} {
		exit := pr.p.Stop(context.Background(), waitLong)
		assert.True(t, exit.Success(), "exit %v", exit)
		assert.Zero(t, exit.OOMKills, "no OOM kill of its own")
	}
	oom, err := os.ReadFile(filepath.Join(dir, "memory.oom_control"))
	if err == nil { // v1: the kernel's counter still has a's kill
		assert.NotContains(t, string(oom), "oom_kill 0\n")
	}
	childproc.ReleaseSpares()
	_, err = os.Stat(dir)
	assert.ErrorIs(t, err, os.ErrNotExist, "ReleaseSpares removes the cgroups kept for reuse")
}

// TestReleaseSparesByNameKeepsOtherCgroups: ReleaseSpares with a name
// removes the cgroups kept for that name's workers only, even when no
// worker runs; another job type's kept cgroup is still reused by its next
// worker.
func TestReleaseSparesByNameKeepsOtherCgroups(t *testing.T) {
	clean(t)
	sb := sandbox.Sandbox{Memory: 256 << 20, CPU: 1, Pids: 64}
	startAs := func(name string) *prober { return startNamedProbe(t, name, sb) }
	a, b := startAs("alpha"), startAs("beta")
	dirA, dirB := workerCgroupDir(t, a.p.PID(), "memory"), workerCgroupDir(t, b.p.PID(), "memory")
	require.Contains(t, filepath.Base(dirA), "procpool-", "alpha's worker has a cgroup of its own")
	require.Contains(t, filepath.Base(dirB), "procpool-", "beta's worker has a cgroup of its own")
	for _, pr := range []*prober{a, b} {
		exit := pr.p.Stop(context.Background(), waitLong)
		require.True(t, exit.Success(), "exit %v", exit)
	}
	childproc.ReleaseSpares("alpha")
	_, err := os.Stat(dirA)
	assert.ErrorIs(t, err, os.ErrNotExist, "alpha's kept cgroup is removed")
	again := startAs("beta")
	assert.Equal(t, dirB, workerCgroupDir(t, again.p.PID(), "memory"), "beta's next worker reuses beta's")
	exit := again.p.Stop(context.Background(), waitLong)
	require.True(t, exit.Success(), "exit %v", exit)
	childproc.ReleaseSpares("beta")
	_, err = os.Stat(dirB)
	assert.ErrorIs(t, err, os.ErrNotExist, "then beta's")
}
