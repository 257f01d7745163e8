package conformance

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/procpool/procpool/codec"
)

// checkSharedItems: with "shareditems", the small payloads of a batch's
// items lie end to end in one block of the shared memory region, at any
// offset (no alignment) and of any length; the worker answers each as if
// it had come in the frame, blobs and values alike, and an empty payload
// still comes in the frame.
func checkSharedItems(t *testing.T, w Worker) {
	rw, ready, shm := startRawFeatures(t, w)
	skipUnless(t, ready, codec.FeatureBatch)
	skipUnless(t, ready, codec.FeatureSharedItems)
	if shm == nil {
		t.Skip("the worker is run without a shared memory region (Worker.SharedMemory)")
	}
	rec := record{Name: "s", Count: 2, Ratio: 0.5, Data: []byte{3}, Tags: []string{"u"}, Attrs: map[string]int64{"k": 1}}
	value := mustMarshal(t, rec)
	var payloads [][]byte
	for i := range 40 {
		payloads = append(payloads, []byte(fmt.Sprintf("item %d%s", i, bytes.Repeat([]byte{'.'}, i%7))))
	}
	total := len(value)
	for _, p := range payloads {
		total += len(p)
	}
	const key = 1 << 62 // no id of this check's
	off, dst, ok := shm.Reserve(key, total+1)
	if !ok {
		t.Fatal("no room in the shared memory region")
	}
	at := 1 // an odd offset: no alignment is promised
	place := func(p []byte) codec.Span {
		copy(dst[at:], p)
		s := codec.Span{Offset: off + uint64(at), Length: uint64(len(p))}
		at += len(p)
		return s
	}
	var items []codec.Message
	ids := []uint64{}
	for i, p := range payloads {
		id := uint64(100 + i)
		items = append(items, codec.Message{Kind: codec.KindRequest, ID: id, JobType: "echo", PayloadKind: codec.Blob, Shared: true, Span: place(p)})
		ids = append(ids, id)
	}
	items = append(items,
		codec.Message{Kind: codec.KindRequest, ID: 200, JobType: "record", PayloadKind: codec.Value, Shared: true, Span: place(value)},
		codec.Message{Kind: codec.KindRequest, ID: 201, JobType: "echo", PayloadKind: codec.Blob})
	shm.Copied()
	ids = append(ids, 200, 201)
	rw.send(codec.Message{Kind: codec.KindBatchRequest, Items: items})
	got, batches, _ := rw.answersShared(shm, ids...)
	for i, p := range payloads {
		if m := got[uint64(100+i)]; m.ErrCode != "" || !bytes.Equal(m.Payload, p) {
			t.Errorf("echo of item %d, its %d bytes in the shared block: %s %q %q", i, len(p), m.ErrCode, m.ErrMessage, m.Payload)
		}
	}
	var back record
	if m := got[200]; m.ErrCode != "" || m.PayloadKind != codec.Value || msgpack.Unmarshal(m.Payload, &back) != nil || back.Name != "hello, s" {
		t.Errorf("record with its value in the shared block: %s %s %+v", m.ErrCode, m.ErrMessage, back)
	}
	if m := got[201]; m.ErrCode != "" || len(m.Payload) != 0 {
		t.Errorf("an empty echo beside the shared items: %+v", m)
	}
	shm.Release(key)
	t.Logf("%d answers in %d batch responses", len(ids), batches)
	rw.closeInput()
	if info := rw.exit(nil); !info.Success() {
		t.Errorf("exit after the host went away: %s", info)
	}
}
