package codec

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// fuzzMaxFrame is the Reader's limit in FuzzReader: small, so that the
// fuzzer reaches ErrFrameTooLarge easily.
const fuzzMaxFrame = 1 << 10

// FuzzReader feeds arbitrary bytes to a Reader, as a stream of frames and as
// one bare body. It must never panic, must fail only with the documented
// errors, and whatever it decodes must survive a Writer and a Reader again.
//
//	go test -run '^$' -fuzz FuzzReader ./codec
func FuzzReader(f *testing.F) {
	for _, m := range seedMessages() {
		f.Add(encodeFrame(f, &m, 0))
	}
	for _, body := range malformedBodies() {
		f.Add(frame(body))
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3})
	f.Add([]byte{0, 0})

	f.Fuzz(func(t *testing.T, data []byte) {
		// The bytes as a stream of frames.
		r := NewReader(bytes.NewReader(data), fuzzMaxFrame)
		var m Message
		for i := 0; ; i++ {
			require.Less(t, i, len(data)/HeaderSize+1, "a Reader must consume at least a header per frame")
			err := r.Read(&m)
			if err != nil {
				checkReadError(t, err)
				break
			}
			require.LessOrEqual(t, len(m.Payload), fuzzMaxFrame)
			checkReencodes(t, &m)
		}

		// The bytes as one frame body.
		if err := Decode(data, &m); err != nil {
			require.ErrorIs(t, err, ErrMalformed)
		} else {
			checkReencodes(t, &m)
		}
	})
}

func checkReadError(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, io.EOF) || errors.Is(err, ErrTruncated) ||
		errors.Is(err, ErrFrameTooLarge) || errors.Is(err, ErrMalformed) {
		return
	}
	t.Fatalf("unexpected error %v", err)
}

// checkReencodes writes m and reads it back, expecting the same message.
func checkReencodes(t *testing.T, m *Message) {
	t.Helper()
	want := normalize(*m)
	want.JobTypes = append([]string(nil), m.JobTypes...)
	want.Payload = append([]byte(nil), m.Payload...)
	var buf bytes.Buffer
	// The limit is larger than the Reader's: a frame may grow a little on
	// the way out (a nil blob becomes an empty bin), never much.
	require.NoError(t, NewWriter(&buf, 2*fuzzMaxFrame).Write(m), "re-encoding %+v", want)
	var got Message
	r := NewReader(&buf, 2*fuzzMaxFrame)
	require.NoError(t, r.Read(&got), "decoding the re-encoded %+v", want)
	require.Equal(t, normalize(want), normalize(got))
	require.ErrorIs(t, r.Read(&got), io.EOF)
}

// seedMessages is one valid message of each kind, and a few more.
func seedMessages() []Message {
	return []Message{
		{Kind: KindHello, Version: Version, MaxFrame: DefaultMaxFrame},
		{Kind: KindReady, Version: Version, MaxFrame: 1 << 20, PID: 4321, JobTypes: []string{"echo", "sha512"}},
		{Kind: KindRequest, ID: 1, JobType: "echo", Timeout: 5000e6, PayloadKind: Blob, Payload: []byte("hello")},
		{Kind: KindRequest, ID: 2, JobType: "typed", PayloadKind: Value,
			Payload: []byte{0x82, 0xa1, 'a', 0x92, 0x01, 0xcb, 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18, 0xa1, 'b', 0xd6, 0xff, 0, 0, 0, 1}},
		{Kind: KindResponse, ID: 1, PayloadKind: Blob, Payload: []byte("hello")},
		{Kind: KindResponse, ID: 3, ErrCode: CodeDeadline, ErrMessage: "took too long", PayloadKind: Blob},
		{Kind: KindResponse, ID: 2, PayloadKind: Value, Payload: []byte{0x93, 0xc0, 0xc3, 0xa3, 'x', 'y', 'z'}},
		{Kind: KindCancel, ID: 1},
		{Kind: KindPing, ID: 7},
		{Kind: KindPong, ID: 7},
		{Kind: KindShutdown, Grace: 10e9},
		{Kind: KindHello, Version: Version, MaxFrame: DefaultMaxFrame, SharedSize: 16 << 20},
		{Kind: KindReady, Version: Version, MaxFrame: 1 << 20, PID: 1, JobTypes: []string{"a"}, SharedSize: 16 << 20},
		{Kind: KindRequest, ID: 4, JobType: "sha512", PayloadKind: Blob, Shared: true, Span: Span{Offset: 4096, Length: 1 << 20}},
		{Kind: KindResponse, ID: 4, PayloadKind: Value, Shared: true, Span: Span{Offset: 8 << 20, Length: 70000}},
		{Kind: KindHello, Version: Version, MaxFrame: DefaultMaxFrame, Features: AllFeatures},
		{Kind: KindReady, Version: Version, MaxFrame: 1 << 20, PID: 9, JobTypes: []string{"a"}, SharedSize: 16 << 20, Features: FeatureBatch | FeatureStream},
		{Kind: KindRequest, ID: 5, JobType: "echo", Timeout: 1e9, Attempt: 2, TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			TraceState: "a=b", Credit: 8, PayloadKind: Blob, Payload: []byte("m")},
		{Kind: KindBatchRequest, Items: []Message{
			{Kind: KindRequest, ID: 6, JobType: "echo", PayloadKind: Blob, Payload: []byte("a")},
			{Kind: KindRequest, ID: 7, JobType: "typed", Credit: 1, PayloadKind: Value, Payload: []byte{0x92, 0x01, 0xa1, 'x'}},
			{Kind: KindRequest, ID: 8, JobType: "echo", PayloadKind: Blob, Shared: true, Span: Span{Offset: 4096, Length: 3}},
		}},
		{Kind: KindBatchResponse, Items: []Message{
			{Kind: KindResponse, ID: 7, PayloadKind: Value, Payload: []byte{0xc3}},
			{Kind: KindResponse, ID: 6, ErrCode: CodeCancelled, ErrMessage: "stop", PayloadKind: Blob},
			{Kind: KindResponse, ID: 8, PayloadKind: Blob, Shared: true, Span: Span{Offset: 8 << 20, Length: 3}},
		}},
		{Kind: KindChunk, ID: 7, PayloadKind: Value, Payload: []byte{0x81, 0xa1, 'k', 0x01}},
		{Kind: KindChunk, ID: 5, PayloadKind: Blob, Shared: true, Span: Span{Offset: 8 << 20, Length: 1 << 16}},
		{Kind: KindCredit, ID: 5, Credit: 4},
	}
}

// FuzzValueLen checks valueLen against msgpack's own Decoder.Skip: on input
// both accept they must agree on the length; what one refuses the other must
// too, except nesting deeper than valueLen's limit, which msgpack allows.
//
//	go test -run '^$' -fuzz FuzzValueLen ./codec
func FuzzValueLen(f *testing.F) {
	for _, m := range seedMessages() {
		if m.PayloadKind == Value {
			f.Add(m.Payload)
		}
	}
	for _, v := range []any{nil, 1, -1, 1.5, "s", []byte{1}, []any{1, "a"}, map[string]any{"k": []any{}}} {
		b, err := msgpack.Marshal(v)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Add([]byte{0xc1})
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0xc7, 0x01, 0x05, 0xaa, 0x00})
	f.Add(nested(maxValueDepth + 1))

	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := valueLen(data, maxValueDepth)
		if errors.Is(err, errTooDeep) {
			return // msgpack has no depth limit
		}
		br := bytes.NewReader(data)
		skipErr := msgpack.NewDecoder(br).Skip()
		if skipErr != nil {
			require.Error(t, err, "msgpack refuses %x (%v), valueLen accepts %d bytes", data, skipErr, n)
			return
		}
		require.NoError(t, err, "msgpack accepts %x", data)
		require.Equal(t, len(data)-br.Len(), n, "length of %x", data)
	})
}
