package childproc_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool/childproc"
	"github.com/procpool/procpool/internal/proctest"
	"github.com/procpool/procpool/sandbox"
)

// newTag returns a word unique to this test run, which the test's
// processes carry as an argument: the pids a worker sees are those of its
// own PID namespace, so the test finds its processes in /proc by tag.
func newTag(t *testing.T) string {
	var b [8]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return "tag-" + hex.EncodeToString(b[:])
}

// tagged returns the live processes that have tag as an argument.
func tagged(tag string) []int {
	var out []int
	for _, p := range proctest.All() {
		if p.State == 'Z' || p.State == 'X' {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/cmdline")
		if err != nil {
			continue
		}
		for _, arg := range bytes.Split(cmdline, []byte{0}) {
			if string(arg) == tag {
				out = append(out, p.PID)
				break
			}
		}
	}
	return out
}

// requireTagged waits until n live processes carry tag, and returns them.
func requireTagged(t *testing.T, tag string, n int) []int {
	t.Helper()
	var pids []int
	proctest.WaitFor(waitGone, func() bool { pids = tagged(tag); return len(pids) >= n })
	require.Len(t, pids, n, "processes tagged %s", tag)
	return pids
}

// others returns pids without skip.
func others(pids []int, skip int) []int {
	var out []int
	for _, pid := range pids {
		if pid != skip {
			out = append(out, pid)
		}
	}
	return out
}

// requireGone fails the test unless no live process carries tag within
// waitGone, listing the survivors from /proc.
func requireGone(t *testing.T, tag, what string) {
	t.Helper()
	var left []int
	if proctest.WaitFor(waitGone, func() bool { left = tagged(tag); return len(left) == 0 }) {
		return
	}
	lines := make([]string, len(left))
	for i, pid := range left {
		lines[i] = proctest.Describe(pid)
		_ = syscall.Kill(pid, syscall.SIGKILL) // leave nothing behind for the other tests
	}
	t.Fatalf("%s: %d processes survived:\n%s", what, len(left), strings.Join(lines, "\n"))
}

// tier is one way of containing a worker, as a test asks for it.
type tier struct {
	name string
	want childproc.Containment
	sb   sandbox.Sandbox
	// force makes the workers without namespaces use want.
	force bool
	// trampoline starts them through the re-exec trampoline.
	trampoline bool
}

// tiers are the containments this host offers that claim no escape at a
// worker's end: the default (a shared PID namespace and a cgroup each), a
// PID namespace of its own (asked for by the sandbox), and a cgroup alone.
var tiers = []tier{
	{name: "shared namespace", want: childproc.ContainSharedNamespace},
	{name: "shared namespace, trampoline", want: childproc.ContainSharedNamespace, trampoline: true},
	{name: "own PID namespace", want: childproc.ContainPIDNamespace, sb: sandbox.Sandbox{Namespaces: sandbox.Namespaces{PID: true}}},
	{name: "own PID namespace, trampoline", want: childproc.ContainPIDNamespace, sb: sandbox.Sandbox{Namespaces: sandbox.Namespaces{PID: true}}, trampoline: true},
	{name: "cgroup", want: childproc.ContainCgroup, force: true},
}

// use sets the test up for the tier, and skips it, saying why, where the
// host cannot offer it.
func (tr tier) use(t *testing.T, spec *childproc.Spec) {
	t.Helper()
	if tr.trampoline {
		t.Cleanup(childproc.DisablePtraceForTest())
	}
	if tr.force {
		t.Cleanup(childproc.ForceContainmentForTest(tr.want))
	}
	spec.Sandbox = tr.sb
	requireSupported(t, tr.sb)
	if got := childproc.HostContainmentForTest(); got < tr.want && !tr.force {
		t.Skipf("this host offers %v containment, not %v", got, tr.want)
	}
}

// TestNoProcessOutlivesItsWorker starts workers that leave processes
// behind in every way the issue lists and ends them in every way a worker
// ends, under every containment that claims to hold: none of their
// processes may survive.
func TestNoProcessOutlivesItsWorker(t *testing.T) {
	for _, tr := range tiers {
		t.Run(tr.name, func(t *testing.T) { testNoProcessOutlivesItsWorker(t, tr) })
	}
}

func testNoProcessOutlivesItsWorker(t *testing.T, tr tier) {
	for _, c := range []struct {
		name string
		how  string // escape kind
		then string // how the worker ends: exit, crash, wait (then: stop or kill)
		end  string // "", "stop", "kill"
	}{
		{"setsid grandchild, worker exits", "setsid", "exit", ""},
		{"setsid grandchild, worker crashes", "setsid", "crash", ""},
		{"setsid grandchild, worker stopped", "setsid", "wait", "stop"},
		{"setsid grandchild, worker killed", "setsid", "wait", "kill"},
		{"double fork, worker exits", "doublefork", "exit", ""},
		{"double fork, worker stopped", "doublefork", "wait", "stop"},
		{"fork burst, worker killed", "burst", "wait", "kill"},
		{"fork burst, worker exits", "burst", "exit", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			clean(t)
			tag := newTag(t)
			spec := selfSpec(t, "escape", c.how, c.then, tag)
			tr.use(t, &spec)
			p := start(t, spec)
			assert.Equal(t, tr.want, p.Containment())
			n, err := strconv.Atoi(newLineReader(t, p).next())
			require.NoError(t, err)
			if c.how == "burst" {
				require.Equal(t, burstSize, n)
			}
			if c.then == "wait" {
				// The worker carries the tag too.
				for _, pid := range requireTagged(t, tag, n+1) {
					if pid == p.PID() {
						continue
					}
					info, err := proctest.ReadProc(pid)
					require.NoError(t, err, "escapee %d", pid)
					require.NotEqual(t, p.PID(), info.PGID, "the escapee left the worker's process group")
				}
			} // else the worker says it started them and goes: they may be gone already
			switch c.end {
			case "stop":
				exit := p.Stop(context.Background(), waitLong)
				assert.True(t, exit.Requested)
			case "kill":
				require.NoError(t, p.Kill())
				waitDone(t, p)
			default:
				waitDone(t, p)
			}
			requireGone(t, tag, "after the worker's end")
		})
	}
}

// TestNoProcessOutlivesItsHost kills the host itself (a helper process)
// with SIGKILL: its worker and the worker's setsid grandchild must die
// too, in the shared namespace and in one of the worker's own. (A cgroup
// alone does not hold here: see ContainCgroup.)
func TestNoProcessOutlivesItsHost(t *testing.T) {
	for _, own := range []bool{false, true} {
		name := map[bool]string{false: "shared namespace", true: "own PID namespace"}[own]
		t.Run(name, func(t *testing.T) {
			if got := childproc.HostContainmentForTest(); got < childproc.ContainSharedNamespace {
				t.Skipf("this host offers %v containment: a worker does not die with its host", got)
			}
			clean(t)
			tag := newTag(t)
			host := start(t, selfSpec(t, "host-escape", tag, strconv.FormatBool(own)))
			require.Equal(t, "started", newLineReader(t, host).next(), "host stderr: %q", host.StderrTail())
			requireTagged(t, tag, 3) // the host, its worker and the escapee
			require.NoError(t, syscall.Kill(host.PID(), syscall.SIGKILL))
			exit := waitDone(t, host)
			require.Equal(t, syscall.SIGKILL, exit.Signal)
			requireGone(t, tag, "after the host's SIGKILL")
		})
	}
}

// TestSessionContainment: where there is neither a PID namespace nor a
// cgroup, what stays in the worker's session dies with it (a process that
// left its process group but not its session).
func TestSessionContainment(t *testing.T) {
	clean(t)
	defer childproc.ForceContainmentForTest(childproc.ContainSession)()
	tag := newTag(t)
	p := start(t, selfSpec(t, "grandchild", "escape", tag))
	assert.Equal(t, childproc.ContainSession, p.Containment())
	require.Equal(t, "started", newLineReader(t, p).next())
	waitDone(t, p)
	requireGone(t, tag, "the grandchild in the worker's session")
}

// TestStderrHeldByAGrandchildIsMoot starts a worker whose setsid
// grandchild holds the worker's stderr and writes to it without end. When
// the worker's end is reported (Done), the grandchild must already be
// gone: it can neither delay the report nor keep writing to the logs.
func TestStderrHeldByAGrandchildIsMoot(t *testing.T) {
	clean(t)
	tag := newTag(t)
	p := start(t, selfSpec(t, "escape", "scribble", "exit", tag))
	require.Equal(t, "1", newLineReader(t, p).next())
	waitDone(t, p)
	alive := tagged(tag)
	for _, pid := range alive {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	assert.Empty(t, alive, "the grandchild outlived the report of its worker's end")
}

// TestOnlyTheProtocolDescriptorsReachAWorker runs a host that holds a
// descriptor opened without O_CLOEXEC and copies of it on fds 5 and 10:
// its worker, started without extra files, must have fds 0 to 4 and
// nothing else (fd 5 is the shared memory region or nothing).
func TestOnlyTheProtocolDescriptorsReachAWorker(t *testing.T) {
	clean(t)
	host := start(t, selfSpec(t, "host-fds", "5", "10"))
	lines := newLineReader(t, host)
	open := map[int]string{}
	for {
		line := lines.next()
		if strings.HasPrefix(line, "held ") {
			t.Logf("host %s", line)
			continue
		}
		if line == "end" {
			break
		}
		// ls -l: "lrwx------ 1 root root 64 Dec  1 22:05 3 -> pipe:[1234]"
		if strings.HasPrefix(line, "total ") || strings.HasSuffix(line, "/fd") {
			continue // the directory ls reads
		}
		link, target, ok := strings.Cut(line, " -> ")
		require.True(t, ok, "line %q", line)
		f := strings.Fields(link)
		fd, err := strconv.Atoi(f[len(f)-1])
		require.NoError(t, err, "line %q", line)
		open[fd] = target
	}
	assert.True(t, waitDone(t, host).Success())
	for fd := range 5 {
		require.Contains(t, open, fd, "fds 0 to 4 are stdin, stdout, stderr and the protocol pipes")
		delete(open, fd)
	}
	assert.Empty(t, open, "descriptors the worker must not have")
}

// TestWorkerLeadsASessionOnlyUnderSessionContainment: a worker is in a
// process group of its own; it leads a session of its own only where the
// session is its containment (ContainSession). Elsewhere a session per
// worker would be a scheduler autogroup per worker, which cost a pool a
// third of its throughput.
func TestWorkerLeadsASessionOnlyUnderSessionContainment(t *testing.T) {
	for _, session := range []bool{false, true} {
		t.Run(fmt.Sprintf("session=%v", session), func(t *testing.T) {
			clean(t)
			if session {
				defer childproc.ForceContainmentForTest(childproc.ContainSession)()
			}
			p := start(t, childproc.Spec{Path: "/bin/sh", Args: []string{"-c", "read x <&3"}})
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID()))
			require.NoError(t, err)
			// pid (comm) state ppid pgrp session ...
			f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
			pgrp, sid := f[2], f[3]
			pid := strconv.Itoa(p.PID())
			assert.Equal(t, pid, pgrp, "a process group of its own")
			if session {
				assert.Equal(t, pid, sid, "ContainSession: a session of its own")
			} else {
				assert.NotEqual(t, pid, sid, "%v: no session of its own", p.Containment())
			}
			require.NoError(t, p.Input().Close())
			waitDone(t, p)
		})
	}
}
