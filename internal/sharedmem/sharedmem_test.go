//go:build linux

package sharedmem

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestAllocatorFirstFit(t *testing.T) {
	a := allocator{size: 1024}
	off := func(id, n uint64) uint64 {
		t.Helper()
		o, ok := a.alloc(id, n)
		require.True(t, ok, "alloc(%d, %d) with %v", id, n, a.blocks)
		return o
	}
	assert.Equal(t, uint64(0), off(1, 100))   // [0,128)
	assert.Equal(t, uint64(128), off(2, 64))  // [128,192)
	assert.Equal(t, uint64(192), off(3, 500)) // [192,704)
	_, ok := a.alloc(4, 400)
	assert.False(t, ok, "only 320 bytes are left")
	a.free(2)
	assert.Equal(t, uint64(128), off(5, 1), "the lowest hole that fits")
	a.free(1)
	assert.Equal(t, uint64(704), off(6, 200), "a 128-byte hole does not fit 200")
	assert.Equal(t, uint64(0), off(7, 128), "the hole at the start fits exactly")
	a.free(7)
	a.free(5)
	a.free(3)
	a.free(6)
	a.free(6) // twice: nothing
	assert.Empty(t, a.blocks)
	assert.Equal(t, uint64(0), off(8, 1024), "the whole area once empty")
	_, ok = a.alloc(9, 1)
	assert.False(t, ok)
	a.free(8)
	_, ok = a.alloc(10, 1025)
	assert.False(t, ok, "larger than the area")
	assert.Equal(t, uint64(0), off(11, 0), "an empty payload still gets a block")
	require.Len(t, a.blocks, 1)
	assert.Equal(t, uint64(align), a.blocks[0].end-a.blocks[0].off)
}

func newPair(t *testing.T, size int) (*Host, *Worker) {
	t.Helper()
	f, h, err := Create("test", size)
	require.NoError(t, err)
	defer f.Close()
	w, err := Map(int(f.Fd()), uint64(h.Size()))
	require.NoError(t, err)
	t.Cleanup(func() {
		h.Close()
		assert.NoError(t, w.Close())
	})
	return h, w
}

func TestRequestAndResponseCrossTheRegion(t *testing.T) {
	h, w := newPair(t, 1<<20)
	assert.Equal(t, 1<<20, h.Size())
	assert.Equal(t, 1<<20, w.Size())

	payload := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	off, dst, ok := h.Reserve(1, len(payload))
	require.True(t, ok)
	copy(dst, payload)
	h.Copied()
	got, err := w.Request(off, uint64(len(payload)))
	require.NoError(t, err)
	assert.Equal(t, payload, got, "the worker sees the host's bytes")

	result := bytes.Repeat([]byte{0xa5}, 100<<10)
	roff, rdst, ok := w.Reserve(len(result))
	require.True(t, ok)
	copy(rdst, result)
	back, err := h.Response(roff, uint64(len(result)))
	require.NoError(t, err)
	assert.Equal(t, result, back, "the host sees the worker's bytes")
	h.Consumed()
	h.Release(1)

	_, err = h.Response(off, 1)
	assert.ErrorIs(t, err, ErrBounds, "a request's place is not a response's")
	_, err = w.Request(roff, 1)
	assert.ErrorIs(t, err, ErrBounds, "a response's place is not a request's")
	_, err = h.Response(uint64(h.Size())-10, 11)
	assert.ErrorIs(t, err, ErrBounds, "past the end")
	_, err = h.Response(uint64(h.Size())-10, ^uint64(0))
	assert.ErrorIs(t, err, ErrBounds, "a length that wraps around")
	_, err = w.Request(0, 8)
	assert.ErrorIs(t, err, ErrBounds, "the header")
}

func TestHostReleasesRequestsInAnyOrder(t *testing.T) {
	h, _ := newPair(t, MinSize+2*pageSize) // request area: 2 pages
	area := h.reqLen
	o1, _, ok := h.Reserve(1, area/2)
	require.True(t, ok)
	h.Copied()
	o2, _, ok := h.Reserve(2, area/2)
	require.True(t, ok)
	h.Copied()
	_, _, ok = h.Reserve(3, 1)
	assert.False(t, ok, "full")
	h.Release(2)
	o3, _, ok := h.Reserve(3, area/2)
	require.True(t, ok, "the second half is free again")
	h.Copied()
	assert.Equal(t, o2, o3)
	h.Release(1)
	o4, _, ok := h.Reserve(4, 100)
	require.True(t, ok)
	h.Copied()
	assert.Equal(t, o1, o4, "first fit: the lowest free place")
	h.Release(99) // unknown: nothing
	assert.EqualValues(t, 2, h.held.Load(), "blocks 3 and 4")
	h.Release(3)
	h.Release(4)
	h.Release(4)
	assert.Zero(t, h.held.Load())
	assert.Empty(t, h.req.blocks)
}

func TestWorkerReusesResponsesOnceConsumed(t *testing.T) {
	h, w := newPair(t, MinSize+2*pageSize) // response area: 2 pages
	area := w.respLen
	var offs []uint64
	for range 2 {
		off, _, ok := w.Reserve(area / 2)
		require.True(t, ok)
		offs = append(offs, off)
	}
	_, _, ok := w.Reserve(1)
	assert.False(t, ok, "full until the host consumes")
	_, err := h.Response(offs[0], uint64(area/2))
	require.NoError(t, err)
	h.Consumed()
	off, _, ok := w.Reserve(area / 2)
	require.True(t, ok, "the first block is free again")
	assert.Equal(t, offs[0], off)
	_, _, ok = w.Reserve(1)
	assert.False(t, ok)
}

func TestCloseWaitsForCopies(t *testing.T) {
	f, h, err := Create("test", MinSize)
	require.NoError(t, err)
	f.Close()
	_, dst, ok := h.Reserve(1, 100)
	require.True(t, ok)
	h.Close()
	copy(dst, "still mapped") // would fault if Close had unmapped
	_, _, ok = h.Reserve(2, 100)
	assert.False(t, ok, "closed")
	_, err = h.Response(uint64(h.respOff), 1)
	assert.ErrorIs(t, err, ErrClosed)
	h.Copied()
	assert.Nil(t, h.mem, "unmapped after the last copy")
	h.Close() // twice: nothing
}

func TestRegionIsSealed(t *testing.T) {
	f, h, err := Create("test", MinSize)
	require.NoError(t, err)
	defer h.Close()
	defer f.Close()
	err = unix.Ftruncate(int(f.Fd()), 0)
	assert.ErrorIs(t, err, unix.EPERM, "a worker must not shrink the region under the host")
	err = unix.Ftruncate(int(f.Fd()), 1<<30)
	assert.ErrorIs(t, err, unix.EPERM)
}

func TestMapRefusesWhatIsNotTheRegion(t *testing.T) {
	f, h, err := Create("test", MinSize)
	require.NoError(t, err)
	defer h.Close()
	defer f.Close()
	_, err = Map(int(f.Fd()), MinSize+pageSize)
	assert.ErrorContains(t, err, "announced")
	_, err = Map(int(f.Fd()), MinSize+1)
	assert.ErrorContains(t, err, "whole number of pages")
	_, err = Map(int(f.Fd()), pageSize)
	assert.ErrorContains(t, err, "whole number of pages")

	r, wp, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer wp.Close()
	_, err = Map(int(r.Fd()), MinSize)
	assert.ErrorContains(t, err, "not a memory file")

	r.Close()
	_, err = Map(int(r.Fd()), MinSize)
	assert.Error(t, err)
	assert.False(t, errors.Is(err, ErrBounds))
}
