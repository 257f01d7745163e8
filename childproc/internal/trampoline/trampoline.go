// Package trampoline is childproc's re-exec path: the host binary started
// again (/proc/self/exe) with Marker as argv[0], which an init function of
// this package recognises before the program's own code runs. It serves
// where childproc cannot stop a new worker with ptrace and inject its
// sandbox (ptrace refused, or no injector for the architecture), in two
// modes:
//
//   - exec: read a configuration (an Exec) from a pipe, apply it to
//     itself on the main thread (rlimits, every descriptor past the
//     worker's marked close-on-exec, the sandbox plan: joining its
//     namespaces, its user, no_new_privs, Landlock, seccomp), then
//     execve the worker, which keeps the process, its pid and everything
//     applied. A failure is written to a status pipe as a Status
//     (close-on-exec, so a successful execve reads as end of file) and
//     ends the process with exit code 127.
//   - init: be the init of a PID namespace: ignore SIGCHLD (the kernel
//     then reaps orphans by itself), close every descriptor, make a mount
//     namespace (its mounts slaves of the host's, or private) with the
//     namespace's /proc mounted, and the network, IPC and UTS namespaces
//     it is asked for, say ready, and sleep until killed.
//
// It imports only the standard library and childproc's plan encoding, so
// that little of a big host binary initialises before it takes over
// (Go initialises a package after its imports).
package trampoline

import (
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"github.com/procpool/procpool/childproc/internal/plan"
)

// Marker is argv[0] of a trampoline.
const Marker = "procpool-trampoline"

// Modes, argv[1].
const (
	ModeExec = "exec"
	ModeInit = "init"
)

// Exec is the configuration of the exec mode.
type Exec struct {
	// Path, Argv and Env are the worker's execve arguments.
	Path string
	Argv []string
	Env  []string
	// Base is the first descriptor the worker must not have: the
	// configuration pipe is Base, the status pipe Base+1, and whatever
	// the plan refers to follows.
	Base int
	// Program is a descriptor of the program (O_PATH) to exec through
	// (execveat), or -1 to exec Path; Path is tried if it fails with
	// ENOENT (a script, whose interpreter cannot open a close-on-exec
	// descriptor).
	Program int
	// Rlimits are set, soft and hard, before anything else.
	Rlimits []Rlimit
	// Plan is run after the descriptors past the worker's are marked
	// close-on-exec.
	Plan *plan.Plan
}

// StepExec is the Status.Step of the worker's own execve.
const StepExec = "exec"

// Status is what the exec mode writes on its status pipe when it fails
// before the worker runs: the step that failed (StepExec, or a step of
// the plan such as "seccomp"), and the errno of its system call, or a
// message where the failure is not a system call's.
type Status struct {
	Step  string
	Errno syscall.Errno // 0: see Msg
	Msg   string
}

// Marshal encodes s for the status pipe.
func (s *Status) Marshal() []byte {
	var enc plan.Encoder
	enc.String(s.Step)
	enc.Uint(uint64(s.Errno))
	enc.String(s.Msg)
	return enc.B
}

// ParseStatus decodes what Status.Marshal wrote.
func ParseStatus(b []byte) (*Status, error) {
	d := plan.Decoder{B: b}
	s := &Status{Step: d.String(), Errno: syscall.Errno(d.Uint()), Msg: d.String()}
	return s, d.Err()
}

// Rlimit is one resource limit.
type Rlimit struct {
	Resource int
	Value    uint64
}

// Marshal encodes e for the configuration pipe.
func (e *Exec) Marshal() []byte {
	var enc plan.Encoder
	enc.String(e.Path)
	enc.Strings(e.Argv)
	enc.Strings(e.Env)
	enc.Uint(uint64(e.Base))
	enc.Uint(uint64(e.Program + 1))
	enc.Uint(uint64(len(e.Rlimits)))
	for _, r := range e.Rlimits {
		enc.Uint(uint64(r.Resource))
		enc.Uint(r.Value)
	}
	enc.Plan(e.Plan)
	return enc.B
}

// unmarshal decodes what Marshal wrote.
func unmarshal(b []byte) (*Exec, error) {
	d := plan.Decoder{B: b}
	e := &Exec{Path: d.String(), Argv: d.Strings(), Env: d.Strings(), Base: int(d.Uint()), Program: int(d.Uint()) - 1}
	n := d.Uint()
	for i := uint64(0); i < n && d.Err() == nil; i++ {
		e.Rlimits = append(e.Rlimits, Rlimit{Resource: int(d.Uint()), Value: d.Uint()})
	}
	e.Plan = d.Plan()
	return e, d.Err()
}

func init() {
	if len(os.Args) < 2 || os.Args[0] != Marker {
		return
	}
	// Package initialisation runs on the main thread, locked to it.
	switch os.Args[1] {
	case ModeExec:
		if len(os.Args) == 3 {
			if base, err := strconv.Atoi(os.Args[2]); err == nil {
				os.Exit(runExec(base))
			}
		}
	case ModeInit:
		if len(os.Args) == 4 {
			if flags, err := strconv.ParseUint(os.Args[3], 10, 64); err == nil {
				runInit(os.Args[2] == "private", uintptr(flags))
			}
		}
	}
	os.Exit(2)
}

// close_range(2): the same number on every architecture (system calls
// from 424 on share one table), and CLOSE_RANGE_CLOEXEC. Package syscall
// has neither.
const (
	sysCloseRange     = 436
	closeRangeCloexec = 1 << 2
)

// runExec is the exec mode; it returns only on failure.
func runExec(base int) int {
	status := base + 1
	fail := func(step string, err error) int {
		st := Status{Step: step}
		if errno, ok := err.(syscall.Errno); ok {
			st.Errno = errno
		} else if err != nil {
			st.Msg = err.Error()
		}
		syscall.Write(status, st.Marshal())
		return 127
	}
	b, err := readAll(base)
	if err != nil {
		return fail("reading the configuration", err)
	}
	syscall.Close(base)
	e, err := unmarshal(b)
	if err != nil {
		return fail("decoding the configuration", err)
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(status), syscall.F_SETFD, syscall.FD_CLOEXEC); errno != 0 {
		return fail("status pipe", errno)
	}
	restoreOpenFilesLimit()
	for _, r := range e.Rlimits {
		lim := syscall.Rlimit{Cur: r.Value, Max: r.Value}
		if err := syscall.Setrlimit(r.Resource, &lim); err != nil {
			return fail("setting rlimit "+strconv.Itoa(r.Resource)+" to "+strconv.FormatUint(r.Value, 10), err)
		}
	}
	if err := cloexecFrom(base); err != nil {
		return fail("closing the host's descriptors", err)
	}
	// Everything execve needs is made before the plan runs: a seccomp
	// allow-list may deny what making it would take.
	path, err := syscall.BytePtrFromString(e.Path)
	if err != nil {
		return fail("worker path", err)
	}
	argv, err := syscall.SlicePtrFromStrings(e.Argv)
	if err != nil {
		return fail("worker arguments", err)
	}
	envv, err := syscall.SlicePtrFromStrings(e.Env)
	if err != nil {
		return fail("worker environment", err)
	}
	if !e.Plan.Empty() {
		// img holds the plan's data from offset off, 16-byte aligned. The
		// heap does not move, and img is kept alive until the calls end.
		var img []byte
		off, base := 0, uintptr(0)
		if len(e.Plan.Blobs) > 0 {
			probe, _, err := e.Plan.Image(0)
			if err != nil {
				return fail("sandbox", err)
			}
			img = make([]byte, len(probe)+16)
			start := uintptr(unsafe.Pointer(&img[0]))
			base = (start + 15) &^ 15
			off = int(base - start)
		}
		data, addrs, err := e.Plan.Image(base)
		if err != nil {
			return fail("sandbox", err)
		}
		copy(img[off:], data)
		for i := range e.Plan.Steps {
			s := &e.Plan.Steps[i]
			a, err := s.Resolve(addrs)
			if err != nil {
				return fail(s.Name, err)
			}
			if _, _, errno := syscall.RawSyscall6(s.NR, a[0], a[1], a[2], a[3], a[4], a[5]); errno != 0 {
				return fail(s.Name, errno)
			}
		}
		runtime.KeepAlive(img)
	}
	if e.Program >= 0 && sysExecveat != 0 {
		empty := [1]byte{}
		_, _, errno := syscall.RawSyscall6(sysExecveat, uintptr(e.Program), uintptr(unsafe.Pointer(&empty[0])),
			uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envv[0])), atEmptyPath, 0)
		if errno != syscall.ENOENT {
			return fail(StepExec, errno)
		}
	}
	_, _, errno := syscall.RawSyscall(syscall.SYS_EXECVE,
		uintptr(unsafe.Pointer(path)), uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envv[0])))
	return fail(StepExec, errno)
}

// restoreOpenFilesLimit puts back the soft RLIMIT_NOFILE this process
// started with, which the Go runtime raised for itself (package syscall's
// init): the worker must get the host's, as os/exec's children do.
// Package syscall keeps the original to itself and restores it only in
// Exec, before its execve; an Exec that fails at once (there is no file
// by an empty name) does that and nothing else.
func restoreOpenFilesLimit() {
	_ = syscall.Exec("", []string{""}, nil)
}

// execveat(2), which package syscall lacks on some architectures, and
// AT_EMPTY_PATH; 0 where unknown (then execve is used).
var sysExecveat = map[string]uintptr{
	"amd64": 322, "arm64": 281, "riscv64": 281, "loong64": 281, "ppc64": 362, "ppc64le": 362,
	"s390x": 354, "386": 358, "arm": 387, "mips64": 5316, "mips64le": 5316,
}[runtime.GOARCH]

const atEmptyPath = 0x1000

// cloexecFrom marks every descriptor from fd on close-on-exec.
func cloexecFrom(fd int) error {
	_, _, errno := syscall.RawSyscall(sysCloseRange, uintptr(fd), ^uintptr(0)>>1, closeRangeCloexec)
	if errno == 0 {
		return nil
	}
	if errno != syscall.ENOSYS && errno != syscall.EINVAL {
		return errno
	}
	// Before Linux 5.11: one by one.
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		if x, err := strconv.Atoi(n); err == nil && x >= fd {
			syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(x), syscall.F_SETFD, syscall.FD_CLOEXEC)
		}
	}
	return nil
}

// readAll reads fd to its end.
func readAll(fd int) ([]byte, error) {
	var out []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := syscall.Read(fd, buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return out, nil
		}
		out = append(out, buf[:n]...)
	}
}

// runInit is the init mode: fd 3 is the ready pipe. It never returns; a
// failure ends it with exit code 127 before it says ready.
func runInit(private bool, flags uintptr) {
	signal.Ignore(syscall.SIGCHLD)
	closeInherited(4)
	// The main thread (locked during initialisation) holds the mount
	// namespace and the others of flags; the worker joins them through a
	// pidfd of the process, which names the main thread.
	if err := syscall.Unshare(syscall.CLONE_NEWNS | int(flags)); err != nil {
		os.Exit(127)
	}
	prop := uintptr(syscall.MS_REC | syscall.MS_SLAVE)
	if private {
		prop = syscall.MS_REC | syscall.MS_PRIVATE
	}
	if err := syscall.Mount("", "/", "", prop, ""); err != nil {
		os.Exit(127)
	}
	if err := syscall.Mount("proc", "/proc", "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		os.Exit(127)
	}
	syscall.Write(3, []byte{1})
	syscall.Close(3)
	for {
		time.Sleep(time.Hour)
	}
}

// closeInherited closes the descriptors from fd on that this process
// inherited: those without close-on-exec (the Go runtime's own, its
// netpoller's say, have it).
func closeInherited(fd int) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return
	}
	names, _ := d.Readdirnames(-1)
	own := int(d.Fd())
	var inherited []int
	for _, n := range names {
		x, err := strconv.Atoi(n)
		if err != nil || x < fd || x == own {
			continue
		}
		flags, _, errno := syscall.RawSyscall(syscall.SYS_FCNTL, uintptr(x), syscall.F_GETFD, 0)
		if errno == 0 && flags&syscall.FD_CLOEXEC == 0 {
			inherited = append(inherited, x)
		}
	}
	d.Close()
	for _, x := range inherited {
		syscall.Close(x)
	}
}
