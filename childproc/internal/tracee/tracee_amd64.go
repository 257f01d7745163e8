package tracee

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/procpool/procpool/childproc/internal/plan"
)

// Supported reports whether this architecture has an injector.
const Supported = true

// syscallInsn is the x86-64 syscall instruction.
var syscallInsn = [2]byte{0x0f, 0x05}

// Tracee is a stopped child the caller traces, with the two bytes at its
// instruction pointer replaced by a syscall instruction until Detach or
// Park. Its methods must be called from the tracer's thread.
type Tracee struct {
	pid   int
	saved unix.PtraceRegs
	text  [8]byte // the original word at saved.Rip
}

// Attach prepares pid, which must be in a ptrace-stop of the calling
// thread (the SIGTRAP after its execve), for Syscall. On error pid is
// left as it was.
func Attach(pid int) (*Tracee, error) {
	t := &Tracee{pid: pid}
	if err := unix.PtraceGetRegs(pid, &t.saved); err != nil {
		return nil, fmt.Errorf("tracee: reading the registers of pid %d: %w", pid, err)
	}
	if _, err := unix.PtracePeekText(pid, uintptr(t.saved.Rip), t.text[:]); err != nil {
		return nil, fmt.Errorf("tracee: reading the code of pid %d: %w", pid, err)
	}
	word := t.text
	copy(word[:], syscallInsn[:])
	if _, err := unix.PtracePokeText(pid, uintptr(t.saved.Rip), word[:]); err != nil {
		return nil, fmt.Errorf("tracee: writing the code of pid %d: %w", pid, err)
	}
	return t, nil
}

func (t *Tracee) stackPointer() uintptr { return uintptr(t.saved.Rsp) }

// write copies b into the tracee at addr.
func (t *Tracee) write(addr uintptr, b []byte) error {
	local := []unix.Iovec{{Base: &b[0]}}
	local[0].SetLen(len(b))
	remote := []unix.RemoteIovec{{Base: addr, Len: len(b)}}
	n, err := unix.ProcessVMWritev(t.pid, local, remote, 0)
	if err == nil && n != len(b) {
		err = fmt.Errorf("short write: %d of %d bytes", n, len(b))
	}
	if err != nil {
		return fmt.Errorf("tracee: copying %d bytes into pid %d: %w", len(b), t.pid, err)
	}
	return nil
}

// Syscall makes the system call nr with args in the tracee and returns
// its result; an errno result is an error naming the call.
func (t *Tracee) Syscall(name string, nr uintptr, args [6]uintptr) (uintptr, error) {
	regs := t.saved
	regs.Rax = uint64(nr)
	regs.Orig_rax = ^uint64(0) // not inside a system call: no restart
	regs.Rdi, regs.Rsi, regs.Rdx = uint64(args[0]), uint64(args[1]), uint64(args[2])
	regs.R10, regs.R8, regs.R9 = uint64(args[3]), uint64(args[4]), uint64(args[5])
	if err := unix.PtraceSetRegs(t.pid, &regs); err != nil {
		return 0, fmt.Errorf("tracee: %s: setting the registers of pid %d: %w", name, t.pid, err)
	}
	if err := unix.PtraceSingleStep(t.pid); err != nil {
		return 0, fmt.Errorf("tracee: %s: stepping pid %d: %w", name, t.pid, err)
	}
	if err := t.waitTrap(name); err != nil {
		return 0, err
	}
	if err := unix.PtraceGetRegs(t.pid, &regs); err != nil {
		return 0, fmt.Errorf("tracee: %s: reading the registers of pid %d: %w", name, t.pid, err)
	}
	if regs.Rip != t.saved.Rip+uint64(len(syscallInsn)) {
		return 0, fmt.Errorf("tracee: %s: pid %d did not make the call (pc %#x)", name, t.pid, regs.Rip)
	}
	r := uintptr(regs.Rax)
	if err := plan.Errno(r); err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return r, nil
}

// waitTrap waits for the single step to end in a SIGTRAP stop.
func (t *Tracee) waitTrap(name string) error {
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(t.pid, &ws, unix.WALL, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		switch {
		case err != nil:
			return fmt.Errorf("tracee: %s: waiting for pid %d: %w", name, t.pid, err)
		case ws.Stopped() && ws.StopSignal() == syscall.SIGTRAP:
			return nil
		case ws.Stopped():
			return fmt.Errorf("tracee: %s: pid %d stopped by %v while starting", name, t.pid, ws.StopSignal())
		case ws.Signaled():
			return fmt.Errorf("tracee: %s: pid %d was killed by %v while starting", name, t.pid, ws.Signal())
		default:
			return fmt.Errorf("tracee: %s: pid %d exited with code %d while starting", name, t.pid, ws.ExitStatus())
		}
	}
}

// Detach puts the tracee's code and registers back as Attach found them
// and lets it run.
func (t *Tracee) Detach() error {
	if _, err := unix.PtracePokeText(t.pid, uintptr(t.saved.Rip), t.text[:]); err != nil {
		return fmt.Errorf("tracee: restoring the code of pid %d: %w", t.pid, err)
	}
	if err := unix.PtraceSetRegs(t.pid, &t.saved); err != nil {
		return fmt.Errorf("tracee: restoring the registers of pid %d: %w", t.pid, err)
	}
	if err := unix.PtraceDetach(t.pid); err != nil {
		return fmt.Errorf("tracee: detaching from pid %d: %w", t.pid, err)
	}
	return nil
}

// Park lets the tracee go into pause(2) and stay there: it never runs a
// single instruction of its program. A pause that returned (only a
// signal handler ends one, and a process that has run none of its code
// has none) would run into the replaced instruction and crash.
func (t *Tracee) Park() error {
	regs := t.saved
	regs.Rax = unix.SYS_PAUSE
	regs.Orig_rax = ^uint64(0)
	if err := unix.PtraceSetRegs(t.pid, &regs); err != nil {
		return fmt.Errorf("tracee: parking pid %d: %w", t.pid, err)
	}
	if err := unix.PtraceDetach(t.pid); err != nil {
		return fmt.Errorf("tracee: detaching from pid %d: %w", t.pid, err)
	}
	return nil
}
