package tracee

import (
	"errors"
	"fmt"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/procpool/procpool/childproc/internal/plan"
)

// Supported reports whether this architecture has an injector.
const Supported = true

// batchCode is written over the tracee's code at its instruction pointer.
// It runs a table of system calls, one entry of eight words per call
// (number, six arguments, result), rbx pointing at the first and r12
// counting them, and stops at the first that fails or after the last:
//
//	loop: mov rax, [rbx]; mov rdi, [rbx+8]; mov rsi, [rbx+16]
//	      mov rdx, [rbx+24]; mov r10, [rbx+32]; mov r8, [rbx+40]
//	      mov r9, [rbx+48]
//	      syscall                   ; at batchSyscall
//	      mov [rbx+56], rax
//	      cmp rax, -4095
//	      jae done                  ; an errno: stop
//	      add rbx, 64
//	      dec r12
//	      jnz loop
//	done: int3                      ; at batchDone: the tracer's SIGTRAP
//
// A single injected call jumps straight to its syscall instruction.
var batchCode = []byte{
	0x48, 0x8b, 0x03,
	0x48, 0x8b, 0x7b, 0x08,
	0x48, 0x8b, 0x73, 0x10,
	0x48, 0x8b, 0x53, 0x18,
	0x4c, 0x8b, 0x53, 0x20,
	0x4c, 0x8b, 0x43, 0x28,
	0x4c, 0x8b, 0x4b, 0x30,
	0x0f, 0x05,
	0x48, 0x89, 0x43, 0x38,
	0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff,
	0x73, 0x09,
	0x48, 0x83, 0xc3, 0x40,
	0x49, 0xff, 0xcc,
	0x75, 0xce,
	0xcc,
}

// Offsets in batchCode, and the size of a table entry.
const (
	batchSyscall = 27
	batchDone    = 50
	entryWords   = 8
)

// Tracee is a stopped child the caller traces, with its code at its
// instruction pointer replaced by batchCode until Detach or Park. Its
// methods must be called from the tracer's thread.
type Tracee struct {
	pid   int
	saved unix.PtraceRegs
	text  [56]byte // the original code at saved.Rip
	mem   int      // /proc/<pid>/mem, open from Attach to Detach or Park
}

// Attach prepares pid, which must be in a ptrace-stop of the calling
// thread (the SIGTRAP after its execve), for Syscall and Run. On error pid
// is left as it was.
func Attach(pid int) (*Tracee, error) {
	t := &Tracee{pid: pid}
	if err := unix.PtraceGetRegs(pid, &t.saved); err != nil {
		return nil, fmt.Errorf("tracee: reading the registers of pid %d: %w", pid, err)
	}
	// /proc/<pid>/mem writes to read-only code as ptrace does, in one
	// call rather than one per word.
	mem, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/mem", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("tracee: opening the memory of pid %d: %w", pid, err)
	}
	t.mem = mem
	at := int64(t.saved.Rip)
	if n, err := unix.Pread(mem, t.text[:], at); err != nil || n != len(t.text) {
		unix.Close(mem)
		return nil, fmt.Errorf("tracee: reading the code of pid %d: %d bytes, %v", pid, n, err)
	}
	code := t.text
	copy(code[:], batchCode)
	if n, err := unix.Pwrite(mem, code[:], at); err != nil || n != len(code) {
		_, _ = unix.Pwrite(mem, t.text[:], at) // put back what may have been written
		unix.Close(mem)
		return nil, fmt.Errorf("tracee: writing the code of pid %d: %d bytes, %v", pid, n, err)
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
	regs.Rip = t.saved.Rip + batchSyscall
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
	if regs.Rip != t.saved.Rip+batchSyscall+2 {
		return 0, fmt.Errorf("tracee: %s: pid %d did not make the call (pc %#x)", name, t.pid, regs.Rip)
	}
	r := uintptr(regs.Rax)
	if err := plan.Errno(r); err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return r, nil
}

// batch runs n table entries at addr (already copied in) in one go, and
// returns the index of the first that failed, and its errno, or n, nil.
func (t *Tracee) batch(addr uintptr, n int) (int, error) {
	regs := t.saved
	regs.Rip = t.saved.Rip
	regs.Orig_rax = ^uint64(0) // not inside a system call: no restart
	regs.Rbx, regs.R12 = uint64(addr), uint64(n)
	if err := unix.PtraceSetRegs(t.pid, &regs); err != nil {
		return 0, fmt.Errorf("tracee: setting the registers of pid %d: %w", t.pid, err)
	}
	if err := unix.PtraceCont(t.pid, 0); err != nil {
		return 0, fmt.Errorf("tracee: resuming pid %d: %w", t.pid, err)
	}
	if err := t.waitTrap("batch"); err != nil {
		return 0, err
	}
	if err := unix.PtraceGetRegs(t.pid, &regs); err != nil {
		return 0, fmt.Errorf("tracee: reading the registers of pid %d: %w", t.pid, err)
	}
	if regs.Rip != t.saved.Rip+batchDone+1 {
		return 0, fmt.Errorf("tracee: pid %d stopped out of its batch (pc %#x)", t.pid, regs.Rip)
	}
	done := int((regs.Rbx - uint64(addr)) / (8 * entryWords))
	if done >= n {
		return n, nil
	}
	return done, plan.Errno(uintptr(regs.Rax))
}

// waitTrap waits for the tracee to stop with SIGTRAP (single step, int3).
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

// Close releases what Attach opened, if Detach or Park has not: call it
// when giving up on a tracee (after killing it, say). It may be called
// more than once.
func (t *Tracee) Close() {
	if t.mem >= 0 {
		unix.Close(t.mem)
		t.mem = -1
	}
}

// Detach puts the tracee's code and registers back as Attach found them
// and lets it run.
func (t *Tracee) Detach() error {
	n, err := unix.Pwrite(t.mem, t.text[:], int64(t.saved.Rip))
	t.Close()
	if err != nil || n != len(t.text) {
		return fmt.Errorf("tracee: restoring the code of pid %d: %d bytes, %v", t.pid, n, err)
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
	t.Close()
	regs := t.saved
	regs.Rip = t.saved.Rip + batchSyscall
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
