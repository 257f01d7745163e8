// Package proctest holds test helpers shared by procpool's tests: they
// check that a test left no child process, zombie, goroutine or file
// descriptor behind. Linux only (they read /proc).
//
// Typical use:
//
//	func TestMain(m *testing.M) { proctest.VerifyTestMain(m) }
//
//	func TestSomething(t *testing.T) {
//		defer proctest.VerifyNone(t)
//		defer proctest.CheckFDs(t)()
//		...
//	}
package proctest

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// forkLoop is the goroutine of package childproc that forks every child.
// It locks its OS thread for the life of the program (the parent-death
// signal of a child fires when the thread that forked it exits), so it is
// never a leak.
const forkLoop = "github.com/procpool/procpool/childproc.forkLoop"

// LeakOptions returns the goleak options that VerifyNone and
// VerifyTestMain add to theirs: they ignore the goroutines that live on
// by design (childproc's fork thread). Pass them to goleak when calling it
// directly.
func LeakOptions() []goleak.Option {
	return []goleak.Option{goleak.IgnoreAnyFunction(forkLoop)}
}

// DefaultWait is how long VerifyNone and VerifyTestMain wait for children
// to go away.
const DefaultWait = 5 * time.Second

// fdWait is how long the func returned by CheckFDs waits for descriptors
// closed asynchronously.
const fdWait = 3 * time.Second

// Proc is what /proc/<pid>/stat tells of one process.
type Proc struct {
	PID   int
	Comm  string
	State byte // R, S, D, Z, T, ...
	PPID  int
	PGID  int
}

// ReadProc parses /proc/<pid>/stat.
func ReadProc(pid int) (Proc, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Proc{}, err
	}
	return parseStat(b)
}

func parseStat(b []byte) (Proc, error) {
	// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return Proc{}, fmt.Errorf("proctest: malformed stat %q", b)
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return Proc{}, fmt.Errorf("proctest: malformed stat %q", b)
	}
	f := strings.Fields(string(b[closing+1:]))
	if len(f) < 3 || len(f[0]) != 1 {
		return Proc{}, fmt.Errorf("proctest: malformed stat %q", b)
	}
	ppid, err1 := strconv.Atoi(f[1])
	pgid, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil {
		return Proc{}, fmt.Errorf("proctest: malformed stat %q", b)
	}
	return Proc{PID: pid, Comm: string(b[open+1 : closing]), State: f[0][0], PPID: ppid, PGID: pgid}, nil
}

// All returns every process visible in /proc (thread-group leaders only).
func All() []Proc {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []Proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, err := ReadProc(pid); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// Children returns the pids of the live and zombie children of the
// current process, in ascending order, but the placeholder inits of
// workers' PID namespaces (package childproc's "procpool-init", one per
// worker, which live and die with it): it counts the workers.
func Children() []int {
	var pids []int
	for _, pid := range allChildren() {
		if !isNamespaceInit(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// allChildren returns the pids of the live and zombie children of the
// current process, in ascending order.
func allChildren() []int {
	me := os.Getpid()
	var pids []int
	for _, p := range All() {
		if p.PPID == me {
			pids = append(pids, p.PID)
		}
	}
	sort.Ints(pids)
	return pids
}

// NamespaceInits returns the pids of the children of the current process
// that are childproc's PID namespace inits, live or zombie: those of
// running workers, and the spares made ahead for workers to come.
func NamespaceInits() []int {
	var pids []int
	for _, pid := range allChildren() {
		if isNamespaceInit(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// namespaceInit is the command line of childproc's PID namespace inits.
const namespaceInit = "procpool-init"

func isNamespaceInit(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && string(bytes.TrimRight(b, "\x00")) == namespaceInit
}

// Zombies returns the pids of the children of the current process that
// have exited but were not reaped (state Z).
func Zombies() []int {
	me := os.Getpid()
	var pids []int
	for _, p := range All() {
		if p.PPID == me && p.State == 'Z' {
			pids = append(pids, p.PID)
		}
	}
	sort.Ints(pids)
	return pids
}

// Alive reports whether pid exists and is not a zombie.
func Alive(pid int) bool {
	p, err := ReadProc(pid)
	return err == nil && p.State != 'Z' && p.State != 'X'
}

// ProcessGroupAlive reports whether any process of the process group pgid
// exists and is not a zombie.
func ProcessGroupAlive(pgid int) bool {
	for _, p := range All() {
		if p.PGID == pgid && p.State != 'Z' && p.State != 'X' {
			return true
		}
	}
	return false
}

// Describe renders a pid for a failure message: state, command line.
func Describe(pid int) string {
	p, err := ReadProc(pid)
	if err != nil {
		return fmt.Sprintf("pid %d (gone)", pid)
	}
	cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	args := strings.Join(strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00"), " ")
	if args == "" {
		args = "[" + p.Comm + "]"
	}
	return fmt.Sprintf("pid %d state %c pgid %d: %s", pid, p.State, p.PGID, args)
}

// WaitFor polls cond every few milliseconds until it is true or d has
// passed; it returns the last result.
func WaitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// VerifyNoChildren waits up to wait for the current process to have no
// children, live or zombie (namespace inits included), and fails the test
// listing them otherwise.
func VerifyNoChildren(t testing.TB, wait time.Duration) {
	t.Helper()
	if err := noChildren(wait); err != nil {
		t.Error(err)
	}
}

func noChildren(wait time.Duration) error {
	var left []int
	if WaitFor(wait, func() bool { left = allChildren(); return len(left) == 0 }) {
		return nil
	}
	lines := make([]string, len(left))
	for i, pid := range left {
		lines[i] = "  " + Describe(pid)
	}
	return fmt.Errorf("proctest: %d child process(es) left after %v:\n%s", len(left), wait, strings.Join(lines, "\n"))
}

// VerifyNone checks that no goroutine (goleak.VerifyNone, with
// LeakOptions and opts) and no child process is left. Use it as `defer proctest.VerifyNone(t)` at the
// start of a test, so it runs at its end.
//
// Goroutines get DefaultWait to end, not goleak's half second: a process's
// reaper may wait that long for its output pipe to drain (childproc), and
// a router spawned in a user's actor tree has no Shutdown to wait for it.
func VerifyNone(t testing.TB, opts ...goleak.Option) {
	t.Helper()
	VerifyNoChildren(t, DefaultWait)
	all := append(LeakOptions(), opts...)
	for deadline := time.Now().Add(DefaultWait); goleak.Find(all...) != nil && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	goleak.VerifyNone(t, all...)
}

// VerifyTestMain runs the tests and then, if they passed, fails the run
// when goroutines (goleak, with LeakOptions and opts) or child processes
// are left. It
// calls os.Exit.
func VerifyTestMain(m *testing.M, opts ...goleak.Option) {
	code := m.Run()
	if code == 0 {
		if err := noChildren(DefaultWait); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
		if err := goleak.Find(append(LeakOptions(), opts...)...); err != nil {
			fmt.Fprintf(os.Stderr, "proctest: goroutines left after the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// FDCount returns the number of open file descriptors of the current
// process (the entries of /proc/self/fd, less the one used to read it).
func FDCount() int {
	return len(openFDs())
}

// openFDs maps each open descriptor to what it refers to.
func openFDs() map[int]string {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return nil
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil
	}
	own := int(d.Fd())
	fds := make(map[int]string, len(names))
	for _, n := range names {
		fd, err := strconv.Atoi(n)
		if err != nil || fd == own {
			continue
		}
		target, _ := os.Readlink("/proc/self/fd/" + n)
		fds[fd] = target
	}
	return fds
}

// CheckFDs records the open descriptors and returns a func that fails the
// test if more are open when it is called (after waiting up to a few
// seconds for asynchronous closes), listing the new ones. Use it as
// `defer proctest.CheckFDs(t)()`. It first makes the runtime create its
// poller descriptors, which stay open for the life of the process.
func CheckFDs(t testing.TB) func() {
	t.Helper()
	warmUp()
	before := openFDs()
	return func() {
		t.Helper()
		var now map[int]string
		if WaitFor(fdWait, func() bool { now = openFDs(); return len(now) <= len(before) }) {
			return
		}
		var added []string
		for fd, target := range now {
			if old, ok := before[fd]; !ok || old != target {
				added = append(added, fmt.Sprintf("  fd %d -> %s", fd, target))
			}
		}
		sort.Strings(added)
		t.Errorf("proctest: %d file descriptors open, %d before; new:\n%s",
			len(now), len(before), strings.Join(added, "\n"))
	}
}

// warmUp creates and closes a pipe so that the runtime's network poller
// (an epoll descriptor and an eventfd, kept for good) exists before the
// descriptors are counted.
func warmUp() {
	r, w, err := os.Pipe()
	if err == nil {
		r.Close()
		w.Close()
	}
}
