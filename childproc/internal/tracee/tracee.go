// Package tracee makes system calls inside another process: a child that
// ptrace stopped right after its execve, before its first instruction
// (PTRACE_TRACEME, then the kernel's SIGTRAP on exec). That is how
// package childproc applies, to a worker in any language, the controls a
// process can only set on itself (no_new_privs, Landlock, seccomp,
// closing stray descriptors), at the cost of a few ptrace round trips
// instead of a second execve.
//
// Each call is injected the way debuggers do it: the two bytes at the
// stopped instruction pointer are replaced by a syscall instruction, the
// registers are loaded with the call and its arguments, the tracee makes
// one single step, and its result register is read back. Data the calls
// point to is copied below the stack pointer (the new program's stack is
// at least 128 KiB deep and unused yet). Detach puts the instruction and
// every register back, so the program starts exactly as the kernel left
// it.
//
// Only linux/amd64 has an injector (Supported); elsewhere childproc uses
// its re-exec trampoline instead.
package tracee

import (
	"errors"
	"fmt"

	"github.com/procpool/procpool/childproc/internal/plan"
)

// maxScratch is the most data a plan may copy below the stack pointer:
// a seccomp program of 4096 instructions is 32 KiB.
const maxScratch = 64 << 10

// scratchGap is left unused between the stack pointer and the data.
const scratchGap = 4096

// ErrUnsupported reports an architecture without an injector.
var ErrUnsupported = errors.New("tracee: no system call injector for this architecture")

// Run makes the plan's calls in t, in order, and stops at the first that
// fails.
func (t *Tracee) Run(p *plan.Plan) error {
	if p.Empty() {
		return nil
	}
	img, _, err := p.Image(0)
	if err != nil {
		return err
	}
	if len(img) > maxScratch {
		return fmt.Errorf("tracee: plan data of %d bytes exceeds %d", len(img), maxScratch)
	}
	base := (t.stackPointer() - scratchGap - uintptr(len(img))) &^ 15
	img, addrs, err := p.Image(base)
	if err != nil {
		return err
	}
	if len(img) > 0 {
		if err := t.write(base, img); err != nil {
			return err
		}
	}
	for i := range p.Steps {
		s := &p.Steps[i]
		args, err := s.Resolve(addrs)
		if err != nil {
			return err
		}
		if _, err := t.Syscall(s.Name, s.NR, args); err != nil {
			return err
		}
	}
	return nil
}
