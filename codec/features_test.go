package codec

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

const (
	testTraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	testTraceState  = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
)

// featureWireCases are the wire cases of the optional features: the
// handshake's features, a request's meta, batches, chunks and credits.
func featureWireCases(t testing.TB) []wireCase {
	value := mustMarshal(t, []any{"v", 2})
	names := []any{"meta", "batch", "stream", "shareditems"}
	return []wireCase{
		{
			name: "hello features, no region",
			in:   Message{Kind: KindHello, Version: Version, MaxFrame: 1 << 20, Features: AllFeatures},
			want: Message{Kind: KindHello, Version: Version, MaxFrame: 1 << 20, Features: AllFeatures},
			wire: []any{uint64(1), uint64(1), uint64(1 << 20), uint64(0), names},
		},
		{
			name: "hello features and region",
			in:   Message{Kind: KindHello, Version: Version, MaxFrame: 1 << 20, SharedSize: 1 << 24, Features: FeatureBatch},
			want: Message{Kind: KindHello, Version: Version, MaxFrame: 1 << 20, SharedSize: 1 << 24, Features: FeatureBatch},
			wire: []any{uint64(1), uint64(1), uint64(1 << 20), uint64(1 << 24), []any{"batch"}},
		},
		{
			name: "ready features",
			in:   Message{Kind: KindReady, Version: Version, MaxFrame: 1, PID: 3, JobTypes: []string{"a"}, Features: FeatureMeta | FeatureStream},
			want: Message{Kind: KindReady, Version: Version, MaxFrame: 1, PID: 3, JobTypes: []string{"a"}, Features: FeatureMeta | FeatureStream},
			wire: []any{uint64(2), uint64(1), uint64(1), uint64(3), []any{"a"}, uint64(0), []any{"meta", "stream"}},
		},
		{
			name: "ready features unknown to the codec are not sent",
			in:   Message{Kind: KindReady, Version: Version, MaxFrame: 1, PID: 3, SharedSize: 8192, Features: FeatureBatch | 1<<20},
			want: Message{Kind: KindReady, Version: Version, MaxFrame: 1, PID: 3, SharedSize: 8192, Features: FeatureBatch},
			wire: []any{uint64(2), uint64(1), uint64(1), uint64(3), []any{}, uint64(8192), []any{"batch"}},
		},
		{
			name: "request meta",
			in: Message{Kind: KindRequest, ID: 9, JobType: "echo", Timeout: time.Second, Attempt: 3,
				TraceParent: testTraceParent, TraceState: testTraceState, Credit: 16, PayloadKind: Blob, Payload: []byte("x")},
			want: Message{Kind: KindRequest, ID: 9, JobType: "echo", Timeout: time.Second, Attempt: 3,
				TraceParent: testTraceParent, TraceState: testTraceState, Credit: 16, PayloadKind: Blob, Payload: []byte("x")},
			wire: []any{uint64(3), uint64(9), "echo", uint64(1000),
				map[string]any{"attempt": uint64(3), "traceparent": testTraceParent, "tracestate": testTraceState, "credit": uint64(16)},
				uint64(0), []byte("x")},
		},
		{
			name: "request first attempt, trace only",
			in:   Message{Kind: KindRequest, ID: 1, JobType: "e", Attempt: 1, TraceParent: testTraceParent, PayloadKind: Value, Payload: value},
			want: Message{Kind: KindRequest, ID: 1, JobType: "e", TraceParent: testTraceParent, PayloadKind: Value, Payload: value},
			wire: []any{uint64(3), uint64(1), "e", uint64(0), map[string]any{"traceparent": testTraceParent}, uint64(1), []any{"v", uint64(2)}},
		},
		{
			name: "request attempt 1 has no meta",
			in:   Message{Kind: KindRequest, ID: 1, JobType: "e", Attempt: 1, PayloadKind: Blob},
			want: Message{Kind: KindRequest, ID: 1, JobType: "e", PayloadKind: Blob},
			wire: []any{uint64(3), uint64(1), "e", uint64(0), uint64(0), []byte{}},
		},
		{
			name: "batch request",
			in: Message{Kind: KindBatchRequest, ID: 5, Items: []Message{
				{Kind: KindRequest, ID: 1, JobType: "echo", PayloadKind: Blob, Payload: []byte("a")},
				{Kind: KindRequest, ID: 2, JobType: "typed", Timeout: 2 * time.Millisecond, PayloadKind: Value, Payload: value, Attempt: 2},
				{Kind: KindRequest, ID: 3, JobType: "echo", PayloadKind: Blob, Shared: true, Span: Span{Offset: 4096, Length: 10}},
			}},
			want: Message{Kind: KindBatchRequest, Items: []Message{
				{Kind: KindRequest, ID: 1, JobType: "echo", PayloadKind: Blob, Payload: []byte("a")},
				{Kind: KindRequest, ID: 2, JobType: "typed", Timeout: 2 * time.Millisecond, PayloadKind: Value, Payload: value, Attempt: 2},
				{Kind: KindRequest, ID: 3, JobType: "echo", PayloadKind: Blob, Shared: true, Span: Span{Offset: 4096, Length: 10}},
			}},
			wire: []any{uint64(9), []any{
				[]any{uint64(3), uint64(1), "echo", uint64(0), uint64(0), []byte("a")},
				[]any{uint64(3), uint64(2), "typed", uint64(2), map[string]any{"attempt": uint64(2)}, uint64(1), []any{"v", uint64(2)}},
				[]any{uint64(3), uint64(3), "echo", uint64(0), uint64(2), []any{uint64(4096), uint64(10)}},
			}},
		},
		{
			name: "batch response",
			in: Message{Kind: KindBatchResponse, Items: []Message{
				{Kind: KindResponse, ID: 2, PayloadKind: Value, Payload: value},
				{Kind: KindResponse, ID: 1, ErrCode: CodeCancelled, ErrMessage: "no", PayloadKind: Blob},
			}},
			want: Message{Kind: KindBatchResponse, Items: []Message{
				{Kind: KindResponse, ID: 2, PayloadKind: Value, Payload: value},
				{Kind: KindResponse, ID: 1, ErrCode: CodeCancelled, ErrMessage: "no", PayloadKind: Blob},
			}},
			wire: []any{uint64(10), []any{
				[]any{uint64(4), uint64(2), "", "", uint64(1), []any{"v", uint64(2)}},
				[]any{uint64(4), uint64(1), "cancelled", "no", uint64(0), []byte{}},
			}},
		},
		{
			name: "chunk blob",
			in:   Message{Kind: KindChunk, ID: math.MaxUint64, PayloadKind: Blob, Payload: []byte("part"), JobType: "ignored"},
			want: Message{Kind: KindChunk, ID: math.MaxUint64, PayloadKind: Blob, Payload: []byte("part")},
			wire: []any{uint64(11), uint64(math.MaxUint64), uint64(0), []byte("part")},
		},
		{
			name: "chunk shared value",
			in:   Message{Kind: KindChunk, ID: 4, PayloadKind: Value, Shared: true, Span: Span{Offset: 1 << 24, Length: 1 << 16}},
			want: Message{Kind: KindChunk, ID: 4, PayloadKind: Value, Shared: true, Span: Span{Offset: 1 << 24, Length: 1 << 16}},
			wire: []any{uint64(11), uint64(4), uint64(3), []any{uint64(1 << 24), uint64(1 << 16)}},
		},
		{
			name: "credit",
			in:   Message{Kind: KindCredit, ID: 7, Credit: math.MaxUint32},
			want: Message{Kind: KindCredit, ID: 7, Credit: math.MaxUint32},
			wire: []any{uint64(12), uint64(7), uint64(math.MaxUint32)},
		},
	}
}

// featureMalformedBodies are bodies of the features' forms that a Reader
// must refuse.
func featureMalformedBodies() map[string][]byte {
	item := []byte{0x96, 0x03, 0x01, 0xa1, 'j', 0x00, 0x00, 0xc4, 0x00} // [3, 1, "j", 0, 0, b""]
	return map[string][]byte{
		"features a map":            {0x95, 0x01, 0x01, 0x01, 0x00, 0x80},
		"feature an integer":        {0x95, 0x01, 0x01, 0x01, 0x00, 0x91, 0x01},
		"features 2^32":             {0x95, 0x01, 0x01, 0x01, 0x00, 0xdd, 0xff, 0xff, 0xff, 0xff},
		"shared size nil":           {0x95, 0x01, 0x01, 0x01, 0xc0, 0x90},
		"meta an array":             {0x97, 0x03, 0x01, 0xa1, 'j', 0x00, 0x90, 0x00, 0xc4, 0x00},
		"meta attempt a string":     append([]byte{0x97, 0x03, 0x01, 0xa1, 'j', 0x00, 0x81, 0xa7, 'a', 't', 't', 'e', 'm', 'p', 't', 0xa1, '1'}, 0x00, 0xc4, 0x00),
		"meta attempt over uint32":  append([]byte{0x97, 0x03, 0x01, 0xa1, 'j', 0x00, 0x81, 0xa7, 'a', 't', 't', 'e', 'm', 'p', 't', 0xcf, 0, 0, 0, 1, 0, 0, 0, 0}, 0x00, 0xc4, 0x00),
		"meta credit negative":      append([]byte{0x97, 0x03, 0x01, 0xa1, 'j', 0x00, 0x81, 0xa6, 'c', 'r', 'e', 'd', 'i', 't', 0xff}, 0x00, 0xc4, 0x00),
		"meta key twice":            append([]byte{0x97, 0x03, 0x01, 0xa1, 'j', 0x00, 0x82, 0xa6, 'c', 'r', 'e', 'd', 'i', 't', 0x01, 0xa6, 'c', 'r', 'e', 'd', 'i', 't', 0x02}, 0x00, 0xc4, 0x00),
		"meta key an integer":       {0x97, 0x03, 0x01, 0xa1, 'j', 0x00, 0x81, 0x01, 0x01, 0x00, 0xc4, 0x00},
		"meta unknown value 0xc1":   {0x97, 0x03, 0x01, 0xa1, 'j', 0x00, 0x81, 0xa1, 'z', 0xc1, 0x00, 0xc4, 0x00},
		"meta unknown value deep":   append(append([]byte{0x97, 0x03, 0x01, 0xa1, 'j', 0x00, 0x81, 0xa1, 'z'}, nested(maxValueDepth+1)...), 0x00, 0xc4, 0x00),
		"meta map 2^32":             {0x97, 0x03, 0x01, 0xa1, 'j', 0x00, 0xdf, 0xff, 0xff, 0xff, 0xff, 0x00, 0xc4, 0x00},
		"meta traceparent an int":   append([]byte{0x97, 0x03, 0x01, 0xa1, 'j', 0x00, 0x81, 0xab}, append([]byte("traceparent"), 0x01, 0x00, 0xc4, 0x00)...),
		"batch empty":               {0x92, 0x09, 0x90},
		"batch items nil":           {0x92, 0x09, 0xc0},
		"batch 3 elements":          append(append([]byte{0x93, 0x09, 0x91}, item...), 0x00),
		"batch 1025 items":          append([]byte{0x92, 0x09, 0xdc, 0x04, 0x01}, bytes.Repeat(item, 1025)...),
		"batch items 2^32":          {0x92, 0x0a, 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01},
		"batch of a response":       {0x92, 0x09, 0x91, 0x96, 0x04, 0x01, 0xa0, 0xa0, 0x00, 0xc4, 0x00},
		"batch response of request": append([]byte{0x92, 0x0a, 0x91}, item...),
		"batch in a batch":          append([]byte{0x92, 0x09, 0x91, 0x92, 0x09, 0x91}, item...),
		"batch short of its items":  append([]byte{0x92, 0x09, 0x92}, item...),
		"batch item malformed":      {0x92, 0x09, 0x91, 0x96, 0x03, 0x01, 0xa1, 'j', 0x00, 0x00, 0x01},
		"batch a ping item":         {0x92, 0x09, 0x91, 0x92, 0x06, 0x01},
		"chunk 3 elements":          {0x93, 0x0b, 0x01, 0x00},
		"chunk payload kind 4":      {0x94, 0x0b, 0x01, 0x04, 0xc4, 0x00},
		"chunk value missing":       {0x94, 0x0b, 0x01, 0x01},
		"chunk span 1 element":      {0x94, 0x0b, 0x01, 0x02, 0x91, 0x01},
		"credit over uint32":        {0x93, 0x0c, 0x01, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0},
		"credit negative":           {0x93, 0x0c, 0x01, 0xff},
		"credit 2 elements":         {0x92, 0x0c, 0x01},
	}
}

func TestFeatures(t *testing.T) {
	assert.Equal(t, "none", Features(0).String())
	assert.Equal(t, "meta,batch,stream,shareditems", AllFeatures.String())
	assert.Equal(t, "batch", (FeatureBatch | 1<<30).String())
	for _, f := range []Features{FeatureMeta, FeatureBatch, FeatureStream, FeatureSharedItems} {
		assert.Equal(t, f, ParseFeature(f.String()))
	}
	assert.Zero(t, ParseFeature("telepathy"))
	assert.True(t, AllFeatures.Has(FeatureBatch|FeatureMeta))
	assert.False(t, FeatureBatch.Has(FeatureBatch|FeatureMeta))
}

// TestHandshakeForms: without features, hello and ready are the base
// protocol's bytes; with them, SharedSize is sent, 0 if need be, before
// them. A Reader reads every form; it ignores feature names it does not
// know, and takes nil for no features.
func TestHandshakeForms(t *testing.T) {
	for _, tc := range []struct {
		m    Message
		body []byte
	}{
		{Message{Kind: KindHello, Version: 1, MaxFrame: 16}, []byte{0x93, 0x01, 0x01, 0x10}},
		{Message{Kind: KindHello, Version: 1, MaxFrame: 16, SharedSize: 1}, []byte{0x94, 0x01, 0x01, 0x10, 0x01}},
		{Message{Kind: KindHello, Version: 1, MaxFrame: 16, Features: FeatureStream}, []byte{0x95, 0x01, 0x01, 0x10, 0x00, 0x91, 0xa6, 's', 't', 'r', 'e', 'a', 'm'}},
		{Message{Kind: KindReady, Version: 1, MaxFrame: 16, PID: 2}, []byte{0x95, 0x02, 0x01, 0x10, 0x02, 0x90}},
		{Message{Kind: KindReady, Version: 1, MaxFrame: 16, PID: 2, SharedSize: 1}, []byte{0x96, 0x02, 0x01, 0x10, 0x02, 0x90, 0x01}},
		{Message{Kind: KindReady, Version: 1, MaxFrame: 16, PID: 2, Features: FeatureMeta}, []byte{0x97, 0x02, 0x01, 0x10, 0x02, 0x90, 0x00, 0x91, 0xa4, 'm', 'e', 't', 'a'}},
	} {
		f := encodeFrame(t, &tc.m, 0)
		assert.Equal(t, tc.body, f[HeaderSize:], "%+v", tc.m)
		var got Message
		require.NoError(t, Decode(tc.body, &got))
		assert.Equal(t, normalize(tc.m), normalize(got))
	}

	var m Message
	body := []byte{0x95, 0x01, 0x01, 0x10, 0x00, 0x93, 0xa9, 't', 'e', 'l', 'e', 'p', 'a', 't', 'h', 'y', 0xa5, 'b', 'a', 't', 'c', 'h', 0xc4, 0x04, 'm', 'e', 't', 'a'}
	require.NoError(t, Decode(body, &m))
	assert.Equal(t, FeatureBatch|FeatureMeta, m.Features, "unknown names ignored, bin read as str")
	require.NoError(t, Decode([]byte{0x95, 0x01, 0x01, 0x10, 0x00, 0xc0}, &m))
	assert.Zero(t, m.Features, "nil: no features")
	require.NoError(t, Decode([]byte{0x97, 0x02, 0x01, 0x10, 0x02, 0x90, 0x00, 0x90}, &m))
	assert.Zero(t, m.Features, "an empty list")
	assert.Equal(t, KindReady, m.Kind)
}

func TestRequestMeta(t *testing.T) {
	// Unknown keys are skipped whatever their value; nil meta is empty.
	body := []byte{0x97, 0x03, 0x01, 0xa1, 'j', 0x00,
		0x83, 0xa1, 'z', 0x92, 0x81, 0xa1, 'k', 0xc0, 0x01, // "z": [{"k": nil}, 1]
		0xa6, 'c', 'r', 'e', 'd', 'i', 't', 0x05,
		0xa7, 'a', 't', 't', 'e', 'm', 'p', 't', 0xd0, 0x02, // int8 2
		0x00, 0xc4, 0x01, 'p'}
	var m Message
	require.NoError(t, Decode(body, &m))
	assert.Equal(t, Message{Kind: KindRequest, ID: 1, JobType: "j", Credit: 5, Attempt: 2, PayloadKind: Blob, Payload: []byte("p")}, m)
	require.NoError(t, Decode([]byte{0x97, 0x03, 0x01, 0xa1, 'j', 0x00, 0xc0, 0x00, 0xc4, 0x00}, &m))
	assert.Equal(t, Message{Kind: KindRequest, ID: 1, JobType: "j", PayloadKind: Blob}, normalize(m))
	// A zero meta is not sent: the base protocol's request.
	f := encodeFrame(t, &Message{Kind: KindRequest, ID: 1, JobType: "j", Attempt: 1}, 0)
	assert.Equal(t, byte(0x96), f[HeaderSize])
}

// TestBatchHeaders: up to 15 items the items' array is a fixarray, from 16
// on an array16; the body length is exact either way.
func TestBatchHeaders(t *testing.T) {
	for _, n := range []int{1, 2, 15, 16, 17, 300, MaxBatch} {
		var buf bytes.Buffer
		w := NewWriter(&buf, 0)
		b := NewBatch(w, KindBatchResponse)
		for i := range n {
			require.NoError(t, b.Add(&Message{Kind: KindResponse, ID: uint64(i), PayloadKind: Blob, Payload: []byte{byte(i)}}))
		}
		size := b.Size()
		require.Equal(t, n, b.Len())
		require.NoError(t, b.Flush())
		assert.Zero(t, b.Len())
		f := buf.Bytes()
		require.Equal(t, size, len(f)-HeaderSize)
		require.Equal(t, uint32(size), binary.BigEndian.Uint32(f))
		if n <= 15 {
			assert.Equal(t, []byte{0x92, 0x0a, 0x90 | byte(n)}, f[4:7])
		} else {
			assert.Equal(t, []byte{0x92, 0x0a, 0xdc, byte(n >> 8), byte(n)}, f[4:9])
		}
		var got Message
		r := NewReader(&buf, 0)
		require.NoError(t, r.Read(&got))
		require.Len(t, got.Items, n)
		for i, it := range got.Items {
			require.Equal(t, uint64(i), it.ID)
			require.Equal(t, []byte{byte(i)}, it.Payload)
		}
		require.ErrorIs(t, r.Read(&got), io.EOF)
	}
	assert.Panics(t, func() { NewBatch(NewWriter(io.Discard, 0), KindRequest) })
}

// TestBatchLimits: a batch fills up to exactly the frame limit or MaxBatch
// items; what does not fit is refused, adding nothing, as ErrBatchFull when
// it would fit alone and ErrFrameTooLarge when not.
func TestBatchLimits(t *testing.T) {
	item := func(id uint64, n int) *Message {
		return &Message{Kind: KindRequest, ID: id, JobType: "j", PayloadKind: Blob, Payload: bytes.Repeat([]byte{'x'}, n)}
	}
	const limit = 1000
	var c countingWriter
	w := NewWriter(&c, limit)
	b := NewBatch(w, KindBatchRequest)
	require.NoError(t, b.Add(item(1, 400)))
	require.NoError(t, b.Add(item(2, 400)))
	// The largest third item that fits: the frame then fills the limit
	// exactly (bin8 payloads: no header size jump near the limit).
	fill := 300
	for ; fill >= 0; fill-- {
		if b.Add(item(3, fill)) == nil {
			break
		}
	}
	require.Equal(t, 3, b.Len())
	b.Reset()
	require.NoError(t, b.Add(item(1, 400)))
	require.NoError(t, b.Add(item(2, 400)))
	err := b.Add(item(3, fill+1))
	require.ErrorIs(t, err, ErrBatchFull)
	require.NotErrorIs(t, err, ErrFrameTooLarge)
	require.Equal(t, 2, b.Len())
	require.NoError(t, b.Add(item(3, fill)))
	require.Equal(t, limit, b.Size(), "the frame fills the limit exactly")
	require.ErrorIs(t, b.Add(item(4, 0)), ErrBatchFull)
	require.Zero(t, c.calls, "nothing written before Flush")
	require.NoError(t, b.Flush())
	require.Equal(t, 1, c.calls)
	require.Equal(t, HeaderSize+limit, c.n)

	err = b.Add(item(5, limit))
	require.ErrorIs(t, err, ErrFrameTooLarge, "too large even alone")
	require.NotErrorIs(t, err, ErrBatchFull)
	require.Zero(t, b.Len())
	require.Error(t, b.Add(&Message{Kind: KindResponse}), "a request batch holds requests")
	require.ErrorIs(t, b.Add(&Message{Kind: KindRequest, PayloadKind: Value, Payload: []byte{0xc1}}), ErrMalformed)
	require.Zero(t, b.Len())

	// MaxBatch items at most.
	w.SetMaxFrame(DefaultMaxFrame)
	for i := range MaxBatch {
		require.NoError(t, b.Add(item(uint64(i), 0)))
	}
	require.ErrorIs(t, b.Add(item(0, 0)), ErrBatchFull)
	b.Reset()
	require.Zero(t, b.Len())
	calls := c.calls
	require.NoError(t, b.Flush(), "an empty batch writes nothing")
	require.Equal(t, calls, c.calls)

	// Writer.Write of a batch too large for the limit writes nothing.
	w.SetMaxFrame(limit)
	big := Message{Kind: KindBatchRequest, Items: []Message{*item(1, 600), *item(2, 600)}}
	require.ErrorIs(t, w.Write(&big), ErrFrameTooLarge)
	require.Equal(t, calls, c.calls)
	require.ErrorIs(t, w.Write(&Message{Kind: KindBatchRequest, Items: make([]Message, MaxBatch+1)}), ErrMalformed)
}

// TestBatchLargePayloads: payloads over 64 KiB leave from their own slices,
// between the pieces of the Batch's buffer; the stream reads back whole.
func TestBatchLargePayloads(t *testing.T) {
	a, b2 := pattern(200<<10), bytes.Repeat([]byte{9}, 70<<10)
	items := []Message{
		{Kind: KindResponse, ID: 1, PayloadKind: Blob, Payload: a},
		{Kind: KindResponse, ID: 2, PayloadKind: Blob, Payload: []byte("small")},
		{Kind: KindResponse, ID: 3, ErrCode: CodeHandler, ErrMessage: strings.Repeat("e", 300), PayloadKind: Blob},
		{Kind: KindResponse, ID: 4, PayloadKind: Value, Payload: mustMarshal(t, b2)},
	}
	var buf bytes.Buffer
	var c countingWriter
	w := NewWriter(io.MultiWriter(&buf, &c), 0)
	require.NoError(t, w.Write(&Message{Kind: KindBatchResponse, Items: items}))
	assert.Equal(t, 4, c.calls, "buffer, payload, buffer, payload, and nothing after the last payload")
	var got Message
	r := NewReader(&buf, 0)
	require.NoError(t, r.Read(&got))
	assert.True(t, r.Owned())
	require.Len(t, got.Items, 4)
	for i := range items {
		assert.Equal(t, normalize(items[i]), normalize(got.Items[i]), "item %d", i)
	}
}

// TestBatchItemsReused: a Reader reuses a Message's Items, and each item
// is overwritten whole.
func TestBatchItemsReused(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 0)
	require.NoError(t, w.Write(&Message{Kind: KindBatchRequest, Items: []Message{
		{Kind: KindRequest, ID: 1, JobType: "a", Attempt: 4, TraceParent: testTraceParent, Credit: 2, PayloadKind: Blob, Payload: []byte("1")},
		{Kind: KindRequest, ID: 2, JobType: "b", PayloadKind: Blob, Shared: true, Span: Span{Offset: 1, Length: 2}},
	}}))
	require.NoError(t, w.Write(&Message{Kind: KindBatchRequest, Items: []Message{
		{Kind: KindRequest, ID: 3, JobType: "c", PayloadKind: Blob},
	}}))
	require.NoError(t, w.Write(&Message{Kind: KindPing, ID: 4}))
	r := NewReader(&buf, 0)
	var m Message
	require.NoError(t, r.Read(&m))
	require.Len(t, m.Items, 2)
	first := &m.Items[0]
	require.NoError(t, r.Read(&m))
	require.Len(t, m.Items, 1)
	assert.Same(t, first, &m.Items[0], "the items' memory is reused")
	assert.Equal(t, Message{Kind: KindRequest, ID: 3, JobType: "c", PayloadKind: Blob}, normalize(m.Items[0]))
	require.NoError(t, r.Read(&m))
	assert.Empty(t, m.Items)
	assert.Equal(t, KindPing, m.Kind)
}

// TestBatchRoundTripAllocations: a batch of requests and the batch of their
// responses, written and read with reused values, allocate nothing.
func TestBatchRoundTripAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	var buf bytes.Buffer
	w := NewWriter(&buf, 0)
	r := NewReader(&buf, 0)
	reqs := NewBatch(w, KindBatchRequest)
	resps := NewBatch(w, KindBatchResponse)
	payload := pattern(64)
	var got Message
	var resp Message
	step := func() {
		for i := range 64 {
			_ = reqs.Add(&Message{Kind: KindRequest, ID: uint64(i), JobType: "sha512", Timeout: time.Second, PayloadKind: Blob, Payload: payload})
		}
		_ = reqs.Flush()
		_ = r.Read(&got)
		for i := range got.Items {
			resp = Message{Kind: KindResponse, ID: got.Items[i].ID, PayloadKind: Blob, Payload: got.Items[i].Payload}
			_ = resps.Add(&resp)
		}
		_ = resps.Flush()
		_ = r.Read(&got)
	}
	step()
	allocs := testing.AllocsPerRun(100, step)
	assert.Zero(t, allocs)
	require.Len(t, got.Items, 64)
	assert.Equal(t, KindBatchResponse, got.Kind)
	assert.Equal(t, payload, got.Items[63].Payload)

	// A streamed job's traffic: chunks and credits.
	chunk := Message{Kind: KindChunk, ID: 1, PayloadKind: Blob, Payload: payload}
	credit := Message{Kind: KindCredit, ID: 1, Credit: 1}
	stream := func() {
		_ = w.Write(&chunk)
		_ = r.Read(&got)
		_ = w.Write(&credit)
		_ = r.Read(&got)
	}
	stream()
	assert.Zero(t, testing.AllocsPerRun(100, stream))
	assert.Equal(t, KindCredit, got.Kind)
}

// TestMetaStringsDoNotAlias: the trace context is copied out of the frame.
func TestMetaStringsDoNotAlias(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 0)
	require.NoError(t, w.Write(&Message{Kind: KindRequest, ID: 1, JobType: "j", TraceParent: testTraceParent, TraceState: testTraceState}))
	require.NoError(t, w.Write(&Message{Kind: KindRequest, ID: 2, JobType: "j", TraceParent: strings.Repeat("X", len(testTraceParent)), PayloadKind: Blob, Payload: make([]byte, 200)}))
	r := NewReader(&buf, 0)
	var a, b Message
	require.NoError(t, r.Read(&a))
	require.NoError(t, r.Read(&b))
	assert.Equal(t, testTraceParent, a.TraceParent)
	assert.Equal(t, testTraceState, a.TraceState)
}

// The generic decoding of a batch frame, as another implementation sees it.
func TestBatchIsPlainMsgpack(t *testing.T) {
	f := encodeFrame(t, &Message{Kind: KindBatchRequest, Items: []Message{
		{Kind: KindRequest, ID: 1, JobType: "a", PayloadKind: Blob, Payload: []byte("x")},
	}}, 0)
	var v []any
	require.NoError(t, msgpack.Unmarshal(f[HeaderSize:], &v))
	assert.Equal(t, []any{uint64(9), []any{[]any{uint64(3), uint64(1), "a", uint64(0), uint64(0), []byte("x")}}}, generic(v))
}
