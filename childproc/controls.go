package childproc

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/procpool/procpool/sandbox"
)

// The fork thread
//
// Every worker is forked by one goroutine of this package (and every init
// of a PID namespace by another: initMaker) that, from the first Start on,
// stays locked to its OS thread and runs nothing else, so that thread
// never exits. Three things depend on it:
//
//   - The parent-death signal of a child (Pdeathsig) fires when the thread
//     that forked it exits, and Go destroys a thread when a goroutine
//     locked to it ends without unlocking. A thread merely borrowed for
//     the fork goes back to the pool, where any goroutine, of the caller
//     or of a library, may later lock it and end, killing every child it
//     forked. (A caller's goroutine is never used for the same reason.)
//   - A child started with PTRACE_TRACEME is traced by that thread: only
//     it may inject the child's sandbox and let it go.
//   - To start a worker inside the PID namespace of its init, the thread
//     joins that namespace for the fork (setns affects the children of
//     the calling thread only) and leaves it right after.

// forker is the fork thread's request channel; it starts with the first
// fork.
var forker struct {
	lockedThread
	// in is the init whose PID namespace the fork thread's next children
	// join, or nil for the host's (see forkIn); only the fork thread uses
	// it.
	in *nsInit
}

// initMaker is the thread that makes the inits of PID namespaces (see
// nsInit), a second fork thread for the same reasons (an init has the
// parent-death signal, and is traced by the thread that forks it), which
// never joins another PID namespace. An init of its own costs a worker a
// fork, an execve and a few injected calls, half a millisecond or more:
// made on a thread of its own, the spare inits made ahead (initPool) are
// made while the fork thread starts workers, on the other core, rather
// than delaying the next start.
var initMaker lockedThread

// onForkThread runs fn on the fork thread and waits for it.
func onForkThread(fn func()) { forker.run(fn) }

// onInitThread runs fn on the thread that makes inits and waits for it.
func onInitThread(fn func()) { initMaker.run(fn) }

// lockedThread is a goroutine that, from its first request on, stays
// locked to its OS thread and runs the requests it is sent, one at a
// time, so that the thread never exits.
type lockedThread struct {
	once sync.Once
	reqs chan func()
}

// run runs fn on the thread and waits for it.
func (t *lockedThread) run(fn func()) {
	t.once.Do(func() {
		t.reqs = make(chan func())
		go forkLoop(t.reqs)
	})
	done := make(chan struct{})
	t.reqs <- func() {
		defer close(done)
		fn()
	}
	<-done
}

// forkLoop is the loop of a locked thread (the fork thread, the init
// thread). It never unlocks its thread and never returns, so the thread
// never exits.
func forkLoop(reqs <-chan func()) {
	runtime.LockOSThread()
	for fn := range reqs {
		fn()
	}
}

// forkIn runs start, which forks, with the fork thread's children going
// into the PID namespace of init, or the host's with init nil. It must
// run on the fork thread. The thread stays in that namespace for its
// next children (setns(CLONE_NEWPID) changes only where they go), so that
// workers forked one after the other into one namespace cost no setns.
// A fork thread that cannot come back to the host's namespace is a bug:
// it panics.
func forkIn(init *nsInit, start func() error) error {
	if forker.in != init {
		if init != nil {
			if err := unix.Setns(int(init.pidfd.Fd()), unix.CLONE_NEWPID); err != nil {
				return fmt.Errorf("childproc: joining a PID namespace: %w", err)
			}
		} else {
			// The thread group leader's own namespace is the host's.
			fd, err := unix.Open("/proc/self/ns/pid", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err == nil {
				err = unix.Setns(fd, unix.CLONE_NEWPID)
				unix.Close(fd)
			}
			if err != nil {
				panic(fmt.Sprintf("childproc: the fork thread cannot return to the host's PID namespace: %v", err))
			}
		}
		forker.in = init
	}
	return start()
}

// Values of siginfo.si_code for SIGCHLD.
const (
	cldExited  = 1
	cldKilled  = 2
	cldDumped  = 3
	cldTrapped = 4
)

// siginfoChild is the SIGCHLD layout of unix.Siginfo on Linux.
type siginfoChild struct {
	Signo  int32
	Errno  int32
	Code   int32
	_      int32
	Pid    int32
	UID    uint32
	Status int32
	_      [100]byte
}

// waitExecStop waits for the traced child's stop after execve. A signal
// that stops it first is delivered and waited past. An exit is only
// looked at (WNOWAIT), so the child is still reaped by whoever waits for
// it.
func waitExecStop(pid int) error {
	for range 64 {
		var info siginfoChild
		si := (*unix.Siginfo)(unsafe.Pointer(&info))
		err := unix.Waitid(unix.P_PID, pid, si, unix.WEXITED|unix.WSTOPPED|unix.WNOWAIT, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("childproc: waiting for pid %d to exec: %w", pid, err)
		}
		switch info.Code {
		case cldTrapped:
			// Consume the stop report; WNOHANG in case it died meanwhile.
			var again siginfoChild
			_ = unix.Waitid(unix.P_PID, pid, (*unix.Siginfo)(unsafe.Pointer(&again)),
				unix.WSTOPPED|unix.WNOHANG, nil)
			sig := syscall.Signal(info.Status)
			if sig == unix.SIGTRAP {
				return nil
			}
			if err := unix.PtraceCont(pid, int(sig)); err != nil {
				return fmt.Errorf("childproc: resuming pid %d after %v: %w", pid, sig, err)
			}
		case cldExited:
			return fmt.Errorf("childproc: pid %d exited with code %d before it was set up", pid, info.Status)
		case cldKilled, cldDumped:
			return fmt.Errorf("childproc: pid %d was killed by %v before it was set up",
				pid, signalName(syscall.Signal(info.Status)))
		default:
			return fmt.Errorf("childproc: pid %d: unexpected wait code %d", pid, info.Code)
		}
	}
	return fmt.Errorf("childproc: pid %d: too many signals before exec", pid)
}

// applyRlimits sets the spec's rlimits on pid, soft and hard.
func applyRlimits(pid int, l Limits) error {
	for _, r := range l.list() {
		lim := unix.Rlimit{Cur: r.value, Max: r.value}
		if err := unix.Prlimit(pid, r.resource, &lim, nil); err != nil {
			return fmt.Errorf("childproc: setting %s=%d on pid %d: %w", r.name, r.value, pid, err)
		}
	}
	return nil
}

// rlimit is one limit of Limits.
type rlimit struct {
	name     string
	resource int
	value    uint64
}

// list returns the limits that are set.
func (l Limits) list() []rlimit {
	var out []rlimit
	for _, r := range []struct {
		rlimit
		set bool
	}{
		{rlimit{"RLIMIT_AS", unix.RLIMIT_AS, l.AddressSpace}, l.AddressSpace != 0},
		{rlimit{"RLIMIT_NOFILE", unix.RLIMIT_NOFILE, l.OpenFiles}, l.OpenFiles != 0},
		{rlimit{"RLIMIT_CPU", unix.RLIMIT_CPU, l.CPUSeconds}, l.CPUSeconds != 0},
		{rlimit{"RLIMIT_CORE", unix.RLIMIT_CORE, derefOr(l.CoreSize, 0)}, l.CoreSize != nil},
	} {
		if r.set {
			out = append(out, r.rlimit)
		}
	}
	return out
}

// applyThreadControls sets the spec's affinity, scheduling policy and nice
// on thread tid (the only thread of a process that has not run yet: its
// threads and children inherit them).
//
// A worker with a CPU quota runs under SCHED_BATCH (see batchUnderQuota).
func applyThreadControls(tid int, spec *Spec) error {
	if batchUnderQuota(&spec.Sandbox) {
		// sched_setscheduler(2) keeps the thread's nice (sched_param is
		// one int, the static priority: 0 for SCHED_BATCH).
		var param int32
		if _, _, errno := unix.Syscall(unix.SYS_SCHED_SETSCHEDULER, uintptr(tid), unix.SCHED_BATCH, uintptr(unsafe.Pointer(&param))); errno != 0 {
			return fmt.Errorf("childproc: setting SCHED_BATCH on pid %d: %w", tid, errno)
		}
	}
	if len(spec.Affinity) > 0 {
		var set unix.CPUSet
		for _, cpu := range spec.Affinity {
			set.Set(cpu)
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return fmt.Errorf("childproc: setting the CPU affinity %v of pid %d: %w", spec.Affinity, tid, err)
		}
	}
	if spec.Nice != nil {
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, *spec.Nice); err != nil {
			return fmt.Errorf("childproc: setting nice %d on pid %d: %w", *spec.Nice, tid, err)
		}
	}
	return nil
}

func derefOr(p *uint64, def uint64) uint64 {
	if p == nil {
		return def
	}
	return *p
}

// batchUnderQuota reports whether a worker with sandbox sb runs under
// SCHED_BATCH: it does when it has a CPU quota, which puts it in a
// scheduling group (a cpu cgroup) of its own.
//
// The rule, and why: the scheduler then shares the cores between groups
// (the host's session, each worker) rather than between threads, and a
// waking worker preempts the host's running thread (and the host's, the
// worker's) across groups where, within one group, it would mostly wait
// its turn. On 1 KiB jobs with a pool of 2 on 2 cores, that doubled the
// involuntary context switches per job, of the workers and of the host,
// and cost 10-25% more CPU per job (docs/isolation.md, Costs): the
// quota's timer and the groups' weights were not the cause (no throttling
// at a quota of every core; any cpu.shares from 256 to 2048 no better).
// SCHED_BATCH is the kernel's policy for non-interactive, CPU-bound work:
// the same fair scheduler, nice and quota, and the same share of the
// CPU, but its wake-ups do not preempt a running thread: they wait for
// the next tick or an idle core, as a thread of the host's own group
// would mostly have. A worker may set its policy back (SCHED_OTHER needs
// no privilege); the quota does not depend on it.
func batchUnderQuota(sb *sandbox.Sandbox) bool { return sb.CPU > 0 }
