//go:build !amd64

package tracee

// Supported reports whether this architecture has an injector.
const Supported = false

// Tracee is not available on this architecture.
type Tracee struct{}

// Attach fails with ErrUnsupported.
func Attach(int) (*Tracee, error) { return nil, ErrUnsupported }

func (t *Tracee) stackPointer() uintptr                                { return 0 }
func (t *Tracee) write(uintptr, []byte) error                          { return ErrUnsupported }
func (t *Tracee) Detach() error                                        { return ErrUnsupported }
func (t *Tracee) Park() error                                          { return ErrUnsupported }
func (t *Tracee) Syscall(string, uintptr, [6]uintptr) (uintptr, error) { return 0, ErrUnsupported }
