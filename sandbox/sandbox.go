package sandbox

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
)

// Sandbox describes the controls applied to a worker process before it
// runs any code, on top of what package childproc gives every worker
// (containment of its whole process tree, descriptors 0 to 5 only). Its
// zero value applies none of them. A control that this machine cannot
// apply makes Check fail, naming the control and the reason; nothing is
// applied half-way.
type Sandbox struct {
	// Credential makes the worker run as another user (nil: the host's).
	Credential *Credential

	// Memory is a hard limit, in bytes, on the memory of the worker and
	// every process it starts, counted together by a cgroup of the
	// worker's own (0: none). Past it the kernel reclaims what it can,
	// then kills a process of the group; the kill is counted by the
	// cgroup itself (childproc.ExitInfo.OOMKills, read when the worker
	// ends) and reported by procpool as a supervisor.MemoryFailure.
	Memory uint64
	// CPU is a CPU quota, in CPUs (0.5: half of one CPU's time; 0: none),
	// shared by the worker and every process it starts: CPU x 100 ms of
	// CPU time per 100 ms period, enforced by the kernel (CFS bandwidth
	// control) on a cpu cgroup of the worker's own. That cgroup is also a
	// scheduling group of its own, and the scheduler then shares the
	// cores between the host's group and each worker's rather than
	// thread by thread, with wake-ups preempting across groups: on short
	// jobs that cost a pool of 2 on 2 cores 10-30% of its throughput, even
	// with a quota of every core. So a worker with a quota runs under
	// SCHED_BATCH (its wake-ups do not preempt; the same fair share, nice
	// and quota), which took that back: 97-115% of the unsandboxed pool
	// in the same runs (docs/isolation.md, Costs).
	CPU float64
	// Pids bounds the tasks of the worker's cgroup: its processes and
	// their threads, the worker's own included (0: none). A fork or a
	// thread creation past it fails with EAGAIN. A Go worker starts about
	// ten threads.
	Pids int

	// Namespaces the worker gets of its own.
	Namespaces Namespaces

	// NoNewPrivs sets no_new_privs: the worker and its children can gain
	// no privilege through execve (setuid and setgid bits, file
	// capabilities are ignored). Seccomp and Landlock imply it.
	NoNewPrivs bool

	// Seccomp filters the worker's system calls (nil: no filter).
	Seccomp *Seccomp

	// Landlock restricts the worker's access to the file system (nil: no
	// restriction).
	Landlock *Landlock
}

// Credential is a user identity for the worker.
type Credential struct {
	// UID and GID are the worker's user and group ids.
	UID, GID uint32
	// Groups are its supplementary groups; none by default (the host's
	// are dropped).
	Groups []uint32
}

// Namespaces lists the Linux namespaces a worker gets of its own.
type Namespaces struct {
	// User gives the worker a user namespace in which only its own uid,
	// gid and groups exist, mapped to themselves: root, and any other
	// owner, is nobody there. It needs Credential (a user namespace
	// without one would leave the worker root on the host's files).
	User bool
	// Network gives the worker no network at all: a network namespace
	// with only a loopback interface, which is down.
	Network bool
	// PID requires a PID namespace of the worker's own, in which it and
	// its descendants see only each other. Where the host can make PID
	// namespaces, childproc gives one of its own to every worker whose
	// sandbox asks for any namespace, and puts the others in one the
	// host's workers share (it is how it contains the process tree); with
	// PID set, a host that cannot refuses the job type rather than fall
	// back.
	PID bool
	// Mount gives the worker a mount namespace of its own (with private
	// propagation): what it mounts or unmounts stays there.
	Mount bool
	// IPC gives the worker its own System V IPC objects and POSIX message
	// queues.
	IPC bool
	// UTS gives the worker its own host and domain names.
	UTS bool

	// PerWorker gives every worker network, IPC, UTS and user namespaces
	// of its own. Without it, where the worker has a PID namespace of its
	// own (childproc.ContainPIDNamespace), the workers of one job type
	// (the same childproc.Spec.Name and Sandbox) share one set of them,
	// made for the first and gone with the last: a network namespace is
	// the dearest part of a sandboxed start, a millisecond or two. They
	// then share an empty network (its loopback interface down, and
	// abstract Unix sockets), System V IPC objects and POSIX message
	// queues, host names, and the user namespace's keyrings; each keeps
	// its own PID and mount namespaces, so none sees or signals another's
	// processes (docs/isolation.md, Namespaces). PerWorker alone asks for
	// no namespace.
	PerWorker bool
}

// Any reports whether n asks for any namespace (PerWorker alone asks for
// none).
func (n Namespaces) Any() bool {
	n.PerWorker = false
	return n != (Namespaces{})
}

// Seccomp describes a system call filter. In its default form it denies
// DefaultDeny (and Deny); with Allow it permits only those. A denied call
// fails with EPERM, or kills the process with Kill.
type Seccomp struct {
	// Allow, if not empty, makes the filter an allow-list: only these
	// system calls (by name, as in the kernel's table for the host's
	// architecture) are permitted.
	Allow []string
	// Deny lists system calls denied besides DefaultDeny (default form
	// only).
	Deny []string
	// Kill makes a denied call kill the whole process (SIGSYS) instead
	// of failing with EPERM.
	Kill bool
}

// Landlock describes the file system access a worker keeps; everything
// else is denied (by the Landlock LSM, which even root cannot lift). It
// also keeps the worker from signalling processes outside its sandbox
// and from connecting to abstract Unix sockets outside it, where the
// kernel can (Landlock ABI 6, Linux 6.12).
//
// The worker's program is already open when the rules take effect, but a
// dynamically linked program still loads its libraries, and an
// interpreter its modules: list them (/usr, /lib, /lib64, /etc/ld.so.cache)
// under ReadOnly.
type Landlock struct {
	// ReadOnly are files and directory trees the worker may read and
	// execute.
	ReadOnly []string
	// ReadWrite are files and directory trees the worker may read,
	// write, create and remove in, and execute.
	ReadWrite []string
}

// ErrInvalid reports a Sandbox that is malformed whatever the machine.
var ErrInvalid = errors.New("sandbox: invalid")

// ErrUnsupported reports a control this machine cannot apply.
var ErrUnsupported = errors.New("sandbox: not supported here")

// IsZero reports whether s applies no control.
func (s *Sandbox) IsZero() bool {
	return s.Credential == nil && s.Memory == 0 && s.CPU == 0 && s.Pids == 0 &&
		!s.Namespaces.Any() && !s.NoNewPrivs && s.Seccomp == nil && s.Landlock == nil
}

// NeedsCgroup reports whether s sets a cgroup limit.
func (s *Sandbox) NeedsCgroup() bool { return s.Memory > 0 || s.CPU > 0 || s.Pids > 0 }

// NeedsNoNewPrivs reports whether no_new_privs is set, asked for or
// implied by Seccomp or Landlock.
func (s *Sandbox) NeedsNoNewPrivs() bool {
	return s.NoNewPrivs || s.Seccomp != nil || s.Landlock != nil
}

// Validate checks s without looking at the machine and returns an error
// matching ErrInvalid for the first malformed value: a negative or absurd
// limit, a user namespace without Credential, unknown or duplicate system
// call names, a relative or empty Landlock path.
func (s *Sandbox) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	switch {
	case s.CPU < 0 || math.IsNaN(s.CPU) || math.IsInf(s.CPU, 0):
		return bad("CPU %v is not a number of CPUs", s.CPU)
	case s.CPU > 0 && s.CPU*cpuPeriod < 1000:
		return bad("CPU %v is below the kernel's smallest quota (0.01 CPU)", s.CPU)
	case s.Pids < 0:
		return bad("Pids %d < 0", s.Pids)
	case s.Memory > 0 && s.Memory < minMemory:
		return bad("Memory %d is below %d bytes: no program starts in it", s.Memory, minMemory)
	case s.Namespaces.User && s.Credential == nil:
		return bad("Namespaces.User needs Credential: without it the worker would be root on the host's files")
	}
	if s.Seccomp != nil {
		if err := s.Seccomp.validate(); err != nil {
			return bad("Seccomp: %v", err)
		}
	}
	if l := s.Landlock; l != nil {
		for _, list := range []struct {
			name  string
			paths []string
		}{{"ReadOnly", l.ReadOnly}, {"ReadWrite", l.ReadWrite}} {
			for i, p := range list.paths {
				if p == "" || !filepath.IsAbs(p) || strings.IndexByte(p, 0) >= 0 {
					return bad("Landlock.%s[%d] %q is not an absolute path", list.name, i, p)
				}
			}
		}
	}
	return nil
}

// minMemory is the smallest Memory limit Validate accepts.
const minMemory = 1 << 20

// cpuPeriod is the CFS period, in microseconds, a CPU quota is set for.
const cpuPeriod = 100_000
