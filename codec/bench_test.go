package codec

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

var benchSizes = []struct {
	name string
	n    int
}{{"64B", 64}, {"1KiB", 1 << 10}, {"1MiB", 1 << 20}}

// benchPayload returns a payload of about n bytes: raw bytes for Blob, and
// for Value an array of short strings and integers, the kind of value that
// makes the Writer's and Reader's walk over it do real work.
func benchPayload(b *testing.B, pk PayloadKind, n int) []byte {
	if pk == Blob {
		return pattern(n)
	}
	var items []any
	size := 1
	for i := 0; size < n; i++ {
		if i%2 == 0 {
			items = append(items, fmt.Sprintf("item-%06d", i))
			size += 12
		} else {
			items = append(items, i)
			size += 3
		}
	}
	p, err := msgpack.Marshal(items)
	require.NoError(b, err)
	return p
}

// BenchmarkRoundTrip measures one job's traffic through a reused Writer and
// Reader pair over an in-memory buffer: write the request, read it, write
// the response, read it. Bytes per op count both payloads.
func BenchmarkRoundTrip(b *testing.B) {
	for _, pk := range []PayloadKind{Blob, Value} {
		for _, sz := range benchSizes {
			b.Run(pk.String()+"/"+sz.name, func(b *testing.B) {
				payload := benchPayload(b, pk, sz.n)
				var buf bytes.Buffer
				w := NewWriter(&buf, 0)
				r := NewReader(&buf, 0)
				req := Message{Kind: KindRequest, JobType: "echo", Timeout: 30 * time.Second, PayloadKind: pk, Payload: payload}
				resp := Message{Kind: KindResponse, PayloadKind: pk, Payload: payload}
				var got Message
				b.SetBytes(int64(2 * len(payload)))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					req.ID = uint64(i)
					if err := w.Write(&req); err != nil {
						b.Fatal(err)
					}
					if err := r.Read(&got); err != nil {
						b.Fatal(err)
					}
					resp.ID = got.ID
					if err := w.Write(&resp); err != nil {
						b.Fatal(err)
					}
					if err := r.Read(&got); err != nil {
						b.Fatal(err)
					}
				}
				if got.ID != req.ID || len(got.Payload) != len(payload) {
					b.Fatalf("got id %d and %d bytes", got.ID, len(got.Payload))
				}
			})
		}
	}
}

// BenchmarkWrite and BenchmarkRead split the 1 KiB request's cost.
func BenchmarkWrite(b *testing.B) {
	for _, pk := range []PayloadKind{Blob, Value} {
		b.Run(pk.String()+"/1KiB", func(b *testing.B) {
			m := Message{Kind: KindRequest, ID: 1, JobType: "echo", PayloadKind: pk, Payload: benchPayload(b, pk, 1<<10)}
			var c countingWriter
			w := NewWriter(&c, 0)
			b.SetBytes(int64(len(m.Payload)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if err := w.Write(&m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRead(b *testing.B) {
	for _, pk := range []PayloadKind{Blob, Value} {
		b.Run(pk.String()+"/1KiB", func(b *testing.B) {
			m := Message{Kind: KindRequest, ID: 1, JobType: "echo", PayloadKind: pk, Payload: benchPayload(b, pk, 1<<10)}
			f := encodeFrame(b, &m, 0)
			br := bytes.NewReader(f)
			r := NewReader(br, 0)
			var got Message
			b.SetBytes(int64(len(m.Payload)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				br.Reset(f)
				if err := r.Read(&got); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBatchRoundTrip measures a batch of requests and the batch of
// their responses through a reused Writer and Reader pair, per item: the
// frame and decode cost that a batch spreads over its items. Compare with
// BenchmarkRoundTrip's one job per frame.
func BenchmarkBatchRoundTrip(b *testing.B) {
	for _, sz := range []struct {
		name  string
		n     int
		items int
	}{{"64B/x256", 64, 256}, {"1KiB/x64", 1 << 10, 64}, {"1KiB/x1", 1 << 10, 1}} {
		b.Run(sz.name, func(b *testing.B) {
			payload := pattern(sz.n)
			var buf bytes.Buffer
			w := NewWriter(&buf, 0)
			r := NewReader(&buf, 0)
			reqs, resps := NewBatch(w, KindBatchRequest), NewBatch(w, KindBatchResponse)
			req := Message{Kind: KindRequest, JobType: "echo", Timeout: 30 * time.Second, PayloadKind: Blob, Payload: payload}
			resp := Message{Kind: KindResponse, PayloadKind: Blob}
			var got Message
			b.SetBytes(int64(2 * sz.n))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += sz.items {
				for j := 0; j < sz.items; j++ {
					req.ID = uint64(i + j)
					if err := reqs.Add(&req); err != nil {
						b.Fatal(err)
					}
				}
				if err := reqs.Flush(); err != nil {
					b.Fatal(err)
				}
				if err := r.Read(&got); err != nil {
					b.Fatal(err)
				}
				for k := range got.Items {
					resp.ID, resp.Payload = got.Items[k].ID, got.Items[k].Payload
					if err := resps.Add(&resp); err != nil {
						b.Fatal(err)
					}
				}
				if err := resps.Flush(); err != nil {
					b.Fatal(err)
				}
				if err := r.Read(&got); err != nil {
					b.Fatal(err)
				}
			}
			if len(got.Items) != sz.items || len(got.Items[0].Payload) != sz.n {
				b.Fatalf("got %d items", len(got.Items))
			}
		})
	}
}
