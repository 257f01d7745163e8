package childproc_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool/childproc"
)

// procThread is what /proc says of one thread of a child.
type procThread struct {
	tid  int
	nice int
	cpus string // Cpus_allowed_list
}

func procThreads(t *testing.T, pid int) []procThread {
	t.Helper()
	dirs, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*")
	require.NoError(t, err)
	var out []procThread
	for _, dir := range dirs {
		tid, err := strconv.Atoi(filepath.Base(dir))
		require.NoError(t, err)
		stat, err := os.ReadFile(dir + "/stat")
		require.NoError(t, err)
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		nice, err := strconv.Atoi(fields[16]) // field 19 of stat(5)
		require.NoError(t, err)
		status, err := os.ReadFile(dir + "/status")
		require.NoError(t, err)
		var cpus string
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
				cpus = strings.TrimSpace(v)
			}
		}
		out = append(out, procThread{tid: tid, nice: nice, cpus: cpus})
	}
	return out
}

// procLimits reads /proc/<pid>/limits (or "self") into name -> [soft, hard].
func procLimits(t *testing.T, text string) map[string][2]string {
	t.Helper()
	out := map[string][2]string{}
	for _, line := range strings.Split(text, "\n")[1:] {
		if len(line) < 26 {
			continue
		}
		f := strings.Fields(line[26:])
		if len(f) >= 2 {
			out[strings.TrimSpace(line[:26])] = [2]string{f[0], f[1]}
		}
	}
	return out
}

func TestControlsOnEveryThread(t *testing.T) {
	for _, mode := range []string{"ptrace", "fallback"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "fallback" {
				defer childproc.DisablePtraceForTest()()
			}
			clean(t)
			nice, noCore := 10, uint64(0)
			spec := selfSpec(t, "controls")
			spec.Affinity = []int{0}
			spec.Nice = &nice
			spec.Limits = childproc.Limits{OpenFiles: 256, CoreSize: &noCore, CPUSeconds: 100}
			if !raceEnabled {
				spec.Limits.AddressSpace = 2 << 30
			}
			p := start(t, spec)

			require.NoError(t, p.Output().SetReadDeadline(deadline()))
			var rep threadReport
			require.NoError(t, json.NewDecoder(p.Output()).Decode(&rep), "stderr: %q", p.StderrTail())

			// What the child sees of itself.
			require.GreaterOrEqual(t, len(rep.Threads), 5, "the child has started threads")
			for _, th := range rep.Threads {
				assert.Equal(t, []int{0}, th.CPUs, "affinity of thread %d", th.TID)
				assert.Equal(t, 10, th.Nice, "nice of thread %d", th.TID)
			}
			assert.Equal(t, [2]uint64{256, 256}, rep.Limits["NOFILE"])
			assert.Equal(t, [2]uint64{0, 0}, rep.Limits["CORE"])
			assert.Equal(t, [2]uint64{100, 100}, rep.Limits["CPU"])
			if !raceEnabled {
				assert.Equal(t, [2]uint64{2 << 30, 2 << 30}, rep.Limits["AS"])
			}

			// What /proc says of it, thread by thread.
			threads := procThreads(t, p.PID())
			require.GreaterOrEqual(t, len(threads), 5)
			for _, th := range threads {
				assert.Equal(t, "0", th.cpus, "Cpus_allowed_list of thread %d", th.tid)
				assert.Equal(t, 10, th.nice, "nice of thread %d", th.tid)
			}
			limits, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID()) + "/limits")
			require.NoError(t, err)
			lim := procLimits(t, string(limits))
			assert.Equal(t, [2]string{"256", "256"}, lim["Max open files"])
			assert.Equal(t, [2]string{"0", "0"}, lim["Max core file size"])
			assert.Equal(t, [2]string{"100", "100"}, lim["Max cpu time"])
			if !raceEnabled {
				assert.Equal(t, [2]string{"2147483648", "2147483648"}, lim["Max address space"])
			}

			exit := p.Stop(context.Background(), waitLong)
			assert.True(t, exit.Success(), "exit %v; stderr %q", exit, exit.StderrTail)
		})
	}
}

func TestAddressSpaceLimit(t *testing.T) {
	clean(t)
	p := start(t, childproc.Spec{
		Path:   "/bin/sh",
		Args:   []string{"-c", "cat /proc/self/limits >&4"},
		Limits: childproc.Limits{AddressSpace: 1 << 30},
	})
	require.NoError(t, p.Output().SetReadDeadline(deadline()))
	text, err := readAll(p.Output())
	require.NoError(t, err)
	exit := waitDone(t, p)
	require.True(t, exit.Success(), "exit %v; stderr %q", exit, exit.StderrTail)
	assert.Equal(t, [2]string{"1073741824", "1073741824"}, procLimits(t, text)["Max address space"],
		"inherited by the grandchild cat")
}

func TestAddressSpaceTooSmallFailsTheChildNotTheHost(t *testing.T) {
	clean(t)
	if raceEnabled {
		t.Skip("a -race test binary cannot run under RLIMIT_AS")
	}
	spec := selfSpec(t, "exit", "0")
	spec.Limits.AddressSpace = 8 << 20
	p := start(t, spec)
	exit := waitDone(t, p)
	assert.False(t, exit.Success(), "a Go program does not start in 8 MiB: %v", exit)
}

// TestControlsWhenPtraceIsRefused runs a host under a seccomp filter that
// refuses ptrace, as some container profiles do: Start falls back to
// setting the controls on the threads of the running worker, and says so.
func TestControlsWhenPtraceIsRefused(t *testing.T) {
	clean(t)
	log, logs := newCapture()
	tag := newTag(t)
	spec := selfSpec(t, "host-noptrace", tag)
	spec.Logger = log
	host := start(t, spec)
	lines := newLineReader(t, host)
	var rep threadReport
	require.NoError(t, json.Unmarshal([]byte(lines.next()), &rep), "host stderr: %q", host.StderrTail())
	worker := others(requireTagged(t, tag, 2), host.PID())[0]

	require.GreaterOrEqual(t, len(rep.Threads), 5)
	for _, th := range rep.Threads {
		assert.Equal(t, []int{0}, th.CPUs, "affinity of thread %d", th.TID)
		assert.Equal(t, 7, th.Nice, "nice of thread %d", th.TID)
	}
	for _, th := range procThreads(t, worker) {
		assert.Equal(t, "0", th.cpus, "Cpus_allowed_list of thread %d", th.tid)
		assert.Equal(t, 7, th.nice, "nice of thread %d", th.tid)
	}

	exit := host.Stop(context.Background(), waitLong)
	require.True(t, exit.Success(), "host: %v; stderr %q", exit, exit.StderrTail)
	waitLogged(t, host)
	warned := false
	for _, m := range streamRecords(t, logs.records(t), "stderr", host.PID(), "host-noptrace") {
		if strings.Contains(m, "[WARN]") && strings.Contains(m, "ptrace is refused") &&
			strings.Contains(m, "operation not permitted") {
			warned = true
		}
	}
	assert.True(t, warned, "the host warned that ptrace was refused")
}

func TestCPULimitKills(t *testing.T) {
	clean(t)
	p := start(t, childproc.Spec{
		Path:   "/bin/sh",
		Args:   []string{"-c", "while :; do :; done"},
		Limits: childproc.Limits{CPUSeconds: 1},
	})
	exit := waitDone(t, p)
	assert.Equal(t, syscall.SIGKILL, exit.Signal, "exit %v", exit)
	assert.Positive(t, exit.UserTime+exit.SystemTime, "it did burn CPU")
}

// TestOpenFilesLimitLeftAsTheHostFoundIt: without Limits.OpenFiles, a
// worker gets the soft RLIMIT_NOFILE that os/exec gives a child (the
// host's original one, which the Go runtime raised for itself), whether
// it is started traced or through the trampoline, whose Go runtime raises
// it too. The test lowers its own soft limit so that a raised one shows.
func TestOpenFilesLimitLeftAsTheHostFoundIt(t *testing.T) {
	var old syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old))
	low := old
	low.Cur = min(old.Max/2, 1024)
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low))
	defer func() { require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)) }()
	want, err := exec.Command("/bin/sh", "-c", "ulimit -Sn; ulimit -Hn").Output()
	require.NoError(t, err)
	for _, mode := range []string{"ptrace", "fallback"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "fallback" {
				defer childproc.DisablePtraceForTest()()
			}
			clean(t)
			p := start(t, childproc.Spec{Path: "/bin/sh", Args: []string{"-c", "{ ulimit -Sn; ulimit -Hn; } >&4"}})
			got, err := readOutput(p)
			require.NoError(t, err)
			assert.Equal(t, string(want), string(got), "soft and hard RLIMIT_NOFILE")
			waitDone(t, p)
		})
	}
}
