package childproc

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/procpool/procpool/childproc/internal/tracee"
	"github.com/procpool/procpool/sandbox"
)

// How a new worker gets what it cannot be given from outside
//
// A worker must be set up before it runs a single instruction: its
// rlimits, affinity and nice (which a new thread copies from its creator,
// so setting them on a running, threaded program would miss threads), its
// cgroup, only the descriptors 0 to 4 (and the extra files) of the
// protocol whatever the host has open, its namespaces, user, and its
// sandbox's no_new_privs, Landlock and seccomp, which a process can only
// set on itself. Go runs no code of ours between fork and exec, so there
// are two ways:
//
//   - Traced (the default): the worker is started with PTRACE_TRACEME and
//     stops right after its execve. The fork thread, its tracer, sets the
//     cgroup, rlimits, affinity and nice from outside, then injects the
//     rest as system calls into the stopped worker (package tracee:
//     setns, chdir, setresuid, prctl, landlock_restrict_self, close_range,
//     seccomp), puts its registers back and lets it go. It costs a few
//     ptrace round trips.
//   - Trampoline (where ptrace is refused, by a container's seccomp
//     profile say, or there is no injector for the architecture): the
//     host binary itself is started (/proc/self/exe, package trampoline),
//     reads its configuration from a pipe, makes the same system calls on
//     itself and execs the worker. It costs a second execve and the start
//     of a Go runtime (a millisecond or two).
//
// Either way the worker keeps its pid, and nothing of it runs before the
// controls are in place. Whether ptrace works is probed once, at the
// first start; where it does not, the host uses the trampoline, with a
// warning.
//
// With ContainPIDNamespace, the namespace's init is made first (see
// spawnFrozenInit): it holds the worker's mount namespace, with a /proc
// of the new PID namespace, which the worker joins (setns) before
// anything else. The worker's user changes after that (the mount needs
// root), by the same injected calls rather than by Go.

// disablePtrace is set by tests to use the trampoline.
var disablePtrace atomic.Bool

// trampolineWarned limits the trampoline warning to one per process.
var trampolineWarned sync.Once

// useTracer reports whether starts are traced. The host's probe
// (probeHost) must have run: it tries ptrace on the fork thread, so it
// cannot run there.
func useTracer() bool {
	return tracee.Supported && !disablePtrace.Load() && probeHost().ptraceErr == nil
}

// launch is one start in progress: what the child gets, and what it is.
type launch struct {
	spec      *Spec
	path      string
	env       []string
	cwd       string   // the worker's absolute working directory
	stdout    *os.File // child ends
	stderr    *os.File
	files     []*os.File // fd 3 on: the protocol pipes, then Spec.ExtraFiles
	mode      Containment
	cgroup    *sandbox.Cgroup
	shared    *nsInit  // the shared namespace's init (ContainSharedNamespace)
	share     *nsShare // the namespaces shared with the job type's workers, or nil
	cgroupDir *os.File // the cgroup's v2 directory the child is cloned into, or nil
	log       hclog.Logger
}

// started is a child that runs (with the init of its own namespace, if
// it has one).
type started struct {
	cmd  *exec.Cmd
	init *nsInit
}

// joinInit returns the init whose namespaces the worker joins, and
// whether it is the worker's own (made or taken here; the shared one is
// not).
func (l *launch) joinInit() (init *nsInit, own bool, err error) {
	switch l.mode {
	case ContainSharedNamespace:
		return l.shared, false, nil
	case ContainPIDNamespace:
		init, err = inits.take(l.spec.Name, &l.spec.Sandbox)
		return init, true, err
	}
	return nil, false, nil
}

// nsJoins returns the namespaces the worker joins, in order: those of
// init (its own, or the shared one; nil: none), its job type's shared
// ones, then its user namespace; and the descriptors they need, to pass to
// the worker from descriptor base on.
func (l *launch) nsJoins(init *nsInit, base int) (joins []nsJoin, files []*os.File) {
	if init == nil {
		return nil, nil
	}
	joins = append(joins, nsJoin{fd: base, flags: init.shape.joinFlags(), what: "join the init's namespaces"})
	files = append(files, init.pidfd)
	if l.share != nil {
		for _, n := range l.share.ns {
			joins = append(joins, nsJoin{fd: base + len(files), flags: n.flag, what: "join the job type's " + n.name + " namespace"})
			files = append(files, n.f)
		}
	}
	if init.shape.user {
		joins = append(joins, nsJoin{fd: base, flags: unix.CLONE_NEWUSER, what: "join the init's user namespace"})
	}
	return joins, files
}

// program is the worker's program as an absolute path (Path relative to
// Dir, as execve sees it).
func (l *launch) program() string {
	if filepath.IsAbs(l.path) {
		return l.path
	}
	return filepath.Join(l.cwd, l.path)
}

// base is the first descriptor the worker must not have.
func (l *launch) base() int { return 3 + len(l.files) }

// pidns reports whether the worker joins a PID namespace's init: its own
// or the shared one.
func (l *launch) pidns() bool {
	return l.mode == ContainPIDNamespace || l.mode == ContainSharedNamespace
}

// sysProcAttr is what Go applies in the child before its execve: its own
// process group (and, where the session is the containment, its own
// session), and, outside a PID namespace of its own,
// its namespaces, its user and the parent-death signal. (Inside one, the
// init carries the parent-death signal and the plan does the rest; and
// Go's check that the parent is alive would see parent pid 0 there and
// kill the child.)
func (l *launch) sysProcAttr() *syscall.SysProcAttr {
	sb := &l.spec.Sandbox
	// Only ContainSession needs a session of the worker's own: with the
	// kernel's scheduler autogroups (sched_autogroup_enabled, the default
	// of most distributions), a new session is a new autogroup, and the
	// scheduler then shares the CPU between the host's group and each
	// worker's rather than between threads: a pool of 2 ran 30-50% fewer
	// 1 KiB jobs a second so (BenchmarkCallPipelined).
	attr := &syscall.SysProcAttr{Setpgid: true}
	if l.mode == ContainSession {
		attr = &syscall.SysProcAttr{Setsid: true}
	}
	flags := sb.CloneFlags()
	if l.pidns() {
		return attr // the worker joins its init's namespaces
	}
	attr.Pdeathsig = syscall.SIGKILL
	if flags&unix.CLONE_NEWNS != 0 {
		// With Unshareflags, Go also makes the new mounts private, so that
		// none propagates back to the host.
		attr.Unshareflags = unix.CLONE_NEWNS
		flags &^= unix.CLONE_NEWNS
	}
	attr.Cloneflags = flags
	if c := sb.Credential; c != nil {
		attr.Credential = &syscall.Credential{Uid: c.UID, Gid: c.GID, Groups: c.Groups}
		if sb.Namespaces.User {
			attr.UidMappings, attr.GidMappings = idMaps(c)
			attr.GidMappingsEnableSetgroups = true
		}
	}
	return attr
}

// idMaps maps the credential's ids to themselves, and nothing else.
func idMaps(c *sandbox.Credential) (uids, gids []syscall.SysProcIDMap) {
	uids = []syscall.SysProcIDMap{{ContainerID: int(c.UID), HostID: int(c.UID), Size: 1}}
	gids = []syscall.SysProcIDMap{{ContainerID: int(c.GID), HostID: int(c.GID), Size: 1}}
	for _, g := range c.Groups {
		if g != c.GID {
			gids = append(gids, syscall.SysProcIDMap{ContainerID: int(g), HostID: int(g), Size: 1})
		}
	}
	return uids, gids
}

// cmd builds the command that starts path with args and the given extra
// files after the protocol ones.
func (l *launch) cmd(path string, args []string, env []string, extra ...*os.File) *exec.Cmd {
	return &exec.Cmd{
		Path:       path,
		Args:       append([]string{path}, args...),
		Env:        env,
		Dir:        l.spec.Dir,
		Stdin:      nil, // /dev/null
		Stdout:     l.stdout,
		Stderr:     l.stderr,
		ExtraFiles: append(append([]*os.File(nil), l.files...), extra...),
	}
}

// start starts the child, traced or through the trampoline. On error
// nothing is left running.
func (l *launch) start() (*started, error) {
	if useTracer() {
		var s *started
		var err error
		onForkThread(func() { s, err = l.traced() })
		return s, err
	}
	if tracee.Supported && !disablePtrace.Load() {
		trampolineWarned.Do(func() {
			l.log.Warn("ptrace is refused: workers start through the re-exec trampoline (slower)", "cause", probeHost().ptraceErr)
		})
	}
	return l.viaTrampoline()
}

// cloneIntoCgroup makes the child start in the v2 part of its cgroup, if
// it has one (the descriptor is closed with the launch).
func (l *launch) cloneIntoCgroup(attr *syscall.SysProcAttr) error {
	if l.cgroup == nil {
		return nil
	}
	dir, err := l.cgroup.Dir()
	if err != nil || dir == nil {
		return err
	}
	l.cgroupDir = dir
	attr.UseCgroupFD, attr.CgroupFD = true, int(dir.Fd())
	return nil
}

// outside applies what the host sets from outside on a child that has
// not run yet: its cgroup (the v1 hierarchies, or all if it was not cloned
// into the v2 one), affinity and nice (on its only thread).
func (l *launch) outside(pid int) error {
	if l.cgroup != nil {
		add := l.cgroup.Add
		if l.cgroupDir != nil {
			add = l.cgroup.AddV1
		}
		if err := add(pid); err != nil {
			return err
		}
	}
	return applyThreadControls(pid, l.spec)
}

// landlockRuleset builds the Landlock ruleset of sb, if it has one, for
// the files the worker will see: those of its init's mount namespace if
// it has one (the /proc there is its own).
func landlockRuleset(sb *sandbox.Sandbox, init *nsInit, program string) (*os.File, uint32, error) {
	if sb.Landlock == nil {
		return nil, 0, nil
	}
	root := ""
	if init != nil {
		root = "/proc/" + strconv.Itoa(init.pid) + "/root"
	}
	fd, flags, err := sb.Landlock.RulesetAt(root, program)
	if err != nil {
		return nil, 0, err
	}
	return os.NewFile(uintptr(fd), "landlock-ruleset"), flags, nil
}
