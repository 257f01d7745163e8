//go:build linux

package sharedmem

import "slices"

// allocator places blocks in an area of size bytes, first fit from the
// start: the lowest free range that is large enough. Keeping to the lowest
// addresses keeps the pages in use, and so the region's resident memory, as
// few as the load allows. Blocks are few (one per payload in flight), so a
// sorted slice serves.
type allocator struct {
	size   uint64
	blocks []block // by offset
}

type block struct {
	id       uint64
	off, end uint64
}

// alloc places a block of n bytes (rounded up to align) for id and returns
// its offset in the area.
func (a *allocator) alloc(id, n uint64) (uint64, bool) {
	if n > a.size {
		return 0, false
	}
	n = max(align, (n+align-1)&^(align-1))
	at, i := uint64(0), 0
	for ; i < len(a.blocks); i++ {
		if a.blocks[i].off-at >= n {
			break
		}
		at = a.blocks[i].end
	}
	if i == len(a.blocks) && a.size-at < n {
		return 0, false
	}
	a.blocks = slices.Insert(a.blocks, i, block{id: id, off: at, end: at + n})
	return at, true
}

// free frees the block of id, if any, and reports whether there was one.
func (a *allocator) free(id uint64) bool {
	for i := range a.blocks {
		if a.blocks[i].id == id {
			a.blocks = slices.Delete(a.blocks, i, i+1)
			return true
		}
	}
	return false
}
