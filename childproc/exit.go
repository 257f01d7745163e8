package childproc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ExitInfo describes how a process ended. It is complete once Done is
// closed.
type ExitInfo struct {
	// PID is the process id the process had.
	PID int
	// Code is the exit code, or -1 if the process was killed by a signal
	// (or could not be waited for).
	Code int
	// Signal is the signal that killed the process, 0 if it exited.
	Signal syscall.Signal
	// CoreDumped reports that the kernel wrote a core file.
	CoreDumped bool
	// Requested reports that Stop was called before the process ended: an
	// exit or a kill during Stop counts as requested. Kill and Signal do
	// not set it.
	Requested bool
	// UserTime and SystemTime are the CPU times used by the process (and
	// by the descendants it waited for).
	UserTime, SystemTime time.Duration
	// MaxRSS is the peak resident set size in bytes.
	MaxRSS uint64
	// OOMKills is the number of processes of the process's cgroup (it
	// and what it started) that the kernel killed for going over
	// Sandbox.Memory, from the cgroup's own counter; 0 without a memory
	// limit.
	OOMKills uint64
	// StderrTail holds the last lines the process wrote to stderr, oldest
	// first (at most Spec.StderrTail of them).
	StderrTail []string
	// Err is the error of the wait, if any; the other fields are then
	// mostly zero.
	Err error
}

// String describes the end in a few words: "exit 3", "killed by SIGKILL",
// "killed by SIGKILL (out of memory)", "killed by SIGSEGV (core dumped)",
// or "wait error: ...".
func (e ExitInfo) String() string {
	switch {
	case e.Err != nil:
		return "wait error: " + e.Err.Error()
	case e.Signal != 0:
		s := "killed by " + signalName(e.Signal)
		if e.CoreDumped {
			s += " (core dumped)"
		}
		if e.OOMKilled() {
			s += " (out of memory)"
		}
		return s
	default:
		return fmt.Sprintf("exit %d", e.Code)
	}
}

// OOMKilled reports whether the process was killed by SIGKILL while the
// kernel's OOM killer was killing in its cgroup: it went over
// Sandbox.Memory (it, or the processes it started, whose memory counts
// with its own).
func (e ExitInfo) OOMKilled() bool { return e.OOMKills > 0 && e.Signal == syscall.SIGKILL }

// Success reports whether the process exited with code 0.
func (e ExitInfo) Success() bool {
	return e.Err == nil && e.Signal == 0 && e.Code == 0
}

func signalName(sig syscall.Signal) string {
	if name := unix.SignalName(sig); name != "" {
		return name
	}
	return fmt.Sprintf("signal %d", int(sig))
}

// exitInfoFrom fills an ExitInfo from a finished os.ProcessState.
func exitInfoFrom(pid int, state *os.ProcessState, waitErr error) ExitInfo {
	info := ExitInfo{PID: pid, Code: -1}
	if state == nil {
		if waitErr == nil {
			waitErr = fmt.Errorf("childproc: no wait status for pid %d", pid)
		}
		info.Err = waitErr
		return info
	}
	// An *exec.ExitError only restates the status; keep other errors.
	var exitErr *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &exitErr) {
		info.Err = waitErr
	}
	if ws, ok := state.Sys().(syscall.WaitStatus); ok {
		switch {
		case ws.Exited():
			info.Code = ws.ExitStatus()
		case ws.Signaled():
			info.Signal = ws.Signal()
			info.CoreDumped = ws.CoreDump()
		}
	} else {
		info.Code = state.ExitCode()
	}
	if ru, ok := state.SysUsage().(*syscall.Rusage); ok && ru != nil {
		info.UserTime = time.Duration(ru.Utime.Nano())
		info.SystemTime = time.Duration(ru.Stime.Nano())
		if ru.Maxrss > 0 {
			info.MaxRSS = uint64(ru.Maxrss) * 1024
		}
	}
	return info
}
