//go:build unix

package worker

import (
	"fmt"
	"os"
	"syscall"
)

var errBrokenPipe error = syscall.EPIPE

const notStartedByHost = "a worker must be started by a procpool host, which passes its protocol pipes as fds 3 and 4"

// hostFiles returns the protocol pipes the host passed as fds 3 and 4,
// close-on-exec and non-blocking, so that reads can be interrupted.
func hostFiles() (in, out *os.File, err error) {
	for _, fd := range []int{3, 4} {
		var st syscall.Stat_t
		if err := syscall.Fstat(fd, &st); err != nil {
			return nil, nil, fmt.Errorf("worker: file descriptor %d is not open (%v): %s", fd, err, notStartedByHost)
		}
		// Without a host, fds 3 and 4 may be open all the same: the Go
		// runtime keeps cgroup files open there to track CPU quotas.
		if t := st.Mode & syscall.S_IFMT; t != syscall.S_IFIFO && t != syscall.S_IFSOCK {
			return nil, nil, fmt.Errorf("worker: file descriptor %d is not a pipe or a socket: %s", fd, notStartedByHost)
		}
		syscall.CloseOnExec(fd)
		if err := syscall.SetNonblock(fd, true); err != nil {
			return nil, nil, fmt.Errorf("worker: file descriptor %d: %w", fd, err)
		}
	}
	return os.NewFile(3, "procpool-host-in"), os.NewFile(4, "procpool-host-out"), nil
}
