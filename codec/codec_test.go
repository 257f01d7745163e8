package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// wireCase is a message, what reading it back must give (only the fields
// its kind carries), and its body as generic msgpack elements, which is what
// docs/protocol.md specifies.
type wireCase struct {
	name string
	in   Message
	want Message
	wire []any
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	require.NoError(t, err)
	return b
}

func wireCases(t testing.TB) []wireCase {
	value := mustMarshal(t, map[string]any{"n": 1, "s": "x"})
	return append([]wireCase{
		{
			name: "hello",
			in:   Message{Kind: KindHello, Version: Version, MaxFrame: 1 << 20, ID: 99, JobType: "ignored"},
			want: Message{Kind: KindHello, Version: Version, MaxFrame: 1 << 20},
			wire: []any{uint64(1), uint64(1), uint64(1 << 20)},
		},
		{
			name: "hello max",
			in:   Message{Kind: KindHello, Version: math.MaxUint32, MaxFrame: math.MaxUint32},
			want: Message{Kind: KindHello, Version: math.MaxUint32, MaxFrame: math.MaxUint32},
			wire: []any{uint64(1), uint64(math.MaxUint32), uint64(math.MaxUint32)},
		},
		{
			name: "ready",
			in: Message{Kind: KindReady, Version: Version, MaxFrame: DefaultMaxFrame, PID: 4242,
				JobTypes: []string{"echo", "sha512", "ünïcødé"}, Payload: []byte("ignored")},
			want: Message{Kind: KindReady, Version: Version, MaxFrame: DefaultMaxFrame, PID: 4242,
				JobTypes: []string{"echo", "sha512", "ünïcødé"}},
			wire: []any{uint64(2), uint64(1), uint64(DefaultMaxFrame), uint64(4242),
				[]any{"echo", "sha512", "ünïcødé"}},
		},
		{
			name: "hello shared",
			in:   Message{Kind: KindHello, Version: Version, MaxFrame: 1 << 20, SharedSize: 16 << 20},
			want: Message{Kind: KindHello, Version: Version, MaxFrame: 1 << 20, SharedSize: 16 << 20},
			wire: []any{uint64(1), uint64(1), uint64(1 << 20), uint64(16 << 20)},
		},
		{
			name: "ready shared",
			in:   Message{Kind: KindReady, Version: Version, MaxFrame: 1, PID: 7, JobTypes: []string{"a"}, SharedSize: math.MaxUint64},
			want: Message{Kind: KindReady, Version: Version, MaxFrame: 1, PID: 7, JobTypes: []string{"a"}, SharedSize: math.MaxUint64},
			wire: []any{uint64(2), uint64(1), uint64(1), uint64(7), []any{"a"}, uint64(math.MaxUint64)},
		},
		{
			name: "request shared blob",
			in: Message{Kind: KindRequest, ID: 5, JobType: "sha", PayloadKind: Blob, Shared: true,
				Span: Span{Offset: 4096, Length: 1 << 20}, Payload: []byte("ignored")},
			want: Message{Kind: KindRequest, ID: 5, JobType: "sha", PayloadKind: Blob, Shared: true,
				Span: Span{Offset: 4096, Length: 1 << 20}},
			wire: []any{uint64(3), uint64(5), "sha", uint64(0), uint64(2), []any{uint64(4096), uint64(1 << 20)}},
		},
		{
			name: "response shared value",
			in: Message{Kind: KindResponse, ID: 6, PayloadKind: Value, Shared: true,
				Span: Span{Offset: math.MaxUint64, Length: 0}},
			want: Message{Kind: KindResponse, ID: 6, PayloadKind: Value, Shared: true,
				Span: Span{Offset: math.MaxUint64, Length: 0}},
			wire: []any{uint64(4), uint64(6), "", "", uint64(3), []any{uint64(math.MaxUint64), uint64(0)}},
		},
		{
			name: "ready no job types, negative pid",
			in:   Message{Kind: KindReady, Version: 7, MaxFrame: 1, PID: -1},
			want: Message{Kind: KindReady, Version: 7, MaxFrame: 1, PID: -1},
			wire: []any{uint64(2), uint64(7), uint64(1), int64(-1), []any{}},
		},
		{
			name: "request blob",
			in: Message{Kind: KindRequest, ID: 42, JobType: "echo", Timeout: 1500 * time.Millisecond,
				PayloadKind: Blob, Payload: []byte("hello"), ErrCode: "ignored", Grace: time.Second},
			want: Message{Kind: KindRequest, ID: 42, JobType: "echo", Timeout: 1500 * time.Millisecond,
				PayloadKind: Blob, Payload: []byte("hello")},
			wire: []any{uint64(3), uint64(42), "echo", uint64(1500), uint64(0), []byte("hello")},
		},
		{
			name: "request value, max id, no timeout",
			in: Message{Kind: KindRequest, ID: math.MaxUint64, JobType: "typed",
				PayloadKind: Value, Payload: value},
			want: Message{Kind: KindRequest, ID: math.MaxUint64, JobType: "typed",
				PayloadKind: Value, Payload: value},
			wire: []any{uint64(3), uint64(math.MaxUint64), "typed", uint64(0), uint64(1),
				map[string]any{"n": uint64(1), "s": "x"}},
		},
		{
			name: "response ok blob",
			in:   Message{Kind: KindResponse, ID: 7, PayloadKind: Blob, Payload: []byte{0, 1, 2, 0xff}},
			want: Message{Kind: KindResponse, ID: 7, PayloadKind: Blob, Payload: []byte{0, 1, 2, 0xff}},
			wire: []any{uint64(4), uint64(7), "", "", uint64(0), []byte{0, 1, 2, 0xff}},
		},
		{
			name: "response error value",
			in: Message{Kind: KindResponse, ID: 8, ErrCode: CodeHandler, ErrMessage: "it broke: ✗",
				PayloadKind: Value, Payload: []byte{0xc0}},
			want: Message{Kind: KindResponse, ID: 8, ErrCode: CodeHandler, ErrMessage: "it broke: ✗",
				PayloadKind: Value, Payload: []byte{0xc0}},
			wire: []any{uint64(4), uint64(8), "handler", "it broke: ✗", uint64(1), nil},
		},
		{
			name: "cancel",
			in:   Message{Kind: KindCancel, ID: 1 << 40, Version: 3},
			want: Message{Kind: KindCancel, ID: 1 << 40},
			wire: []any{uint64(5), uint64(1 << 40)},
		},
		{
			name: "ping",
			in:   Message{Kind: KindPing, ID: 3},
			want: Message{Kind: KindPing, ID: 3},
			wire: []any{uint64(6), uint64(3)},
		},
		{
			name: "pong",
			in:   Message{Kind: KindPong, ID: 3},
			want: Message{Kind: KindPong, ID: 3},
			wire: []any{uint64(7), uint64(3)},
		},
		{
			name: "shutdown",
			in:   Message{Kind: KindShutdown, Grace: 5 * time.Second, ID: 5},
			want: Message{Kind: KindShutdown, Grace: 5 * time.Second},
			wire: []any{uint64(8), uint64(5000)},
		},
	}, featureWireCases(t)...)
}

// generic turns a msgpack.Unmarshal result into comparable values: integers
// become uint64 (int64 when negative), maps and arrays are walked.
func generic(v any) any {
	switch x := v.(type) {
	case int8:
		return generic(int64(x))
	case int16:
		return generic(int64(x))
	case int32:
		return generic(int64(x))
	case int:
		return generic(int64(x))
	case int64:
		if x >= 0 {
			return uint64(x)
		}
		return x
	case uint8:
		return uint64(x)
	case uint16:
		return uint64(x)
	case uint32:
		return uint64(x)
	case uint:
		return uint64(x)
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = generic(x[i])
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = generic(e)
		}
		return out
	}
	return v
}

func TestRoundTripEveryKind(t *testing.T) {
	for _, tc := range wireCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			f := encodeFrame(t, &tc.in, 0)
			require.GreaterOrEqual(t, len(f), HeaderSize)
			assert.Equal(t, uint32(len(f)-HeaderSize), binary.BigEndian.Uint32(f), "length header")

			// The body is one msgpack array laid out as the protocol says.
			var elems []any
			require.NoError(t, msgpack.Unmarshal(f[HeaderSize:], &elems))
			assert.Equal(t, tc.wire, generic(elems).([]any))

			r := NewReader(bytes.NewReader(f), 0)
			var got Message
			require.NoError(t, r.Read(&got))
			assert.Equal(t, normalize(tc.want), normalize(got))
			assert.False(t, r.Owned())
			assert.ErrorIs(t, r.Read(&got), io.EOF)

			// Decode gives the same from the bare body.
			var dec Message
			require.NoError(t, Decode(f[HeaderSize:], &dec))
			assert.Equal(t, normalize(tc.want), normalize(dec))
		})
	}
}

func TestManyFramesOnOneStream(t *testing.T) {
	cases := wireCases(t)
	var buf bytes.Buffer
	w := NewWriter(&buf, 0)
	for i := range cases {
		require.NoError(t, w.Write(&cases[i].in))
	}
	// One reused Message, read through a reader that returns a byte at a
	// time: short reads must not matter.
	r := NewReader(iotest.OneByteReader(&buf), 0)
	var got Message
	for _, tc := range cases {
		require.NoError(t, r.Read(&got), tc.name)
		assert.Equal(t, normalize(tc.want), normalize(got), tc.name)
	}
	assert.ErrorIs(t, r.Read(&got), io.EOF)
}

func TestEmptyPayloads(t *testing.T) {
	// A nil or empty blob is sent as an empty bin and read back empty.
	for _, p := range [][]byte{nil, {}} {
		f := encodeFrame(t, &Message{Kind: KindRequest, ID: 1, JobType: "j", PayloadKind: Blob, Payload: p}, 0)
		assert.Equal(t, []byte{0xc4, 0x00}, f[len(f)-2:])
		var m Message
		require.NoError(t, NewReader(bytes.NewReader(f), 0).Read(&m))
		assert.Empty(t, m.Payload)
	}
	// An empty Value is sent as msgpack nil and read back as its encoding.
	f := encodeFrame(t, &Message{Kind: KindResponse, ID: 1, PayloadKind: Value}, 0)
	assert.Equal(t, byte(0xc0), f[len(f)-1])
	var m Message
	require.NoError(t, NewReader(bytes.NewReader(f), 0).Read(&m))
	assert.Equal(t, []byte{0xc0}, m.Payload)
	// A blob sent as nil by another implementation reads as empty.
	body := []byte{0x96, 0x04, 0x01, 0xa0, 0xa0, 0x00, 0xc0}
	require.NoError(t, Decode(body, &m))
	assert.Empty(t, m.Payload)
	assert.Equal(t, Blob, m.PayloadKind)
}

func TestLenientInputs(t *testing.T) {
	// What other implementations may send and a Reader accepts: nil for an
	// empty string or job type list, str for a blob, bin for a string,
	// signed or non-minimal encodings of non-negative integers.
	body := []byte{
		0x96,       // array of 6
		0xd0, 0x03, // kind 3 as int8
		0xcf, 0, 0, 0, 0, 0, 0, 0, 0x2a, // id 42 as uint64
		0xc4, 0x02, 'j', 't', // job type as bin8
		0xd3, 0, 0, 0, 0, 0, 0, 0x03, 0xe8, // timeout 1000 as int64
		0x00,                // blob
		0xa3, 'a', 'b', 'c', // payload as fixstr
	}
	var m Message
	require.NoError(t, Decode(body, &m))
	assert.Equal(t, Message{Kind: KindRequest, ID: 42, JobType: "jt", Timeout: time.Second,
		PayloadKind: Blob, Payload: []byte("abc")}, m)

	body = []byte{0x95, 0x02, 0x01, 0x10, 0x05, 0xc0} // ready, job types nil
	require.NoError(t, Decode(body, &m))
	assert.Equal(t, Message{Kind: KindReady, Version: 1, MaxFrame: 16, PID: 5}, normalize(m))

	body = []byte{0x96, 0x04, 0x01, 0xc0, 0xc0, 0x00, 0xc4, 0x00} // response, nil strings
	require.NoError(t, Decode(body, &m))
	assert.Equal(t, Message{Kind: KindResponse, ID: 1, PayloadKind: Blob}, normalize(m))
}

// payloadSizes are the sizes the brief asks for, around the Writer's
// inline limit and the Reader's reuse limit.
var payloadSizes = []struct {
	name string
	n    int
}{
	{"0", 0}, {"1", 1}, {"64B", 64}, {"1KiB", 1 << 10}, {"64KiB", 64 << 10},
	{"64KiB+1", 64<<10 + 1}, {"1MiB", 1 << 20}, {"64MiB", 64 << 20},
}

// pattern returns n bytes of i%251, filled by doubling copies (fast even
// under the race detector).
func pattern(n int) []byte {
	b := make([]byte, n)
	fillPattern(b)
	return b
}

func fillPattern(b []byte) {
	for i := 0; i < len(b) && i < 251; i++ {
		b[i] = byte(i)
	}
	for k := 251; k < len(b); k *= 2 {
		copy(b[k:], b[:k])
	}
}

func TestPayloadSizes(t *testing.T) {
	for _, sz := range payloadSizes {
		for _, pk := range []PayloadKind{Blob, Value} {
			t.Run(pk.String()+"/"+sz.name, func(t *testing.T) {
				if sz.n > 1<<20 && testing.Short() {
					t.Skip("large payload skipped in -short mode")
				}
				large := sz.n > 1<<20
				if large {
					runtime.GC() // start from a clean heap: keep the peak near 2x64 MiB
				}
				var payload []byte
				switch {
				case pk == Blob:
					payload = pattern(sz.n)
				case !large:
					payload = mustMarshal(t, pattern(sz.n)) // one msgpack bin
				default:
					// The bin32 encoding that msgpack.Marshal gives (checked at
					// 64 KiB+1 and 1 MiB), without holding the data twice.
					payload = make([]byte, 5+sz.n)
					payload[0] = 0xc6
					binary.BigEndian.PutUint32(payload[1:], uint32(sz.n))
					fillPattern(payload[5:])
				}
				maxFrame := 0
				if sz.n >= DefaultMaxFrame {
					// The frame is the payload plus a few header bytes: over the
					// default limit, which both sides enforce.
					var buf bytes.Buffer
					err := NewWriter(&buf, 0).Write(&Message{Kind: KindResponse, ID: 1, PayloadKind: pk, Payload: payload})
					require.ErrorIs(t, err, ErrFrameTooLarge)
					require.Zero(t, buf.Len())
					maxFrame = DefaultMaxFrame + 1<<10
				}
				for _, kind := range []Kind{KindRequest, KindResponse} {
					in := Message{Kind: kind, ID: uint64(sz.n), JobType: "sized", PayloadKind: pk, Payload: payload}
					if kind == KindResponse {
						in.JobType = ""
					}
					got, owned := pipeRoundTrip(t, &in, maxFrame)
					require.Equal(t, kind, got.Kind)
					require.Equal(t, in.ID, got.ID)
					require.Equal(t, in.JobType, got.JobType)
					require.Equal(t, pk, got.PayloadKind)
					require.Equal(t, len(payload), len(got.Payload))
					require.True(t, bytes.Equal(payload, got.Payload), "payload differs")
					assert.Equal(t, len(payload) > reuseLimit, owned, "owned")
					if pk == Value && sz.n <= 1<<20 {
						var back []byte
						require.NoError(t, msgpack.Unmarshal(got.Payload, &back))
						require.True(t, bytes.Equal(pattern(sz.n), back))
					}
					if large {
						runtime.GC() // free this frame (dead from here) before the next
					}
				}
			})
		}
	}
}

// valueSample covers every msgpack family and length class that
// msgpack.Marshal produces.
func valueSample() map[string]any {
	ints := make([]any, 0, 20)
	for _, v := range []int64{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxInt32, math.MaxInt64,
		-1, -32, -33, -128, -129, -32768, -32769, math.MinInt32, math.MinInt64} {
		ints = append(ints, v)
	}
	big := make([]any, 70000) // array32
	for i := range big {
		big[i] = int64(i % 300)
	}
	m16 := map[string]any{} // map16
	for i := 0; i < 20; i++ {
		m16[strings.Repeat("k", i+1)] = []any{int64(i), "v"}
	}
	return map[string]any{
		"ints":    ints,
		"uint64":  uint64(math.MaxUint64),
		"floats":  []any{3.25, float32(1.5), math.Inf(-1), 0.0},
		"strs":    []any{"", "fix", strings.Repeat("s", 40), strings.Repeat("m", 300), strings.Repeat("l", 70000)},
		"bins":    []any{[]byte{}, []byte{1, 2, 3}, make([]byte, 300), make([]byte, 70000)},
		"bools":   []any{true, false, nil},
		"time":    time.Unix(1700000000, 123456789).UTC(), // ext -1
		"time32":  time.Unix(1700000000, 0).UTC(),         // fixext4 form
		"nested":  map[string]any{"a": []any{[]any{[]any{map[string]any{"deep": "yes"}}}}, "empty": map[string]any{}},
		"array16": make([]any, 20),
		"array32": big,
		"map16":   m16,
	}
}

func TestValuePayloadTypes(t *testing.T) {
	want := valueSample()
	payload := mustMarshal(t, want)
	got, _ := pipeRoundTrip(t, &Message{Kind: KindResponse, ID: 1, PayloadKind: Value, Payload: payload}, 0)
	require.True(t, bytes.Equal(payload, got.Payload))
	var back map[string]any
	require.NoError(t, msgpack.Unmarshal(got.Payload, &back))
	var ref map[string]any
	require.NoError(t, msgpack.Unmarshal(payload, &ref))
	assert.Equal(t, ref, back)
	assert.Equal(t, want["time"], back["time"].(time.Time).UTC())
	assert.Equal(t, "yes", back["nested"].(map[string]any)["a"].([]any)[0].([]any)[0].([]any)[0].(map[string]any)["deep"])

	// Every ext encoding, raw.
	exts := []msgpack.RawMessage{
		{0xd4, 0x01, 0xaa},                                             // fixext1
		{0xd5, 0x02, 1, 2},                                             // fixext2
		{0xd6, 0x03, 1, 2, 3, 4},                                       // fixext4
		append([]byte{0xd7, 0x04}, make([]byte, 8)...),                 // fixext8
		append([]byte{0xd8, 0x05}, make([]byte, 16)...),                // fixext16
		{0xc7, 0x03, 0x06, 1, 2, 3},                                    // ext8
		append([]byte{0xc8, 0x01, 0x00, 0x07}, make([]byte, 256)...),   // ext16
		append([]byte{0xc9, 0, 1, 0, 0, 0x08}, make([]byte, 65536)...), // ext32
	}
	payload = mustMarshal(t, exts)
	got, _ = pipeRoundTrip(t, &Message{Kind: KindRequest, ID: 2, JobType: "x", PayloadKind: Value, Payload: payload}, 0)
	var backExts []msgpack.RawMessage
	require.NoError(t, msgpack.Unmarshal(got.Payload, &backExts))
	assert.Equal(t, exts, backExts)

	// A scalar is a value too.
	for _, v := range []any{nil, true, 1.5, "str", int64(-5), []byte("bin")} {
		p := mustMarshal(t, v)
		got, _ := pipeRoundTrip(t, &Message{Kind: KindResponse, ID: 3, PayloadKind: Value, Payload: p}, 0)
		assert.Equal(t, p, got.Payload)
	}
}

func TestOwned(t *testing.T) {
	fill := func(n int) []byte { return bytes.Repeat([]byte{byte(n%251 + 1)}, n) }
	req := func(n int) *Message {
		return &Message{Kind: KindRequest, ID: 1, JobType: "o", PayloadKind: Blob, Payload: fill(n)}
	}
	// bodyLen is the body size of req(n).
	bodyLen := func(n int) int { return len(encodeFrame(t, req(n), 0)) - HeaderSize }
	atLimit := 100 << 10
	atLimit += reuseLimit - bodyLen(atLimit) // a body of exactly reuseLimit bytes
	require.Equal(t, reuseLimit, bodyLen(atLimit))

	var buf bytes.Buffer
	w := NewWriter(&buf, 0)
	for _, n := range []int{1 << 10, 2 << 10, atLimit, atLimit + 1, 1 << 20, 16} {
		require.NoError(t, w.Write(req(n)))
	}
	r := NewReader(&buf, 0)
	var a, b Message

	// Small frames share the buffer: the next read overwrites the payload.
	require.NoError(t, r.Read(&a))
	assert.False(t, r.Owned())
	first := a.Payload
	assert.Equal(t, fill(1<<10), first)
	require.NoError(t, r.Read(&b))
	assert.False(t, r.Owned())
	assert.Equal(t, fill(2 << 10)[0], first[0], "a shared buffer is reused by the next read")
	assert.Equal(t, cap(first), len(first), "capacity is capped: appending cannot clobber the frame")

	// A body of exactly 256 KiB is still shared; one byte more is owned.
	require.NoError(t, r.Read(&a))
	assert.False(t, r.Owned())
	require.NoError(t, r.Read(&a))
	assert.True(t, r.Owned())
	kept := a.Payload

	// An owned payload survives later reads, large or small.
	require.NoError(t, r.Read(&b))
	assert.True(t, r.Owned())
	require.NoError(t, r.Read(&b))
	assert.False(t, r.Owned())
	assert.Equal(t, fill(atLimit+1), kept)
	assert.ErrorIs(t, r.Read(&b), io.EOF)
}

func TestStringsDoNotAliasBuffer(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 0)
	long := strings.Repeat("L", 500) // longer than what is interned
	require.NoError(t, w.Write(&Message{Kind: KindRequest, ID: 1, JobType: "first", PayloadKind: Blob}))
	require.NoError(t, w.Write(&Message{Kind: KindResponse, ID: 1, ErrCode: "c", ErrMessage: long}))
	require.NoError(t, w.Write(&Message{Kind: KindRequest, ID: 2, JobType: "XXXXX", PayloadKind: Blob, Payload: bytes.Repeat([]byte("Z"), 600)}))
	r := NewReader(&buf, 0)
	var a, b, c Message
	require.NoError(t, r.Read(&a))
	require.NoError(t, r.Read(&b))
	require.NoError(t, r.Read(&c))
	assert.Equal(t, "first", a.JobType)
	assert.Equal(t, long, b.ErrMessage)
	assert.Equal(t, "c", b.ErrCode)
}

func TestInterning(t *testing.T) {
	var in interner
	a := in.str([]byte("echo"))
	b := in.str([]byte("echo"))
	assert.Equal(t, "echo", a)
	assert.Equal(t, unsafeData(a), unsafeData(b), "the second read reuses the first string")
	assert.Equal(t, "", in.str(nil))
	for i := 0; i < 2*maxInterned; i++ {
		in.str([]byte{byte(i), byte(i >> 8), 'x'})
	}
	assert.Len(t, in.m, maxInterned, "the table is bounded")
	long := bytes.Repeat([]byte("x"), maxInternedLen+1)
	assert.Equal(t, string(long), in.str(long))
	_, kept := in.m[string(long)]
	assert.False(t, kept)
	var none *interner
	assert.Equal(t, "y", none.str([]byte("y")))
}

func TestReadyJobTypesReuse(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, 0)
	require.NoError(t, w.Write(&Message{Kind: KindReady, Version: 1, MaxFrame: 1, PID: 1, JobTypes: []string{"a", "b", "c"}}))
	require.NoError(t, w.Write(&Message{Kind: KindReady, Version: 1, MaxFrame: 1, PID: 2, JobTypes: []string{"d"}}))
	require.NoError(t, w.Write(&Message{Kind: KindPing, ID: 1}))
	r := NewReader(&buf, 0)
	var m Message
	require.NoError(t, r.Read(&m))
	assert.Equal(t, []string{"a", "b", "c"}, m.JobTypes)
	require.NoError(t, r.Read(&m))
	assert.Equal(t, []string{"d"}, m.JobTypes)
	assert.Equal(t, 2, m.PID)
	require.NoError(t, r.Read(&m))
	assert.Empty(t, m.JobTypes, "every field is overwritten")
	assert.Zero(t, m.PID)
}

func TestWriterMaxFrame(t *testing.T) {
	m := &Message{Kind: KindResponse, ID: 1, PayloadKind: Blob}
	overhead := len(encodeFrame(t, m, 0)) - HeaderSize - 2 // minus the empty bin8 header
	binHdr := func(n int) int {
		switch {
		case n > 0xffff:
			return 5
		case n > 0xff:
			return 3
		}
		return 2
	}
	// Limits where a payload fills the frame exactly with a bin8, a bin16
	// and a bin32 header, the last two beyond the inline limit.
	for _, limit := range []int{100, 1000, 70000, 1 << 20} {
		fits := -1
		for _, h := range []int{2, 3, 5} {
			if p := limit - overhead - h; binHdr(p) == h {
				fits = p
			}
		}
		require.Positive(t, fits)
		var buf bytes.Buffer
		w := NewWriter(&buf, limit)
		require.Equal(t, limit, w.MaxFrame())

		m.Payload = make([]byte, fits)
		require.NoError(t, w.Write(m), "a frame of exactly the limit")
		require.Equal(t, HeaderSize+limit, buf.Len())
		buf.Reset()

		m.Payload = make([]byte, fits+1)
		err := w.Write(m)
		require.ErrorIs(t, err, ErrFrameTooLarge)
		require.Zero(t, buf.Len(), "nothing written")

		// The Writer still works after refusing.
		require.NoError(t, w.Write(&Message{Kind: KindPing, ID: 9}))
		var got Message
		require.NoError(t, NewReader(&buf, limit).Read(&got))
		assert.Equal(t, Message{Kind: KindPing, ID: 9}, normalize(got))
	}

	// Strings count too, and SetMaxFrame moves the limit.
	var buf bytes.Buffer
	w := NewWriter(&buf, 0)
	assert.Equal(t, DefaultMaxFrame, w.MaxFrame())
	w.SetMaxFrame(64)
	w.SetMaxFrame(0) // ignored
	w.SetMaxFrame(-5)
	assert.Equal(t, 64, w.MaxFrame())
	err := w.Write(&Message{Kind: KindResponse, ID: 1, ErrCode: CodeHandler, ErrMessage: strings.Repeat("e", 100)})
	require.ErrorIs(t, err, ErrFrameTooLarge)
	err = w.Write(&Message{Kind: KindReady, JobTypes: []string{strings.Repeat("j", 70)}})
	require.ErrorIs(t, err, ErrFrameTooLarge)
	require.Zero(t, buf.Len())
	assert.Equal(t, DefaultMaxFrame, NewWriter(&buf, -1).MaxFrame())
}

type countingWriter struct {
	n, calls int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += len(p)
	c.calls++
	return len(p), nil
}

func TestWriterCalls(t *testing.T) {
	// Up to 64 KiB of payload: one write; beyond: header then payload.
	for _, tc := range []struct{ n, calls int }{{0, 1}, {inlineLimit, 1}, {inlineLimit + 1, 2}} {
		var c countingWriter
		m := &Message{Kind: KindResponse, ID: 1, PayloadKind: Blob, Payload: make([]byte, tc.n)}
		require.NoError(t, NewWriter(&c, 0).Write(m))
		assert.Equal(t, tc.calls, c.calls, "payload %d", tc.n)
	}
	// The underlying writer's error comes back as is.
	boom := errors.New("boom")
	for _, n := range []int{10, inlineLimit + 1} {
		err := NewWriter(failWriter{boom}, 0).Write(&Message{Kind: KindResponse, PayloadKind: Blob, Payload: make([]byte, n)})
		assert.ErrorIs(t, err, boom)
	}
}

type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }

func TestWriterRefusesBadMessages(t *testing.T) {
	cases := []struct {
		name      string
		m         Message
		malformed bool
	}{
		{"unknown kind", Message{Kind: 0}, false},
		{"kind 13", Message{Kind: 13, ID: 1}, false},
		{"empty batch", Message{Kind: KindBatchRequest}, true},
		{"batch of a response", Message{Kind: KindBatchRequest, Items: []Message{{Kind: KindResponse}}}, false},
		{"batch of a bad value", Message{Kind: KindBatchResponse, Items: []Message{{Kind: KindResponse, PayloadKind: Value, Payload: []byte{0xc1}}}}, true},
		{"unknown payload kind", Message{Kind: KindRequest, PayloadKind: 2, Payload: []byte{1}}, false},
		{"value with two values", Message{Kind: KindResponse, PayloadKind: Value, Payload: []byte{0x01, 0x02}}, true},
		{"value truncated", Message{Kind: KindResponse, PayloadKind: Value, Payload: []byte{0x92, 0x01}}, true},
		{"value invalid code", Message{Kind: KindRequest, PayloadKind: Value, Payload: []byte{0xc1}}, true},
		{"value too deep", Message{Kind: KindRequest, PayloadKind: Value, Payload: nested(maxValueDepth + 1)}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := NewWriter(&buf, 0).Write(&tc.m)
			require.Error(t, err)
			assert.Equal(t, tc.malformed, errors.Is(err, ErrMalformed), "%v", err)
			assert.Zero(t, buf.Len(), "nothing written")
		})
	}
}

func TestWriterDropsGrownBuffer(t *testing.T) {
	var c countingWriter
	w := NewWriter(&c, 0)
	require.NoError(t, w.Write(&Message{Kind: KindResponse, ID: 1, ErrCode: "x", ErrMessage: strings.Repeat("m", 1<<20)}))
	assert.LessOrEqual(t, w.buf.Cap(), keepLimit)
	require.NoError(t, w.Write(&Message{Kind: KindResponse, ID: 1, PayloadKind: Blob, Payload: make([]byte, inlineLimit)}))
	assert.Greater(t, w.buf.Cap(), inlineLimit, "a buffer for an inline payload is kept")
	require.NoError(t, w.Write(&Message{Kind: KindPing, ID: 2}))
	assert.Equal(t, 3, c.calls)
}

// nested returns depth arrays, each holding the next, around a 0.
func nested(depth int) []byte {
	b := bytes.Repeat([]byte{0x91}, depth)
	return append(b, 0x00)
}

func TestReaderMaxFrame(t *testing.T) {
	// A frame of exactly the limit is read; one byte more is refused.
	body := append([]byte{0x96, 0x04, 0x01, 0xa0, 0xa0, 0x00, 0xc4, 20}, make([]byte, 20)...)
	limit := len(body)
	var m Message
	require.NoError(t, NewReader(bytes.NewReader(frame(body)), limit).Read(&m))
	err := NewReader(bytes.NewReader(frame(body)), limit-1).Read(&m)
	require.ErrorIs(t, err, ErrFrameTooLarge)
	assert.NotErrorIs(t, err, ErrMalformed)
	assert.Equal(t, DefaultMaxFrame, NewReader(nil, 0).MaxFrame())
	assert.Equal(t, 77, NewReader(nil, 77).MaxFrame())
}

func TestReaderRefusesBeforeAllocating(t *testing.T) {
	// A header announcing 4 GiB - 1, followed by three bytes. A Reader that
	// allocated first would take 4 GiB or wait for bytes that never come.
	stream := []byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3}
	for _, limit := range []int{1 << 10, 0} {
		var m Message
		err := NewReader(bytes.NewReader(stream), limit).Read(&m)
		require.ErrorIs(t, err, ErrFrameTooLarge)

		allocs := testing.AllocsPerRun(100, func() {
			r := NewReader(bytes.NewReader(stream), limit)
			_ = r.Read(&m)
		})
		assert.LessOrEqual(t, allocs, 8.0, "only the reader and the error are allocated")

		var before, after runtimeMem
		before.read()
		for i := 0; i < 50; i++ {
			_ = NewReader(bytes.NewReader(stream), limit).Read(&m)
		}
		after.read()
		assert.Less(t, after.total-before.total, uint64(1<<20), "bytes allocated by 50 refusals")
	}
	// Announced within the limit but past the stream's end: truncated, with
	// a read that returns rather than hangs.
	err := NewReader(bytes.NewReader([]byte{0, 0, 0x10, 0, 1, 2, 3}), 0).Read(new(Message))
	require.ErrorIs(t, err, ErrTruncated)
}

func TestTruncatedAndEOF(t *testing.T) {
	whole := encodeFrame(t, &Message{Kind: KindRequest, ID: 3, JobType: "t", PayloadKind: Blob, Payload: []byte("0123456789")}, 0)
	var m Message

	// Empty stream: clean EOF.
	err := NewReader(bytes.NewReader(nil), 0).Read(&m)
	require.Equal(t, io.EOF, err)

	// Every proper prefix ends inside a frame.
	for i := 1; i < len(whole); i++ {
		err := NewReader(bytes.NewReader(whole[:i]), 0).Read(&m)
		require.ErrorIs(t, err, ErrTruncated, "prefix of %d bytes", i)
		require.NotErrorIs(t, err, io.EOF)
	}

	// Two frames, then a clean EOF, then a truncated third frame.
	stream := append(append(append([]byte{}, whole...), whole...), whole[:HeaderSize+2]...)
	r := NewReader(bytes.NewReader(stream), 0)
	require.NoError(t, r.Read(&m))
	require.NoError(t, r.Read(&m))
	require.ErrorIs(t, r.Read(&m), ErrTruncated)

	r = NewReader(bytes.NewReader(append(append([]byte{}, whole...), whole...)), 0)
	require.NoError(t, r.Read(&m))
	require.NoError(t, r.Read(&m))
	require.Equal(t, io.EOF, r.Read(&m))
	require.Equal(t, io.EOF, r.Read(&m), "and again")

	// Another error of the underlying reader is passed through.
	boom := errors.New("boom")
	err = NewReader(iotest.ErrReader(boom), 0).Read(&m)
	require.ErrorIs(t, err, boom)
	err = NewReader(io.MultiReader(bytes.NewReader(whole[:HeaderSize+1]), iotest.ErrReader(boom)), 0).Read(&m)
	require.ErrorIs(t, err, boom)
	// A reader returning data together with EOF is fine.
	r = NewReader(iotest.DataErrReader(bytes.NewReader(whole)), 0)
	require.NoError(t, r.Read(&m))
	require.Equal(t, io.EOF, r.Read(&m))
}

// malformedBodies are frame bodies that must be refused with ErrMalformed.
func malformedBodies() map[string][]byte {
	deep := append([]byte{0x96, 0x03, 0x01, 0xa1, 'j', 0x00, 0x01}, nested(maxValueDepth+1)...)
	bodies := featureMalformedBodies()
	for name, body := range map[string][]byte{
		"empty body":            {},
		"not an array":          {0x81, 0x01, 0x02},
		"integer body":          {0x06},
		"invalid code 0xc1":     {0xc1},
		"empty array":           {0x90},
		"kind only":             {0x91, 0x06},
		"kind 0":                {0x92, 0x00, 0x01},
		"kind 9":                {0x92, 0x09, 0x01},
		"kind 13":               {0x92, 0x0d, 0x01},
		"kind 255":              {0x92, 0xcc, 0xff, 0x01},
		"kind 259 (3 mod 256)":  {0x96, 0xcd, 0x01, 0x03, 0x01, 0xa1, 'j', 0x00, 0x00, 0xc4, 0x00},
		"kind 262 (6 mod 256)":  {0x92, 0xcd, 0x01, 0x06, 0x01},
		"kind negative":         {0x92, 0xff, 0x01},
		"kind as string":        {0x92, 0xa1, '6', 0x01},
		"kind nil":              {0x92, 0xc0, 0x01},
		"kind float":            {0x92, 0xca, 0x40, 0xc0, 0, 0, 0x01},
		"hello 2 elements":      {0x92, 0x01, 0x01},
		"hello features an int": {0x95, 0x01, 0x01, 0x01, 0x01, 0x01},
		"hello 6 elements":      {0x96, 0x01, 0x01, 0x01, 0x00, 0x90, 0x01},
		"hello shared a string": {0x94, 0x01, 0x01, 0x01, 0xa1, '1'},
		"ready 4 elements":      {0x94, 0x02, 0x01, 0x01, 0x01},
		"ready features an int": {0x97, 0x02, 0x01, 0x01, 0x01, 0x90, 0x01, 0x01},
		"ready 8 elements":      {0x98, 0x02, 0x01, 0x01, 0x01, 0x90, 0x00, 0x90, 0x01},
		"ready shared negative": {0x96, 0x02, 0x01, 0x01, 0x01, 0x90, 0xff},
		"request 5 elements":    {0x95, 0x03, 0x01, 0xa1, 'j', 0x00, 0x00},
		"request meta an int":   {0x97, 0x03, 0x01, 0xa1, 'j', 0x00, 0x00, 0xc4, 0x00, 0x00},
		"request 8 elements":    {0x98, 0x03, 0x01, 0xa1, 'j', 0x00, 0x80, 0x00, 0xc4, 0x00, 0x00},
		"ping 3 elements":       {0x93, 0x06, 0x01, 0x01},
		"shutdown 1 element":    {0x91, 0x08},
		"array announcing 2^32": {0xdd, 0xff, 0xff, 0xff, 0xff, 0x06, 0x01},
		"array16 short count":   {0xdc, 0x00},
		"version negative":      {0x93, 0x01, 0xff, 0x01},
		"version over uint32":   {0x93, 0x01, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0, 0x01},
		"max frame as string":   {0x93, 0x01, 0x01, 0xa1, '1'},
		"version nil":           {0x93, 0x01, 0xc0, 0x01},
		"pid as string":         {0x95, 0x02, 0x01, 0x01, 0xa1, '1', 0x90},
		"pid over int64":        {0x95, 0x02, 0x01, 0x01, 0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0, 0x90},
		"job types a map":       {0x95, 0x02, 0x01, 0x01, 0x01, 0x80},
		"job types 2^32":        {0x95, 0x02, 0x01, 0x01, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff, 0xa1, 'j'},
		"job type an integer":   {0x95, 0x02, 0x01, 0x01, 0x01, 0x91, 0x01},
		"job type too long":     {0x95, 0x02, 0x01, 0x01, 0x01, 0x91, 0xa5, 'j'},
		"id as string":          {0x92, 0x05, 0xa1, '1'},
		"id negative":           {0x92, 0x05, 0xd0, 0x80},
		"id int64 negative":     {0x92, 0x06, 0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"id truncated uint32":   {0x92, 0x06, 0xce, 0x00, 0x01},
		"id a float":            {0x92, 0x07, 0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0},
		"id a bool":             {0x92, 0x07, 0xc3},
		"grace negative":        {0x92, 0x08, 0xe0},
		"job type an integer 2": {0x96, 0x03, 0x01, 0x05, 0x00, 0x00, 0xc4, 0x00},
		"job type an array":     {0x96, 0x03, 0x01, 0x90, 0x00, 0x00, 0xc4, 0x00},
		"timeout a string":      {0x96, 0x03, 0x01, 0xa1, 'j', 0xa1, '1', 0x00, 0xc4, 0x00},
		"timeout a float":       {0x96, 0x03, 0x01, 0xa1, 'j', 0xca, 0, 0, 0, 0, 0x00, 0xc4, 0x00},
		"payload kind 4":        {0x96, 0x03, 0x01, 0xa1, 'j', 0x00, 0x04, 0xc4, 0x00},
		"shared span a bin":     {0x96, 0x03, 0x01, 0xa1, 'j', 0x00, 0x02, 0xc4, 0x00},
		"shared span 1 element": {0x96, 0x03, 0x01, 0xa1, 'j', 0x00, 0x02, 0x91, 0x01},
		"shared span 3 elems":   {0x96, 0x03, 0x01, 0xa1, 'j', 0x00, 0x03, 0x93, 0x01, 0x01, 0x01},
		"shared span negative":  {0x96, 0x04, 0x01, 0xa0, 0xa0, 0x02, 0x92, 0x01, 0xff},
		"shared span missing":   {0x96, 0x04, 0x01, 0xa0, 0xa0, 0x03},
		"payload kind 256":      {0x96, 0x03, 0x01, 0xa1, 'j', 0x00, 0xcd, 0x01, 0x00, 0xc4, 0x00},
		"payload kind negative": {0x96, 0x03, 0x01, 0xa1, 'j', 0x00, 0xff, 0xc4, 0x00},
		"blob an integer":       {0x96, 0x03, 0x01, 0xa1, 'j', 0x00, 0x00, 0x05},
		"blob an array":         {0x96, 0x03, 0x01, 0xa1, 'j', 0x00, 0x00, 0x91, 0x01},
		"blob missing":          {0x96, 0x03, 0x01, 0xa1, 'j', 0x00, 0x00},
		"bin beyond frame":      {0x96, 0x03, 0x01, 0xa1, 'j', 0x00, 0x00, 0xc4, 0x05, 'a', 'b'},
		"bin32 beyond frame":    {0x96, 0x04, 0x01, 0xa0, 0xa0, 0x00, 0xc6, 0xff, 0xff, 0xff, 0xff, 'a'},
		"bin16 short length":    {0x96, 0x04, 0x01, 0xa0, 0xa0, 0x00, 0xc5, 0x01},
		"str beyond frame":      {0x96, 0x04, 0x01, 0xda, 0x01, 0x00, 'x', 0xa0, 0x00, 0xc4, 0x00},
		"error code a map":      {0x96, 0x04, 0x01, 0x80, 0xa0, 0x00, 0xc4, 0x00},
		"error message an int":  {0x96, 0x04, 0x01, 0xa0, 0x01, 0x00, 0xc4, 0x00},
		"trailing byte":         {0x92, 0x06, 0x01, 0x00},
		"trailing after blob":   {0x96, 0x03, 0x01, 0xa1, 'j', 0x00, 0x00, 0xc4, 0x01, 'a', 'b'},
		"trailing after value":  {0x96, 0x04, 0x01, 0xa0, 0xa0, 0x01, 0x01, 0x02},
		"value missing":         {0x96, 0x04, 0x01, 0xa0, 0xa0, 0x01},
		"value invalid 0xc1":    {0x96, 0x04, 0x01, 0xa0, 0xa0, 0x01, 0xc1},
		"value nested 0xc1":     {0x96, 0x04, 0x01, 0xa0, 0xa0, 0x01, 0x92, 0x01, 0xc1},
		"value deeper than 256": deep,
		"value array 2^32":      {0x96, 0x04, 0x01, 0xa0, 0xa0, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01},
		"value map 2^32":        {0x96, 0x04, 0x01, 0xa0, 0xa0, 0x01, 0xdf, 0xff, 0xff, 0xff, 0xff, 0x01, 0x01},
		"value map odd":         {0x96, 0x04, 0x01, 0xa0, 0xa0, 0x01, 0x81, 0x01},
		"value truncated array": {0x96, 0x04, 0x01, 0xa0, 0xa0, 0x01, 0x92, 0x01},
		"value str beyond":      {0x96, 0x04, 0x01, 0xa0, 0xa0, 0x01, 0xd9, 0x09, 'a'},
		"value ext beyond":      {0x96, 0x04, 0x01, 0xa0, 0xa0, 0x01, 0xc9, 0, 0, 0, 0x04, 0x01, 'a'},
		"value fixext16 short":  {0x96, 0x04, 0x01, 0xa0, 0xa0, 0x01, 0xd8, 0x01, 1, 2, 3},
		"value float64 short":   {0x96, 0x04, 0x01, 0xa0, 0xa0, 0x01, 0xcb, 0x01, 2},
		"value uint64 short":    {0x96, 0x04, 0x01, 0xa0, 0xa0, 0x01, 0xcf, 0x01},
		"value str32 hdr short": {0x96, 0x04, 0x01, 0xa0, 0xa0, 0x01, 0xdb, 0x00, 0x00},
	} {
		bodies[name] = body
	}
	return bodies
}

func TestMalformed(t *testing.T) {
	for name, body := range malformedBodies() {
		t.Run(name, func(t *testing.T) {
			var m Message
			err := NewReader(bytes.NewReader(frame(body)), 1<<20).Read(&m)
			require.ErrorIs(t, err, ErrMalformed, "%v", err)
			assert.NotErrorIs(t, err, ErrTruncated)
			assert.NotErrorIs(t, err, ErrFrameTooLarge)
			require.ErrorIs(t, Decode(body, &m), ErrMalformed)
		})
	}
}

func TestValueDepthLimit(t *testing.T) {
	for _, tc := range []struct {
		depth int
		ok    bool
	}{{1, true}, {maxValueDepth, true}, {maxValueDepth + 1, false}, {10 * maxValueDepth, false}} {
		v := nested(tc.depth)
		body := append([]byte{0x96, 0x04, 0x01, 0xa0, 0xa0, 0x01}, v...)
		var m Message
		err := Decode(body, &m)
		if tc.ok {
			require.NoError(t, err, "depth %d", tc.depth)
			assert.Equal(t, v, m.Payload)
			// The Writer sends what the Reader accepts.
			require.NoError(t, NewWriter(io.Discard, 0).Write(&m))
		} else {
			require.ErrorIs(t, err, ErrMalformed, "depth %d", tc.depth)
		}
	}
	// Depth counts nesting, not breadth: many siblings are fine. Maps count
	// like arrays.
	wide := append([]byte{0xdc, 0x04, 0x00}, nested(maxValueDepth-1)...)
	for i := 1; i < 0x400; i++ {
		wide = append(wide, nested(maxValueDepth-1)...)
	}
	n, err := valueLen(wide, maxValueDepth)
	require.NoError(t, err)
	assert.Equal(t, len(wide), n)
	deepMap := append(bytes.Repeat([]byte{0x81, 0x00}, maxValueDepth+1), 0x00)
	_, err = valueLen(deepMap, maxValueDepth)
	require.ErrorIs(t, err, errTooDeep)
	_, err = valueLen(deepMap[2:], maxValueDepth)
	require.NoError(t, err)
}

func TestDurationsRoundUpToMilliseconds(t *testing.T) {
	cases := []struct {
		d    time.Duration
		ms   uint64
		back time.Duration
	}{
		{0, 0, 0},
		{-time.Second, 0, 0},
		{1, 1, time.Millisecond},
		{time.Millisecond - 1, 1, time.Millisecond},
		{time.Millisecond, 1, time.Millisecond},
		{time.Millisecond + 1, 2, 2 * time.Millisecond},
		{1500 * time.Microsecond, 2, 2 * time.Millisecond},
		{2 * time.Second, 2000, 2 * time.Second},
		{time.Hour + 1, 3600001, time.Hour + time.Millisecond},
		// The largest duration: no overflow on the way out, clamped on the
		// way back.
		{math.MaxInt64, math.MaxInt64/uint64(time.Millisecond) + 1, math.MaxInt64 / time.Millisecond * time.Millisecond},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.ms, durationToMillis(tc.d), "%d", tc.d)
		for _, m := range []Message{
			{Kind: KindRequest, ID: 1, JobType: "d", Timeout: tc.d, PayloadKind: Blob},
			{Kind: KindShutdown, Grace: tc.d},
		} {
			f := encodeFrame(t, &m, 0)
			var elems []any
			require.NoError(t, msgpack.Unmarshal(f[HeaderSize:], &elems))
			if m.Kind == KindRequest {
				assert.Equal(t, tc.ms, generic(elems[3]), "timeout %d on the wire", tc.d)
			} else {
				assert.Equal(t, tc.ms, generic(elems[1]), "grace %d on the wire", tc.d)
			}
			var got Message
			require.NoError(t, NewReader(bytes.NewReader(f), 0).Read(&got))
			assert.Equal(t, tc.back, got.Timeout+got.Grace, "%d read back", tc.d)
		}
	}
	// A peer's huge value saturates rather than wraps.
	body := []byte{0x92, 0x08, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	var m Message
	require.NoError(t, Decode(body, &m))
	assert.Equal(t, math.MaxInt64/time.Millisecond*time.Millisecond, m.Grace)
}

func TestKindStrings(t *testing.T) {
	names := map[Kind]string{KindHello: "hello", KindReady: "ready", KindRequest: "request",
		KindResponse: "response", KindCancel: "cancel", KindPing: "ping", KindPong: "pong",
		KindShutdown: "shutdown", KindBatchRequest: "batch request", KindBatchResponse: "batch response",
		KindChunk: "chunk", KindCredit: "credit", 0: "kind(0)", 200: "kind(200)"}
	for k, s := range names {
		assert.Equal(t, s, k.String())
	}
	assert.Equal(t, "blob", Blob.String())
	assert.Equal(t, "value", Value.String())
	assert.Equal(t, "payload(7)", PayloadKind(7).String())
}

func TestMessageReset(t *testing.T) {
	m := Message{Kind: KindReady, ID: 1, Version: 1, MaxFrame: 1, PID: 1, JobTypes: []string{"a", "b"},
		JobType: "x", Timeout: 1, PayloadKind: Value, Payload: []byte{1}, ErrCode: "c", ErrMessage: "m", Grace: 1}
	jt := m.JobTypes
	m.Reset()
	assert.Equal(t, Message{JobTypes: []string{}}, m)
	assert.Equal(t, 2, cap(m.JobTypes))
	assert.Equal(t, &jt[0], &m.JobTypes[:1][0], "capacity kept")
}

func TestRoundTripAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	payload := pattern(1 << 10)
	value := mustMarshal(t, []any{"a", 1, map[string]any{"b": payload}})
	for _, tc := range []struct {
		pk PayloadKind
		p  []byte
	}{{Blob, payload}, {Value, value}} {
		var buf bytes.Buffer
		w := NewWriter(&buf, 0)
		r := NewReader(&buf, 0)
		req := Message{Kind: KindRequest, ID: 1, JobType: "echo", Timeout: time.Second, PayloadKind: tc.pk, Payload: tc.p}
		resp := Message{Kind: KindResponse, ID: 1, PayloadKind: tc.pk, Payload: tc.p}
		errResp := Message{Kind: KindResponse, ID: 2, ErrCode: CodeCancelled, PayloadKind: Blob}
		var got Message
		step := func() {
			req.ID++
			_ = w.Write(&req)
			_ = r.Read(&got)
			_ = w.Write(&resp)
			_ = r.Read(&got)
			_ = w.Write(&errResp)
			_ = r.Read(&got)
		}
		step() // warm up: buffers grow, strings are interned
		allocs := testing.AllocsPerRun(200, step)
		assert.Zero(t, allocs, "%s round trip allocations", tc.pk)
		assert.Equal(t, CodeCancelled, got.ErrCode)
	}
}
