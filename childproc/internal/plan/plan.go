// Package plan describes the system calls a new process makes on itself
// after its execve and before its first instruction: what a sandbox needs
// that can be applied to a process only from inside it (no_new_privs,
// Landlock, seccomp). A Plan is data; two appliers run it: the tracer
// injects each call into the stopped child (package tracee), and the
// re-exec trampoline makes them itself before it execs the worker
// (package trampoline).
//
// Arguments are plain values or the address of a blob: bytes the applier
// copies into the process first (a seccomp program, say). A blob may hold
// the address of another blob (Reloc), as struct sock_fprog holds its
// filter's.
package plan

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"
)

// Step is one system call.
type Step struct {
	// Name says what the call does, for errors ("seccomp", "landlock").
	Name string
	// NR is the system call number.
	NR uintptr
	// Args are its arguments; unused ones are zero.
	Args [6]Arg
}

// Arg is a system call argument: Val, or, if Blob is not zero, the
// address of Blobs[Blob-1] plus Val.
type Arg struct {
	Val  uintptr
	Blob int
}

// Val is a plain argument.
func Val(v uintptr) Arg { return Arg{Val: v} }

// Reloc asks for the address of Blobs[Target] to be written, in native
// byte order, at Blobs[Blob][Offset:].
type Reloc struct {
	Blob, Offset, Target int
}

// Plan is a list of system calls and the memory they point to.
type Plan struct {
	Steps  []Step
	Blobs  [][]byte
	Relocs []Reloc
}

// Blob adds b and returns an argument pointing at it.
func (p *Plan) Blob(b []byte) Arg {
	p.Blobs = append(p.Blobs, b)
	return Arg{Blob: len(p.Blobs)}
}

// Add appends a system call.
func (p *Plan) Add(name string, nr uintptr, args ...Arg) {
	s := Step{Name: name, NR: nr}
	copy(s.Args[:], args)
	p.Steps = append(p.Steps, s)
}

// Empty reports whether the plan has nothing to do.
func (p *Plan) Empty() bool { return p == nil || len(p.Steps) == 0 }

// Join returns a plan of the steps of each of ps in turn.
func Join(ps ...*Plan) *Plan {
	out := &Plan{}
	for _, p := range ps {
		if p == nil {
			continue
		}
		off := len(out.Blobs)
		for _, s := range p.Steps {
			for i := range s.Args {
				if s.Args[i].Blob != 0 {
					s.Args[i].Blob += off
				}
			}
			out.Steps = append(out.Steps, s)
		}
		for _, r := range p.Relocs {
			out.Relocs = append(out.Relocs, Reloc{Blob: r.Blob + off, Offset: r.Offset, Target: r.Target + off})
		}
		out.Blobs = append(out.Blobs, p.Blobs...)
	}
	return out
}

// StepError is the failure of one step of a plan.
type StepError struct {
	Step int    // its index
	Name string // its Name
	Err  error  // the errno
}

func (e *StepError) Error() string { return e.Name + ": " + e.Err.Error() }

// Unwrap returns the errno.
func (e *StepError) Unwrap() error { return e.Err }

// blobAlign is the alignment of each blob in an image.
const blobAlign = 16

// Image lays the blobs out one after the other from base, aligned, with
// the relocations applied, and returns the bytes to copy to base and each
// blob's address.
func (p *Plan) Image(base uintptr) ([]byte, []uintptr, error) {
	addrs := make([]uintptr, len(p.Blobs))
	size := 0
	for i, b := range p.Blobs {
		size = (size + blobAlign - 1) &^ (blobAlign - 1)
		addrs[i] = base + uintptr(size)
		size += len(b)
	}
	img := make([]byte, size)
	for i, b := range p.Blobs {
		copy(img[addrs[i]-base:], b)
	}
	for _, r := range p.Relocs {
		if r.Blob < 0 || r.Blob >= len(p.Blobs) || r.Target < 0 || r.Target >= len(p.Blobs) ||
			r.Offset < 0 || r.Offset+ptrSize > len(p.Blobs[r.Blob]) {
			return nil, nil, fmt.Errorf("plan: bad relocation %+v", r)
		}
		putPtr(img[addrs[r.Blob]-base+uintptr(r.Offset):], addrs[r.Target])
	}
	return img, addrs, nil
}

// Resolve returns the raw arguments of s, given the blobs' addresses.
func (s *Step) Resolve(addrs []uintptr) ([6]uintptr, error) {
	var out [6]uintptr
	for i, a := range s.Args {
		out[i] = a.Val
		if a.Blob != 0 {
			if a.Blob > len(addrs) {
				return out, fmt.Errorf("plan: %s: argument %d names blob %d of %d", s.Name, i, a.Blob, len(addrs))
			}
			out[i] += addrs[a.Blob-1]
		}
	}
	return out, nil
}

const ptrSize = int(unsafe.Sizeof(uintptr(0)))

func putPtr(b []byte, v uintptr) {
	if ptrSize == 8 {
		binary.NativeEndian.PutUint64(b, uint64(v))
	} else {
		binary.NativeEndian.PutUint32(b, uint32(v))
	}
}

// Errno turns the raw return of a system call into an error: values from
// -4095 to -1 are errnos.
func Errno(r uintptr) error {
	if n := int64(r); n < 0 && n >= -4095 {
		return errnoError(-n)
	}
	return nil
}

var errBadEncoding = errors.New("plan: bad encoding")
