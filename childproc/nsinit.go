package childproc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/procpool/procpool/childproc/internal/plan"
	"github.com/procpool/procpool/childproc/internal/tracee"
	"github.com/procpool/procpool/sandbox"
)

// nsInit is the init (PID 1) of a worker's PID namespace: a process that
// runs no code of its own. It ignores SIGCHLD, so the kernel reaps the
// orphans it inherits; it holds the namespace's mount namespace, with a
// /proc of the namespace mounted, which the worker joins; it dies with
// the fork thread (parent-death signal), and the kernel kills every other
// process of the namespace when it dies.
type nsInit struct {
	pid   int
	pidfd *os.File // a pidfd of the init, to join its namespaces
}

// initArgv0 is the command line of a namespace's init.
const initArgv0 = "procpool-init"

// kill ends the init and reaps it: the kernel first kills every other
// process of the namespace and waits for them (their parent reaps those
// whose parent is outside, as the worker's is).
func (n *nsInit) kill() {
	if n == nil {
		return
	}
	_ = unix.Kill(n.pid, unix.SIGKILL)
	n.wait()
}

// wait reaps the init and releases its pidfd.
func (n *nsInit) wait() {
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(n.pid, &ws, unix.WALL, nil)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	n.pidfd.Close()
}

// Mount flags for the init's mount namespace.
const procFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

// initAttr is how an init is forked: in a new PID namespace (and, for a
// sandbox with a user namespace, a new user namespace mapping only the
// worker's ids, which the worker joins), in a session of its own, dying
// with the fork thread.
func initAttr(sb *sandbox.Sandbox, pidfd *int) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWPID,
		Pdeathsig:  syscall.SIGKILL,
		Setsid:     true,
		PidFD:      pidfd,
	}
	if sb.Namespaces.User {
		attr.Cloneflags |= unix.CLONE_NEWUSER
		attr.UidMappings, attr.GidMappings = idMaps(sb.Credential)
		attr.GidMappingsEnableSetgroups = true
	}
	return attr
}

// spawnFrozenInit starts a namespace's init the traced way: the host
// binary, stopped after its execve before it runs anything, made to
// ignore SIGCHLD, hold no descriptor and mount /proc in a mount namespace
// of its own, then parked in pause(2) for good. It runs on the fork
// thread.
func spawnFrozenInit(sb *sandbox.Sandbox) (*nsInit, error) {
	pidfd := -1
	attr := &syscall.ProcAttr{Sys: initAttr(sb, &pidfd)}
	attr.Sys.Ptrace = true
	pid, err := syscall.ForkExec("/proc/self/exe", []string{initArgv0}, attr)
	if err != nil {
		return nil, fmt.Errorf("childproc: starting a PID namespace init: %w", err)
	}
	n := &nsInit{pid: pid, pidfd: os.NewFile(uintptr(pidfd), "pidfd")}
	fail := func(err error) (*nsInit, error) {
		n.kill()
		return nil, fmt.Errorf("childproc: setting up the PID namespace init %d: %w", pid, err)
	}
	if err := waitExecStop(pid); err != nil {
		return fail(err)
	}
	t, err := tracee.Attach(pid)
	if err != nil {
		return fail(err)
	}
	if err := t.Run(initPlan(sb)); err != nil {
		return fail(err)
	}
	if err := t.Park(); err != nil {
		return fail(err)
	}
	return n, nil
}

// initPlan is what an init does to itself: ignore SIGCHLD, close every
// descriptor, make a mount namespace (its mounts slaves of the host's, so
// that the host's later mounts show through, or private with
// Namespaces.Mount) and mount the namespace's /proc in it.
func initPlan(sb *sandbox.Sandbox) *plan.Plan {
	p := &plan.Plan{}
	act := make([]byte, 32) // struct kernel_sigaction { handler; flags; restorer; mask }
	binary.NativeEndian.PutUint64(act, 1)
	p.Add("ignore SIGCHLD", unix.SYS_RT_SIGACTION, plan.Val(uintptr(unix.SIGCHLD)), p.Blob(act), plan.Val(0), plan.Val(8))
	p.Add("close descriptors", unix.SYS_CLOSE_RANGE, plan.Val(0), plan.Val(uintptr(^uint32(0))), plan.Val(0))
	p.Add("mount namespace", unix.SYS_UNSHARE, plan.Val(unix.CLONE_NEWNS))
	prop := uintptr(unix.MS_REC | unix.MS_SLAVE)
	if sb.Namespaces.Mount {
		prop = unix.MS_REC | unix.MS_PRIVATE
	}
	p.Add("mount propagation", unix.SYS_MOUNT, plan.Val(0), p.Blob(cstr("/")), plan.Val(0), plan.Val(prop), plan.Val(0))
	p.Add("mount /proc", unix.SYS_MOUNT, p.Blob(cstr("proc")), p.Blob(cstr("/proc")), p.Blob(cstr("proc")),
		plan.Val(procFlags), plan.Val(0))
	return p
}

// cstr is s with a terminating NUL.
func cstr(s string) []byte { return append([]byte(s), 0) }
