//go:build linux

package worker

import (
	"golang.org/x/sys/unix"

	"github.com/procpool/procpool/internal/sharedmem"
)

// region is the shared memory region a host may pass for large payloads.
type region = sharedmem.Worker

// minSharedPayload is the smallest result worth writing into the region.
const minSharedPayload = sharedmem.MinPayload

// mapHostRegion maps the region of size bytes the host passed as file
// descriptor 5, then closes the descriptor, so that processes the handlers
// start do not inherit it; the mapping stays. When fd 5 is not a memory
// file of that size, it is not the host's region: mapHostRegion fails and
// leaves it alone.
func mapHostRegion(size uint64) (*region, error) {
	w, err := sharedmem.Map(sharedmem.FD, size)
	if err != nil {
		return nil, err
	}
	_ = unix.Close(sharedmem.FD)
	return w, nil
}
