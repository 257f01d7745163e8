package childproc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/procpool/procpool/childproc/internal/plan"
	"github.com/procpool/procpool/childproc/internal/tracee"
	"github.com/procpool/procpool/sandbox"
)

// nsInit is the init (PID 1) of a worker's PID namespace: a process that
// runs no code of its own. It ignores SIGCHLD, so the kernel reaps the
// orphans it inherits; it holds the worker's mount namespace, with a /proc
// of the PID namespace mounted (and, with Namespaces.PerWorker, the
// worker's network, IPC, UTS and user namespaces; else those are its job
// type's: see nsShare), which the worker joins; it dies with the init
// thread (parent-death signal), and the kernel kills every other process
// of the namespace when it dies. Like the pause container of a Kubernetes
// pod, it is what the worker's namespaces belong to.
type nsInit struct {
	pid   int
	pidfd *os.File // a pidfd of the init, to join its namespaces
	shape initShape
}

// initShape is what an init holds for its worker: its mount propagation
// and, for a worker whose sandbox has Namespaces.PerWorker, the namespaces
// it makes besides the PID and mount ones and a user namespace mapping
// only the worker's ids (else those are shared: see nsShare). Workers of
// the same shape can use inits made ahead (see initPool).
type initShape struct {
	flags   uintptr // CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS
	private bool    // private mount propagation (else slave)
	user    bool
	uid     uint32
	gids    string // gid and groups, for the key
}

// nsShape returns the namespaces, besides the PID and mount ones, of a
// worker with sandbox sb, as the shape of an init that would make them
// all.
func nsShape(sb *sandbox.Sandbox) initShape {
	sh := initShape{flags: sb.CloneFlags() &^ (unix.CLONE_NEWNS | unix.CLONE_NEWUSER), private: sb.Namespaces.Mount}
	if sb.Namespaces.User {
		c := sb.Credential
		sh.user, sh.uid = true, c.UID
		sh.gids = fmt.Sprint(c.GID, c.Groups)
	}
	return sh
}

// shapeOf returns the shape of init a worker with sandbox sb needs: its
// namespaces, but those it shares with its job type.
func shapeOf(sb *sandbox.Sandbox) initShape {
	sh := nsShape(sb)
	if !sb.Namespaces.PerWorker {
		sh = initShape{private: sh.private}
	}
	return sh
}

// joinFlags are the namespaces a worker joins from its init, but the
// user namespace (joined after the others: they belong to the host's).
func (sh initShape) joinFlags() uintptr { return unix.CLONE_NEWNS | sh.flags }

// alive reports whether the init has not exited.
func (n *nsInit) alive() bool {
	fds := []unix.PollFd{{Fd: int32(n.pidfd.Fd()), Events: unix.POLLIN}}
	k, err := unix.Poll(fds, 0)
	return err == nil && k == 0
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

// initAttr is how an init is forked: in a new PID namespace, in a session
// of its own, dying with the thread that forks it (the init thread).
func initAttr(pidfd *int) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWPID,
		Pdeathsig:  syscall.SIGKILL,
		Setsid:     true,
		PidFD:      pidfd,
	}
	return attr
}

// newInit makes an init of shape sh (with the ids of sb's credential),
// traced or through the trampoline. It runs on the init thread
// (onInitThread), which stays in the host's PID namespace.
func newInit(sb *sandbox.Sandbox, sh initShape) (*nsInit, error) {
	var n *nsInit
	var err error
	if useTracer() {
		n, err = spawnFrozenInit(sb, sh)
	} else {
		n, err = spawnTrampolineInit(sh)
	}
	if n != nil {
		n.shape = sh
	}
	return n, err
}

// spawnFrozenInit starts a namespace's init the traced way: the host
// binary, stopped after its execve before it runs anything, made to
// ignore SIGCHLD, hold no descriptor and mount /proc in a mount namespace
// of its own, then parked in pause(2) for good. It runs on the init
// thread.
func spawnFrozenInit(sb *sandbox.Sandbox, sh initShape) (*nsInit, error) {
	pidfd := -1
	attr := &syscall.ProcAttr{Sys: initAttr(&pidfd)}
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
	defer t.Close()
	if err := t.Run(initPlan(sh)); err != nil {
		return fail(err)
	}
	if sh.user {
		if err := writeIDMaps(pid, sb.Credential); err != nil {
			return fail(err)
		}
	}
	if err := t.Park(); err != nil {
		return fail(err)
	}
	return n, nil
}

// initPlan is what an init of shape sh does to itself: ignore SIGCHLD,
// close every descriptor, make a mount namespace (its mounts slaves of
// the host's, so that the host's later mounts show through, or private
// with Namespaces.Mount) and the shape's network, IPC and UTS namespaces,
// mount the PID namespace's /proc, and make the shape's user namespace.
func initPlan(sh initShape) *plan.Plan {
	p := &plan.Plan{}
	act := make([]byte, 32) // struct kernel_sigaction { handler; flags; restorer; mask }
	binary.NativeEndian.PutUint64(act, 1)
	p.Add("ignore SIGCHLD", unix.SYS_RT_SIGACTION, plan.Val(uintptr(unix.SIGCHLD)), p.Blob(act), plan.Val(0), plan.Val(8))
	p.Add("close descriptors", unix.SYS_CLOSE_RANGE, plan.Val(0), plan.Val(uintptr(^uint32(0))), plan.Val(0))
	p.Add("namespaces", unix.SYS_UNSHARE, plan.Val(uintptr(unix.CLONE_NEWNS)|sh.flags))
	prop := uintptr(unix.MS_REC | unix.MS_SLAVE)
	if sh.private {
		prop = unix.MS_REC | unix.MS_PRIVATE
	}
	p.Add("mount propagation", unix.SYS_MOUNT, plan.Val(0), p.Blob(cstr("/")), plan.Val(0), plan.Val(prop), plan.Val(0))
	p.Add("mount /proc", unix.SYS_MOUNT, p.Blob(cstr("proc")), p.Blob(cstr("/proc")), p.Blob(cstr("proc")),
		plan.Val(procFlags), plan.Val(0))
	if sh.user {
		// Last: the other namespaces belong to the host's user namespace,
		// so a worker in this one cannot change them.
		p.Add("user namespace", unix.SYS_UNSHARE, plan.Val(unix.CLONE_NEWUSER))
	}
	return p
}

// writeIDMaps maps, in the user namespace of process pid, the
// credential's ids to themselves and nothing else.
func writeIDMaps(pid int, c *sandbox.Credential) error {
	uids, gids := idMaps(c)
	dir := "/proc/" + strconv.Itoa(pid) + "/"
	format := func(m []syscall.SysProcIDMap) []byte {
		var b []byte
		for _, e := range m {
			b = fmt.Appendf(b, "%d %d %d\n", e.ContainerID, e.HostID, e.Size)
		}
		return b
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{"uid_map", format(uids)}, {"setgroups", []byte("allow")}, {"gid_map", format(gids)}} {
		if err := os.WriteFile(dir+f.name, f.data, 0); err != nil {
			return fmt.Errorf("childproc: writing %s of pid %d: %w", f.name, pid, err)
		}
	}
	return nil
}

// cstr is s with a terminating NUL.
func cstr(s string) []byte { return append([]byte(s), 0) }
