package childproc

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/procpool/procpool/childproc/internal/tracee"
	"github.com/procpool/procpool/sandbox"
)

// Containment says how childproc makes sure that no process outlives the
// worker it descends from, whatever ends the worker: it exits, crashes,
// is stopped or killed, or the host itself dies. Each worker gets the
// first of these its host and its sandbox allow (decided once per host
// process, logged once); Process.Containment says which.
//
//   - ContainPIDNamespace, for a worker whose sandbox asks for namespaces:
//     a PID namespace of its own, whose init holds its mount namespace;
//     its other namespaces are those of its job type's workers (or, with
//     Namespaces.PerWorker, the init's too).
//   - ContainSharedNamespace, for the others, where the host has
//     CAP_SYS_ADMIN and a cgroup it can kill: a cgroup of its own,
//     within a PID namespace that the host's workers share.
//   - ContainPIDNamespace again where there is no killable cgroup but the
//     host has CAP_SYS_ADMIN.
//   - ContainCgroup without CAP_SYS_ADMIN but with a delegated cgroup.
//   - ContainSession otherwise.
//
// Each is described at its value, with what it leaves out.
type Containment int

const (
	// ContainSession: the worker leads a session of its own, and when it
	// ends every process left in that session is killed. A process that
	// calls setsid(2) escapes, and when the host is SIGKILLed only the
	// worker dies (of its parent-death signal). An escaped process that
	// holds the worker's stdout or stderr open delays Done until it has
	// been quiet for half a second, by 10 s at most.
	ContainSession Containment = iota + 1
	// ContainCgroup: the worker has a cgroup of its own, killed when it
	// ends (cgroup.kill on v2; on v1 frozen, every member killed,
	// thawed), setsid and double-forked processes included. When the
	// host is SIGKILLed nobody kills the cgroup: what the worker started
	// outlives it (the worker dies of its parent-death signal) until the
	// next host of that cgroup starts and sweeps it. A root worker can
	// write itself out of its cgroup.
	ContainCgroup
	// ContainSharedNamespace: ContainCgroup, and the worker is in a PID
	// namespace shared by the host's workers, whose init dies with the
	// host and takes every process of the namespace with it. So a
	// host's SIGKILL leaves nothing behind either; only a root worker
	// that writes itself out of its cgroup outlives its own end (until
	// the host's). Workers see each other's processes there (not the
	// host's), in a /proc of the namespace.
	ContainSharedNamespace
	// ContainPIDNamespace: the worker is in a PID namespace of its own,
	// whose init (PID 1) is a placeholder that runs no code and ignores
	// SIGCHLD, so that the kernel reaps orphans; the worker is PID 2 and
	// keeps the ordinary signal semantics, and sees its own processes in
	// a /proc of the namespace. When the worker ends its init is killed,
	// and the kernel kills everything else in the namespace; when the
	// host dies, the init dies of its parent-death signal, with the same
	// effect. Nothing escapes a PID namespace. It costs a second process
	// start per worker (made ahead, while the previous worker starts).
	ContainPIDNamespace
)

// String returns "session", "cgroup", "shared-namespace" or
// "pid-namespace".
func (c Containment) String() string {
	switch c {
	case ContainSession:
		return "session"
	case ContainCgroup:
		return "cgroup"
	case ContainSharedNamespace:
		return "shared-namespace"
	case ContainPIDNamespace:
		return "pid-namespace"
	}
	return "Containment(" + strconv.Itoa(int(c)) + ")"
}

// containment is what this host allows, decided at the first Start.
type hostSupport struct {
	pidns     bool   // may make PID namespaces (CAP_SYS_ADMIN)
	cgroup    bool   // may make a killable cgroup
	why       string // what is missing, for the logs
	chosen    Containment
	ptraceErr error // why a traced start fails here, or nil
}

var containment struct {
	once   sync.Once
	host   hostSupport
	logged atomic.Bool
	forced atomic.Int32 // a test's choice for workers without namespaces, or 0
}

// containmentFor returns the containment of a worker with sandbox sb, and
// logs the host's choice once (at Info, or Warn below
// ContainSharedNamespace).
func containmentFor(sb *sandbox.Sandbox, log hclog.Logger) Containment {
	h := probeHost()
	if containment.logged.CompareAndSwap(false, true) {
		if h.chosen >= ContainSharedNamespace {
			log.Info("worker containment", "mode", h.chosen.String())
		} else {
			log.Warn("worker containment is weaker than a PID namespace", "mode", h.chosen.String(), "because", h.why)
		}
	}
	if h.pidns && wantsNamespaces(sb) {
		return ContainPIDNamespace
	}
	if f := Containment(containment.forced.Load()); f != 0 {
		return f
	}
	return h.chosen
}

// wantsNamespaces reports whether sb asks for a namespace: the worker then
// gets an init of its own to hold them.
func wantsNamespaces(sb *sandbox.Sandbox) bool { return sb.Namespaces.Any() }

func probeHost() *hostSupport {
	containment.once.Do(func() { containment.host = detectContainment() })
	return &containment.host
}

func detectContainment() hostSupport {
	var h hostSupport
	if !tracee.Supported {
		h.ptraceErr = tracee.ErrUnsupported
	} else {
		h.ptraceErr = probePtrace()
	}
	var why []string
	switch {
	case !sandbox.HasCapSysAdmin():
		why = append(why, "the host lacks CAP_SYS_ADMIN")
	default:
		if err := sandbox.ProbeNamespaces(unix.CLONE_NEWPID | unix.CLONE_NEWNS); err != nil {
			why = append(why, "PID namespaces: "+err.Error())
		} else if _, err := os.Stat("/proc/thread-self/ns/pid"); err != nil {
			why = append(why, "no /proc/thread-self/ns/pid: "+err.Error())
		} else {
			h.pidns = true
		}
	}
	if c, err := sandbox.NewCgroup(&sandbox.Sandbox{}, true); err == nil {
		_ = c.Delete()
		h.cgroup = true
	} else {
		why = append(why, "no killable cgroup: "+err.Error())
	}
	switch {
	case h.pidns && h.cgroup:
		h.chosen = ContainSharedNamespace
	case h.pidns:
		h.chosen = ContainPIDNamespace
	case h.cgroup:
		h.chosen = ContainCgroup
	default:
		h.chosen = ContainSession
	}
	h.why = strings.Join(why, "; ")
	return h
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
