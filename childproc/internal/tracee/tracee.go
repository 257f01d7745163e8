// Package tracee makes system calls inside another process: a child that
// ptrace stopped right after its execve, before its first instruction
// (PTRACE_TRACEME, then the kernel's SIGTRAP on exec). That is how
// package childproc applies, to a worker in any language, the controls a
// process can only set on itself (no_new_privs, Landlock, seccomp,
// closing stray descriptors), at the cost of a few ptrace round trips
// instead of a second execve.
//
// The calls are injected the way debuggers do it: a few bytes of code at
// the stopped instruction pointer are replaced by a small loop that makes
// the system calls of a table (batchCode), the registers point it at the
// table, the tracee runs to the loop's breakpoint, and the results are
// read back: one ptrace round trip for a whole plan. The table and the
// data the calls point to are copied below the stack pointer (the new
// program's stack is at least 128 KiB deep and unused yet). Detach puts
// the code and every register back, so the program starts exactly as the
// kernel left it.
//
// Only linux/amd64 has an injector (Supported); elsewhere childproc uses
// its re-exec trampoline instead.
package tracee

import (
	"encoding/binary"
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

// Run makes the plan's calls in t, in order, in one go, and stops at the
// first that fails, with a *plan.StepError naming it.
func (t *Tracee) Run(p *plan.Plan) error {
	if p.Empty() {
		return nil
	}
	img, _, err := p.Image(0)
	if err != nil {
		return err
	}
	table := len(p.Steps) * 8 * 8 // entries of eight words
	if table+len(img) > maxScratch {
		return fmt.Errorf("tracee: plan data of %d bytes exceeds %d", table+len(img), maxScratch)
	}
	tableAt := (t.stackPointer() - scratchGap - uintptr(table+len(img))) &^ 15
	base := tableAt + uintptr(table)
	img, addrs, err := p.Image(base)
	if err != nil {
		return err
	}
	data := make([]byte, table, table+len(img))
	for i := range p.Steps {
		args, err := p.Steps[i].Resolve(addrs)
		if err != nil {
			return err
		}
		e := data[i*64:]
		binary.NativeEndian.PutUint64(e, uint64(p.Steps[i].NR))
		for j, a := range args {
			binary.NativeEndian.PutUint64(e[8+8*j:], uint64(a))
		}
	}
	data = append(data, img...)
	if err := t.write(tableAt, data); err != nil {
		return err
	}
	i, err := t.batch(tableAt, len(p.Steps))
	if err != nil && i < len(p.Steps) {
		return &plan.StepError{Step: i, Name: p.Steps[i].Name, Err: err}
	}
	return err
}
