package childproc

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// pipe is one pipe: the host end is non-blocking (so it works with the
// runtime poller: deadlines, Close unblocking a pending Read or Write), the
// child end is blocking, as programs expect of their standard descriptors.
// Both have O_CLOEXEC; exec.Cmd clears it on the copies it hands the child.
type pipe struct {
	host, child *os.File
}

// newPipe makes a pipe whose host end is the read end when hostReads.
func newPipe(name string, hostReads bool) (pipe, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return pipe{}, fmt.Errorf("childproc: creating the %s pipe: %w", name, err)
	}
	hostFD, childFD := fds[1], fds[0]
	if hostReads {
		hostFD, childFD = fds[0], fds[1]
	}
	if err := unix.SetNonblock(hostFD, true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return pipe{}, fmt.Errorf("childproc: creating the %s pipe: %w", name, err)
	}
	return pipe{
		host:  os.NewFile(uintptr(hostFD), "childproc-"+name+"-host"),
		child: os.NewFile(uintptr(childFD), "childproc-"+name+"-child"),
	}, nil
}

// pipeMaxSize returns /proc/sys/fs/pipe-max-size, read once; 0 if
// unknown.
var pipeMaxSize = sync.OnceValue(func() int {
	b, err := os.ReadFile("/proc/sys/fs/pipe-max-size")
	if err != nil {
		return 0
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return n
})

// setPipeSize asks for a capacity of want bytes (clamped to the system
// maximum) on the pipe of f. EPERM (the user's pipe budget is used up) is
// not an error: the pipe keeps its capacity.
func setPipeSize(f *os.File, want int) error {
	if max := pipeMaxSize(); max > 0 && want > max {
		want = max
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var opErr error
	if err := rc.Control(func(fd uintptr) {
		_, opErr = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, want)
	}); err != nil {
		return err
	}
	if errors.Is(opErr, unix.EPERM) {
		return nil
	}
	return opErr
}

// PipeCapacity returns the capacity in bytes (F_GETPIPE_SZ) of the pipe
// that f is an end of.
func PipeCapacity(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var opErr error
	if err := rc.Control(func(fd uintptr) {
		n, opErr = unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0)
	}); err != nil {
		return 0, err
	}
	return n, opErr
}

// unread returns the number of bytes waiting in the pipe of f (FIONREAD).
func unread(f *os.File) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var opErr error
	if err := rc.Control(func(fd uintptr) {
		n, opErr = unix.IoctlGetInt(int(fd), unix.TIOCINQ) // FIONREAD
	}); err != nil {
		return 0, err
	}
	return n, opErr
}
