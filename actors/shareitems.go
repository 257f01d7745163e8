package actors

import (
	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/sharedmem"
)

// itemBlock is the block of a worker's shared memory region that holds the
// payloads of one batch request's items (codec.FeatureSharedItems). The
// rule: the block is reserved and filled before the frame naming it is
// written, and released once the dispatch it was made for has no item
// left unanswered, never sooner, so that the worker reads every payload in
// place for as long as the protocol lets it (a request's memory is the
// worker's until its response is read). The last item of the dispatch to
// leave the in-flight table releases it (linkHooks.itemAnswered), before
// the job's slot is freed for its next dispatch; a block whose worker died
// goes with its region.
type itemBlock struct {
	shm *sharedmem.Host
	key uint64 // the block's key in shm: itemBlockKey of its first item's id
}

// itemBlockKey is the key of the block of a batch whose first item has
// the given id: the id with its top bit set, a key no request has (the
// table counts ids from 1), so that no item's own release frees it.
func itemBlockKey(firstID uint64) uint64 { return firstID | 1<<63 }

// release frees the block.
func (b *itemBlock) release() { b.shm.Release(b.key) }

// shareItems moves the payloads of batch request o into one block of the
// worker's shared memory region, when the worker negotiated
// codec.FeatureSharedItems and the region has room: the frame then
// carries each item's place instead of its bytes. An item that may not
// travel in a frame to this worker stays out of the block, for the codec
// to refuse as before; empty payloads stay in the frame.
func (l *link) shareItems(o *outgoing) {
	if !l.features.Has(codec.FeatureSharedItems) || !l.shared.Load() {
		return
	}
	b := o.job.batch
	limit := l.peerLimit.Load()
	total := 0
	for _, item := range o.items {
		if n := len(b.payloads[item]); n > 0 && requestFits(l.jobType, n, limit) {
			total += n
		}
	}
	if total == 0 {
		return
	}
	key := itemBlockKey(o.ids[0])
	off, dst, ok := l.shm.Reserve(key, total)
	if !ok {
		return // no room: the payloads travel in the frame
	}
	o.spans = make([]codec.Span, len(o.items))
	at, placed := 0, 0
	for k, item := range o.items {
		p := b.payloads[item]
		if len(p) == 0 || !requestFits(l.jobType, len(p), limit) {
			continue
		}
		copy(dst[at:], p)
		o.spans[k] = codec.Span{Offset: off + uint64(at), Length: uint64(len(p))}
		at += len(p)
		placed++
	}
	l.shm.Copied()
	l.counters.sharedRequests.Add(uint64(placed))
	b.block.Store(&itemBlock{shm: l.shm, key: key})
	if b.running.Load() == 0 {
		// Every item left the table meanwhile (its worker died): nobody
		// else will release the block.
		b.releaseBlock()
	}
}

// releaseBlock releases the block of the batch's current dispatch, if it
// has one and no one released it yet.
func (b *batch) releaseBlock() {
	if blk := b.block.Swap(nil); blk != nil {
		blk.release()
	}
}
