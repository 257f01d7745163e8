package actors

import (
	"fmt"
	"time"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/sharedmem"
)

// dispatchBatch registers the items of Map job j still undelivered and
// sends them: in batch request frames when the worker negotiated batches,
// else as a request each. It reports false when the worker takes no more
// jobs.
func (l *link) dispatchBatch(j *Job) bool {
	b := j.batch
	items := b.pending()
	if len(items) == 0 {
		return false
	}
	if b.oneByOne.Load() {
		items = items[:1]
	}
	// Read from j before it enters the table: see dispatch.
	budget, meta, attempt := l.budget(j), l.meta(j), j.attempt
	b.running.Store(int32(len(items))) // the previous dispatch ended at 0
	ids, ok := l.table.addItems(j, l, items)
	if !ok {
		return false
	}
	if l.timeout > 0 {
		own := append([]uint64(nil), ids...)
		j.timer.Store(time.AfterFunc(l.timeout, func() { l.expireBatch(j, own, attempt) }))
	}
	l.r.wake()
	batched, batchedIDs := items, ids
	if len(items) > 1 && l.features.Has(codec.FeatureBatch) {
		if l.shared.Load() {
			batched, batchedIDs = l.sendLarge(j, items, ids, budget, meta)
		}
		if len(batched) > 1 {
			l.w.enqueue(outgoing{kind: codec.KindBatchRequest, job: j, timeout: budget, pkind: j.Kind, meta: meta, items: batched, ids: batchedIDs})
			return true
		}
	}
	for k, item := range batched {
		l.w.enqueue(outgoing{kind: codec.KindRequest, id: batchedIDs[k], job: j, timeout: budget, pkind: j.Kind, payload: b.payloads[item], meta: meta})
	}
	return true
}

// sendLarge sends as requests of their own the items whose payloads go
// through the worker's shared memory region (sharedmem.MinPayload and up):
// a batch frame saves nothing on them, and carried in it they would cross
// the pipe and be copied out of the frame. It returns the other items, and
// their ids, for the batch.
func (l *link) sendLarge(j *Job, items []int, ids []uint64, budget time.Duration, meta requestMeta) ([]int, []uint64) {
	payloads := j.batch.payloads
	large := 0
	for _, item := range items {
		if len(payloads[item]) >= sharedmem.MinPayload {
			large++
		}
	}
	if large == 0 {
		return items, ids
	}
	small := make([]int, 0, len(items)-large)
	smallIDs := make([]uint64, 0, len(items)-large)
	for k, item := range items {
		if len(payloads[item]) < sharedmem.MinPayload {
			small, smallIDs = append(small, item), append(smallIDs, ids[k])
			continue
		}
		l.w.enqueue(outgoing{kind: codec.KindRequest, id: ids[k], job: j, timeout: budget, pkind: j.Kind, payload: payloads[item], meta: meta})
	}
	return small, smallIDs
}

// expireBatch fails a Map job whose dispatch ran past JobTimeout: every
// item left gets the timeout, and the worker a cancel for each.
func (l *link) expireBatch(j *Job, ids []uint64, attempt int) {
	var held []uint64
	for _, id := range ids {
		if l.table.holds(id, j) {
			held = append(held, id)
		}
	}
	if len(held) == 0 {
		return
	}
	j.resolve(nil, fmt.Errorf("%w: a batch of %d items ran longer than %v on worker pid %d (attempt %d)",
		ErrJobTimeout, len(ids), l.timeout, l.pid, attempt))
	for _, id := range held {
		l.w.enqueue(outgoing{kind: codec.KindCancel, id: id})
	}
	l.owner.overran(held[0])
}
