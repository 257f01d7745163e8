//go:build !linux

package worker

import "errors"

var errNoRegion = errors.New("worker: shared memory regions need Linux")

// region stands in for the shared memory region, which only Linux hosts
// pass; no worker ever has one here.
type region struct{}

// minSharedPayload is the smallest result worth writing into the region.
const minSharedPayload = 64 << 10

func (*region) Request(off, n uint64) ([]byte, error) { return nil, errNoRegion }
func (*region) Reserve(n int) (uint64, []byte, bool)  { return 0, nil, false }
func (*region) Close() error                          { return nil }
func mapHostRegion(size uint64) (*region, error)      { return nil, errNoRegion }
