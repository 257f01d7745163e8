//go:build linux

// Package sharedmem is the shared memory region through which a host and
// one worker pass large payloads: the sender copies a payload into memory
// both processes map and sends its place in a frame, instead of pushing its
// bytes through a pipe, which costs a copy into the kernel, a copy out of
// it and a system call per pipe-buffer's worth on each side.
//
// The host creates the region (Create), a memory file sealed against
// resizing, and passes it to the worker as file descriptor FD; the worker
// maps it (Map) once the host's hello announces its size. Its layout:
//
//	[0, 4096)               header: at offset 0, the number of responses the
//	                        host has consumed from the response area, a
//	                        native-endian uint64 the host updates atomically
//	[4096, 4096+A)          request area, A = (size-4096)/2 rounded down to
//	                        whole pages: the host allocates, the worker reads
//	[4096+A, size)          response area: the worker allocates, the host reads
//
// A request's memory is the host's again once it has read the response to
// that request (or the worker is gone). A response's memory is the
// worker's again once the host has counted it consumed; the host reads
// responses in the order the worker wrote them, so the worker frees its
// blocks in allocation order as the count grows.
//
// A payload that does not fit in the free part of its area travels in its
// frame: the region makes transfers cheaper, never possible or impossible.
package sharedmem

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FD is the worker's file descriptor of the region.
const FD = 5

// HeaderSize is the size of the header page at the start of the region.
const HeaderSize = 4096

// MinSize is the smallest region: the header and a page for each area.
const MinSize = HeaderSize + 2*pageSize

// DefaultSize is the region size the host uses unless told otherwise.
// Only the pages a payload has touched take memory.
const DefaultSize = 32 << 20

// MinPayload is the smallest payload worth moving through the region;
// smaller ones travel in their frame, where one write carries them.
const MinPayload = 64 << 10

const (
	// maxName keeps a memory file's name within the kernel's limit (249).
	maxName  = 200
	pageSize = 4096
	// align is the alignment of every block: a cache line.
	align = 64
)

// ErrClosed is returned by a Host whose region was closed.
var ErrClosed = errors.New("sharedmem: region closed")

// ErrBounds matches the error of a span that lies outside its area.
var ErrBounds = errors.New("sharedmem: span outside its area")

// layout returns the offsets and lengths of the two areas of a region of
// size bytes.
func layout(size int) (reqOff, reqLen, respOff, respLen int) {
	reqLen = (size - HeaderSize) / 2 / pageSize * pageSize
	return HeaderSize, reqLen, HeaderSize + reqLen, size - HeaderSize - reqLen
}

// span returns area[off-areaOff:][:n] if [off, off+n) lies in the area that
// starts at areaOff and has areaLen bytes.
func span(mem []byte, areaOff, areaLen int, off, n uint64, what string) ([]byte, error) {
	lo, hi := uint64(areaOff), uint64(areaOff+areaLen)
	if off < lo || off > hi || n > hi-off {
		return nil, fmt.Errorf("%w: %s [%d, +%d) is not within [%d, %d)", ErrBounds, what, off, n, lo, hi)
	}
	return mem[off : off+n : off+n], nil
}

// consumedCounter returns the header's count of consumed responses.
func consumedCounter(mem []byte) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&mem[0]))
}

// Host is the host's side of a region.
//
// Its methods are safe for concurrent use. Close unmaps the region only once
// no copy into or out of it is in progress, so that a caller still copying
// when the worker dies never touches unmapped memory.
type Host struct {
	mem                              []byte
	reqOff, reqLen, respOff, respLen int
	consumed                         *atomic.Uint64

	mu     sync.Mutex
	req    allocator // of the request area, by job id
	users  int       // copies in progress
	closed bool
	// held counts the request blocks, so that Release costs a small
	// payload's answer no lock.
	held atomic.Int64
}

// Create makes a region of size bytes (rounded up to whole pages, at least
// MinSize) for one worker and maps it. The returned file is to be passed to
// the worker as file descriptor FD and may be closed once the worker has
// started; the mapping outlives it. The file is sealed against shrinking and
// growing, so that a worker cannot make the host's accesses fault.
func Create(name string, size int) (*os.File, *Host, error) {
	size = max(MinSize, (size+pageSize-1)/pageSize*pageSize)
	if len(name) > maxName {
		name = name[:maxName]
	}
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, nil, fmt.Errorf("sharedmem: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:"+name)
	fail := func(what string, err error) (*os.File, *Host, error) {
		f.Close()
		return nil, nil, fmt.Errorf("sharedmem: %s: %w", what, err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		return fail("sizing the region", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_SEAL); err != nil {
		return fail("sealing the region", err)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail("mapping the region", err)
	}
	h := &Host{mem: mem, consumed: consumedCounter(mem)}
	h.reqOff, h.reqLen, h.respOff, h.respLen = layout(size)
	h.req.size = uint64(h.reqLen)
	return f, h, nil
}

// Size returns the region's size in bytes.
func (h *Host) Size() int { return len(h.mem) }

// Reserve reserves n bytes of the request area for the request of job id and
// returns their offset in the region and the memory to copy the payload
// into. The caller must call Copied once the copy is complete, and Release
// once the worker has answered the job. It reports false when the region is
// closed or has no room, and the payload must then travel in the frame.
func (h *Host) Reserve(id uint64, n int) (off uint64, dst []byte, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return 0, nil, false
	}
	o, ok := h.req.alloc(id, uint64(n))
	if !ok {
		return 0, nil, false
	}
	h.held.Add(1)
	h.users++
	off = uint64(h.reqOff) + o
	return off, h.mem[off : off+uint64(n) : off+uint64(n)], true
}

// Copied ends a copy that Reserve or Response began.
func (h *Host) Copied() {
	h.mu.Lock()
	h.users--
	h.unmapLocked()
	h.mu.Unlock()
}

// Release frees the request memory of job id, once the worker has answered
// it. It does nothing for a job that has none.
func (h *Host) Release(id uint64) {
	if h.held.Load() == 0 {
		return
	}
	h.mu.Lock()
	if h.req.free(id) {
		h.held.Add(-1)
	}
	h.mu.Unlock()
}

// Response returns the memory of a response payload of n bytes at offset
// off of the region, for the caller to copy out; it fails with ErrBounds if
// that lies outside the response area, and with ErrClosed once the region is
// closed. After a successful call the caller must call Consumed once it has
// copied the payload, even if it does not need it: the worker frees its
// response memory in order as the host consumes it.
func (h *Host) Response(off, n uint64) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	b, err := span(h.mem, h.respOff, h.respLen, off, n, "response")
	if err != nil {
		return nil, err
	}
	h.users++
	return b, nil
}

// Consumed ends a copy that Response began and gives the response's memory
// back to the worker.
func (h *Host) Consumed() {
	h.consumed.Add(1)
	h.Copied()
}

// Close makes later calls fail and unmaps the region once the copies in
// progress end. The worker may keep its mapping; the memory is freed when
// both are gone.
func (h *Host) Close() {
	h.mu.Lock()
	h.closed = true
	h.unmapLocked()
	h.mu.Unlock()
}

func (h *Host) unmapLocked() {
	if h.closed && h.users == 0 && h.mem != nil {
		_ = unix.Munmap(h.mem)
		h.mem = nil
	}
}

// Worker is the worker's side of a region. Request is safe for concurrent
// use; Reserve is not, and must be called by one goroutine at a time, in the
// order the responses are written.
type Worker struct {
	mem                              []byte
	reqOff, reqLen, respOff, respLen int
	consumed                         *atomic.Uint64

	resp     allocator // of the response area, by sequence number
	next     uint64    // sequence number of the next response block
	released uint64    // response blocks freed
}

// Map maps the region the host passed as file descriptor fd, of the size
// the host announced, for a worker. It fails if fd is not a regular file of
// at least that size. It leaves fd open: the mapping does not need it.
func Map(fd int, size uint64) (*Worker, error) {
	if size < MinSize || size > 1<<40 || size%pageSize != 0 {
		return nil, fmt.Errorf("sharedmem: region size %d is not a whole number of pages between %d and 2^40", size, MinSize)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("sharedmem: examining the region's file: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("sharedmem: file descriptor %d is not a memory file", fd)
	}
	if uint64(st.Size) < size {
		return nil, fmt.Errorf("sharedmem: the region's file has %d bytes, the host announced %d", st.Size, size)
	}
	mem, err := unix.Mmap(fd, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("sharedmem: mapping the region: %w", err)
	}
	w := &Worker{mem: mem, consumed: consumedCounter(mem)}
	w.reqOff, w.reqLen, w.respOff, w.respLen = layout(int(size))
	w.resp.size = uint64(w.respLen)
	return w, nil
}

// Size returns the region's size in bytes.
func (w *Worker) Size() int { return len(w.mem) }

// Request returns the memory of a request payload of n bytes at offset off
// of the region; it fails with ErrBounds if that lies outside the request
// area. The memory is the worker's until it answers the request.
func (w *Worker) Request(off, n uint64) ([]byte, error) {
	return span(w.mem, w.reqOff, w.reqLen, off, n, "request")
}

// Reserve reserves n bytes of the response area for the next response the
// worker writes and returns their offset in the region and the memory to
// copy the payload into. It reports false when the area has no room: the
// payload must then travel in the frame. A reservation must be followed by
// the response that names it, before the next reservation.
func (w *Worker) Reserve(n int) (off uint64, dst []byte, ok bool) {
	for c := w.consumed.Load(); w.released < c && w.released < w.next; w.released++ {
		w.resp.free(w.released)
	}
	o, ok := w.resp.alloc(w.next, uint64(n))
	if !ok {
		return 0, nil, false
	}
	w.next++
	off = uint64(w.respOff) + o
	return off, w.mem[off : off+uint64(n) : off+uint64(n)], true
}

// Close unmaps the region. No payload of it may be used afterwards.
func (w *Worker) Close() error {
	if w.mem == nil {
		return nil
	}
	err := unix.Munmap(w.mem)
	w.mem = nil
	return err
}
