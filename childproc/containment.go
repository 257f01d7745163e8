package childproc

import (
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/procpool/procpool/sandbox"
)

// Containment says how childproc makes sure that no process outlives the
// worker it descends from, whatever ends the worker: it exits, crashes,
// is stopped or killed, or the host itself dies. Start takes the
// strongest this host allows, decided once per process; Process.
// Containment says which one a process got.
type Containment int

const (
	// ContainSession: the worker leads a session of its own, and when it
	// ends every process left in that session is killed. A process that
	// calls setsid(2) escapes it, and when the host is SIGKILLed only the
	// worker dies (its parent-death signal). Used where neither of the
	// others is possible (no CAP_SYS_ADMIN, no writable cgroup).
	ContainSession Containment = iota + 1
	// ContainCgroup: each worker has a cgroup of its own, which is killed
	// (cgroup.kill on v2; on v1 frozen, every member killed, thawed)
	// when the worker ends, setsid and double-forked processes included.
	// When the host is SIGKILLed, nobody kills the cgroup: what the
	// worker started outlives it (the worker dies of its parent-death
	// signal). A root worker could also move itself out of its cgroup.
	ContainCgroup
	// ContainPIDNamespace: each worker is in a PID namespace of its own,
	// whose init (PID 1) is a placeholder process that runs no code and
	// ignores SIGCHLD, so that the kernel reaps orphans. The worker is
	// PID 2: it keeps the ordinary signal semantics. When the worker ends
	// its init is killed, and the kernel kills everything else in the
	// namespace; when the host dies, the init dies of its parent-death
	// signal, with the same effect. Nothing escapes a PID namespace.
	// Needs CAP_SYS_ADMIN.
	ContainPIDNamespace
)

// String returns "session", "cgroup" or "pid-namespace".
func (c Containment) String() string {
	switch c {
	case ContainSession:
		return "session"
	case ContainCgroup:
		return "cgroup"
	case ContainPIDNamespace:
		return "pid-namespace"
	}
	return "Containment(" + strconv.Itoa(int(c)) + ")"
}

// containment is the host's containment, decided at the first Start.
var containment struct {
	once   sync.Once
	mode   Containment
	why    string // why it is not ContainPIDNamespace
	logged atomic.Bool
	forced atomic.Int32 // a test's choice, or 0
}

// hostContainment returns the strongest containment this host allows, and
// logs it (once per process, at Info, or Warn if it is not the strongest).
func hostContainment(log hclog.Logger) Containment {
	containment.once.Do(func() {
		containment.mode, containment.why = detectContainment()
	})
	mode := containment.mode
	if f := Containment(containment.forced.Load()); f != 0 {
		return f
	}
	if containment.logged.CompareAndSwap(false, true) {
		if mode == ContainPIDNamespace {
			log.Info("worker containment", "mode", mode.String())
		} else {
			log.Warn("worker containment is weaker than a PID namespace per worker", "mode", mode.String(), "because", containment.why)
		}
	}
	return mode
}

func detectContainment() (Containment, string) {
	var why string
	switch {
	case !sandbox.HasCapSysAdmin():
		why = "the host lacks CAP_SYS_ADMIN"
	default:
		if err := sandbox.ProbeNamespaces(unix.CLONE_NEWPID); err != nil {
			why = "PID namespaces: " + err.Error()
		} else if _, err := os.Stat("/proc/thread-self/ns/pid"); err != nil {
			why = "no /proc/thread-self/ns/pid: " + err.Error()
		} else {
			return ContainPIDNamespace, ""
		}
	}
	if c, err := sandbox.NewCgroup(&sandbox.Sandbox{}, true); err == nil {
		_ = c.Delete()
		return ContainCgroup, why
	} else {
		why += "; no killable cgroup: " + err.Error()
	}
	return ContainSession, why
}

// killSession kills every live process of session sid, a few passes in
// case some fork meanwhile.
func killSession(sid int) {
	for range 5 {
		found := false
		for _, pid := range sessionMembers(sid) {
			found = true
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if !found {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// sessionMembers lists the live processes of session sid, from /proc.
func sessionMembers(sid int) []int {
	d, err := os.Open("/proc")
	if err != nil {
		return nil
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	var out []int
	var buf [512]byte
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		b, err := readProcFile("/proc/"+n+"/stat", buf[:0])
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp session ...; comm may hold anything.
		i := lastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) {
			continue
		}
		f := fields(b[i+2:])
		if len(f) < 4 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if s, err := strconv.Atoi(f[3]); err == nil && s == sid {
			out = append(out, pid)
		}
	}
	return out
}

func lastIndexByte(b []byte, c byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == c {
			return i
		}
	}
	return -1
}

// fields returns the first few space-separated fields of b.
func fields(b []byte) []string {
	var out []string
	start := -1
	for i := 0; i <= len(b) && len(out) < 8; i++ {
		if i == len(b) || b[i] == ' ' || b[i] == '\n' {
			if start >= 0 {
				out = append(out, string(b[start:i]))
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	return out
}
