package childproc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// How the resource controls (affinity, nice, rlimits) reach every thread
// of the child
//
// Affinity and nice are attributes of a thread on Linux; a new thread
// copies them from the thread that creates it. Setting them on the pid of a
// running child changes only its main thread: the threads a Go runtime (or
// any threaded program) has already started keep the old values. So the
// controls are applied while the child still has a single thread and has
// run none of its own code:
//
//  1. On a goroutine locked to its OS thread, the child is started with
//     SysProcAttr.Ptrace: it calls PTRACE_TRACEME and stops with SIGTRAP
//     right after its execve, before the dynamic loader or the program run.
//  2. The locked thread (the tracer) waits for that stop, applies
//     sched_setaffinity, setpriority and prlimit to the pid, and detaches
//     (PTRACE_DETACH, suppressing the SIGTRAP). Every thread the child ever
//     starts inherits the values.
//  3. All of this runs on one goroutine that locks its OS thread for the
//     life of the program and does every fork of the package. The child's
//     parent-death signal (Pdeathsig) fires when the thread that forked it
//     exits, and Go destroys a thread when a goroutine locked to it ends
//     without unlocking. A thread merely borrowed for the fork (locked,
//     then unlocked) goes back to the pool, where any goroutine, of the
//     caller or of a library, may later lock it and end, killing every
//     child it forked. The fork thread runs nothing else, so it never
//     exits. (A caller's goroutine is never used for the same reason.)
//
// Where ptrace is refused (EPERM from a seccomp profile, say) the child is
// started normally and the controls are applied to every thread listed in
// /proc/<pid>/task, again and again until a pass finds no new thread; the
// child then runs briefly without them, and a warning is logged.

// ptraceRefused remembers that ptrace did not work in this process.
var ptraceRefused atomic.Bool

// disablePtrace is set by tests to exercise the fallback.
var disablePtrace atomic.Bool

// fallbackWarned limits the fallback warning to Warn once per process.
var fallbackWarned sync.Once

// forker is the goroutine, locked to its thread for good, that forks
// every child; it starts with the first fork.
var forker struct {
	once sync.Once
	reqs chan func()
}

// onForkThread runs fn on the fork thread and waits for it.
func onForkThread(fn func()) {
	forker.once.Do(func() {
		forker.reqs = make(chan func())
		go forkLoop(forker.reqs)
	})
	done := make(chan struct{})
	forker.reqs <- func() {
		defer close(done)
		fn()
	}
	<-done
}

// forkLoop is the fork thread. It never unlocks its thread and never
// returns, so the thread never exits.
func forkLoop(reqs <-chan func()) {
	runtime.LockOSThread()
	for fn := range reqs {
		fn()
	}
}

// startWithControls starts the command made by newCmd and applies the
// spec's resource controls to it. On error nothing is left running and the
// child, if any was created, has been reaped.
func startWithControls(newCmd func() *exec.Cmd, spec *Spec, log hclog.Logger) (*exec.Cmd, error) {
	if !spec.controlsSet() {
		cmd := newCmd()
		var err error
		onForkThread(func() { err = cmd.Start() })
		return cmd, err
	}
	if !ptraceRefused.Load() && !disablePtrace.Load() {
		cmd := newCmd()
		cmd.SysProcAttr.Ptrace = true
		var err error
		var refused bool
		onForkThread(func() {
			if err = cmd.Start(); err != nil {
				refused = errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) ||
					errors.Is(err, syscall.ENOSYS)
				return
			}
			err = controlTraced(cmd, spec)
		})
		if err == nil || !refused {
			return cmd, err
		}
		// Perhaps ptrace was refused; a plain start tells.
		cmd2, err2 := startFallback(newCmd, spec)
		if err2 != nil {
			return cmd2, err2
		}
		ptraceRefused.Store(true)
		warnFallback(log, err)
		return cmd2, nil
	}
	cmd, err := startFallback(newCmd, spec)
	if err == nil && !disablePtrace.Load() {
		warnFallback(log, errors.New("ptrace refused earlier"))
	}
	return cmd, err
}

func warnFallback(log hclog.Logger, cause error) {
	level := hclog.Debug
	fallbackWarned.Do(func() { level = hclog.Warn })
	log.Log(level, "ptrace unavailable: resource controls applied to the child's threads after it started",
		"cause", cause)
}

// controlTraced runs on the tracer thread: it waits for the exec stop,
// applies the controls and detaches. On error it kills and reaps the child.
func controlTraced(cmd *exec.Cmd, spec *Spec) error {
	pid := cmd.Process.Pid
	err := waitExecStop(pid)
	if err == nil {
		err = applyControls(pid, []int{pid}, spec)
		if err == nil {
			if err = unix.PtraceDetach(pid); err != nil {
				err = fmt.Errorf("childproc: detaching from pid %d: %w", pid, err)
			}
		}
	}
	if err != nil {
		_ = unix.Kill(pid, unix.SIGKILL)
		_ = unix.PtraceDetach(pid)
		_ = cmd.Wait()
	}
	return err
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
// looked at (WNOWAIT), so the child is still reaped by cmd.Wait.
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
			return fmt.Errorf("childproc: pid %d exited with code %d before its resource controls were applied", pid, info.Status)
		case cldKilled, cldDumped:
			return fmt.Errorf("childproc: pid %d was killed by %v before its resource controls were applied",
				pid, signalName(syscall.Signal(info.Status)))
		default:
			return fmt.Errorf("childproc: pid %d: unexpected wait code %d", pid, info.Code)
		}
	}
	return fmt.Errorf("childproc: pid %d: too many signals before exec", pid)
}

// startFallback starts the command without ptrace and applies the controls
// to all of the child's threads. On error nothing is left running.
func startFallback(newCmd func() *exec.Cmd, spec *Spec) (*exec.Cmd, error) {
	cmd := newCmd()
	var err error
	onForkThread(func() { err = cmd.Start() })
	if err != nil {
		return cmd, err
	}
	pid := cmd.Process.Pid
	if err = applyControlsAllThreads(pid, spec); err != nil {
		_ = unix.Kill(pid, unix.SIGKILL)
		_ = cmd.Wait()
	}
	return cmd, err
}

// applyControlsAllThreads applies the controls to the threads in
// /proc/<pid>/task until a pass finds none it has not done.
func applyControlsAllThreads(pid int, spec *Spec) error {
	if err := applyControls(pid, nil, spec); err != nil { // rlimits first
		return err
	}
	if len(spec.Affinity) == 0 && spec.Nice == nil {
		return nil
	}
	done := make(map[int]bool)
	for range 1000 {
		tids, err := threads(pid)
		if err != nil {
			return fmt.Errorf("childproc: listing the threads of pid %d: %w", pid, err)
		}
		var fresh []int
		for _, tid := range tids {
			if !done[tid] {
				fresh = append(fresh, tid)
				done[tid] = true
			}
		}
		if len(fresh) == 0 {
			return nil
		}
		if err := applyThreadControls(fresh, spec, true); err != nil {
			return err
		}
	}
	return fmt.Errorf("childproc: pid %d keeps starting threads; resource controls incomplete", pid)
}

// threads lists the thread ids of pid.
func threads(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return nil, err
	}
	tids := make([]int, 0, len(entries))
	for _, e := range entries {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

// applyControls applies the rlimits to pid and affinity and nice to each
// of tids.
func applyControls(pid int, tids []int, spec *Spec) error {
	l := spec.Limits
	for _, r := range []struct {
		name     string
		resource int
		value    uint64
		set      bool
	}{
		{"RLIMIT_AS", unix.RLIMIT_AS, l.AddressSpace, l.AddressSpace != 0},
		{"RLIMIT_NOFILE", unix.RLIMIT_NOFILE, l.OpenFiles, l.OpenFiles != 0},
		{"RLIMIT_CPU", unix.RLIMIT_CPU, l.CPUSeconds, l.CPUSeconds != 0},
		{"RLIMIT_CORE", unix.RLIMIT_CORE, derefOr(l.CoreSize, 0), l.CoreSize != nil},
	} {
		if !r.set {
			continue
		}
		lim := unix.Rlimit{Cur: r.value, Max: r.value}
		if err := unix.Prlimit(pid, r.resource, &lim, nil); err != nil {
			return fmt.Errorf("childproc: setting %s=%d on pid %d: %w", r.name, r.value, pid, err)
		}
	}
	return applyThreadControls(tids, spec, false)
}

// applyThreadControls sets affinity and nice on each thread; with
// tolerateGone a thread that has exited meanwhile is skipped.
func applyThreadControls(tids []int, spec *Spec, tolerateGone bool) error {
	var set unix.CPUSet
	for _, cpu := range spec.Affinity {
		set.Set(cpu)
	}
	for _, tid := range tids {
		if len(spec.Affinity) > 0 {
			if err := unix.SchedSetaffinity(tid, &set); err != nil {
				if tolerateGone && errors.Is(err, unix.ESRCH) {
					continue
				}
				return fmt.Errorf("childproc: setting the CPU affinity %v of thread %d: %w", spec.Affinity, tid, err)
			}
		}
		if spec.Nice != nil {
			if err := unix.Setpriority(unix.PRIO_PROCESS, tid, *spec.Nice); err != nil {
				if tolerateGone && errors.Is(err, unix.ESRCH) {
					continue
				}
				return fmt.Errorf("childproc: setting nice %d on thread %d: %w", *spec.Nice, tid, err)
			}
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
