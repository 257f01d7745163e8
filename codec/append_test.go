package codec

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// encoderBytes returns what a msgpack.Encoder writes in encode.
func encoderBytes(t *testing.T, encode func(e *msgpack.Encoder) error) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, encode(msgpack.NewEncoder(&buf)))
	return buf.Bytes()
}

// TestAppendMatchesEncoder checks each append function against the
// Encoder it stands in for, on both sides of every size boundary.
func TestAppendMatchesEncoder(t *testing.T) {
	for _, n := range []uint64{0, 1, math.MaxInt8, math.MaxInt8 + 1, math.MaxUint8, math.MaxUint8 + 1,
		math.MaxUint16, math.MaxUint16 + 1, math.MaxUint32, math.MaxUint32 + 1, math.MaxUint64} {
		want := encoderBytes(t, func(e *msgpack.Encoder) error { return e.EncodeUint(n) })
		require.Equal(t, want, appendUint([]byte{}, n), "uint %d", n)
	}
	for _, n := range []int{0, 1, 15, 16, 31, 32, math.MaxUint8, math.MaxUint8 + 1, math.MaxUint16, math.MaxUint16 + 1} {
		s := strings.Repeat("x", n)
		want := encoderBytes(t, func(e *msgpack.Encoder) error { return e.EncodeString(s) })
		require.Equal(t, want, appendString([]byte{}, s), "string of %d bytes", n)
		want = encoderBytes(t, func(e *msgpack.Encoder) error { return e.EncodeBytesLen(n) })
		require.Equal(t, want, appendBytesLen([]byte{}, n), "bytes header of %d", n)
		want = encoderBytes(t, func(e *msgpack.Encoder) error { return e.EncodeArrayLen(n) })
		require.Equal(t, want, appendArrayLen([]byte{}, n), "array header of %d", n)
	}
}

// TestJobMessagesRoundTrip checks that the requests and responses
// encodeJobMessage writes read back as they were, whatever the sizes of
// their fields, alone and in batches; and that it leaves every other
// message to the Encoder.
func TestJobMessagesRoundTrip(t *testing.T) {
	long := strings.Repeat("e", math.MaxUint16+1)
	msgs := []Message{
		{Kind: KindRequest, ID: 0, JobType: "", PayloadKind: Blob},
		{Kind: KindRequest, ID: math.MaxUint64, JobType: strings.Repeat("t", 40), Timeout: 90 * time.Minute, PayloadKind: Blob, Payload: pattern(300)},
		{Kind: KindRequest, ID: 1 << 40, JobType: "sha", Timeout: time.Millisecond, Shared: true, PayloadKind: Value, Span: Span{Offset: math.MaxUint32 + 1, Length: 200}},
		{Kind: KindResponse, ID: 128, PayloadKind: Blob, Payload: pattern(70 << 10)},
		{Kind: KindResponse, ID: 7, ErrCode: "handler", ErrMessage: long, PayloadKind: Blob},
		{Kind: KindResponse, ID: 9, Shared: true, PayloadKind: Blob, Span: Span{Offset: 3, Length: 1 << 20}},
	}
	for i := range msgs {
		var buf bytes.Buffer
		w, r := NewWriter(&buf, 0), NewReader(&buf, 0)
		require.NoError(t, w.Write(&msgs[i]))
		var got Message
		require.NoError(t, r.Read(&got))
		requireSame(t, msgs[i], got)

		batch := NewBatch(w, batchOf(msgs[i].Kind))
		for range 20 {
			require.NoError(t, batch.Add(&msgs[i]))
		}
		require.NoError(t, batch.Flush())
		require.NoError(t, r.Read(&got))
		require.Len(t, got.Items, 20)
		for _, it := range got.Items {
			requireSame(t, msgs[i], it)
		}
	}
	for _, m := range []Message{
		{Kind: KindRequest, ID: 1, JobType: "x", Attempt: 2, PayloadKind: Blob}, // meta
		{Kind: KindResponse, ID: 1, PayloadKind: Value, Payload: []byte{0x01}},  // checked
		{Kind: KindChunk, ID: 1, PayloadKind: Blob},
		{Kind: KindPing, ID: 1},
	} {
		var buf bytes.Buffer
		_, ok := encodeJobMessage(&buf, &m)
		require.False(t, ok, "%s", m.Kind)
		require.Zero(t, buf.Len())
	}
}

// batchOf returns the batch kind holding messages of kind k.
func batchOf(k Kind) Kind {
	if k == KindRequest {
		return KindBatchRequest
	}
	return KindBatchResponse
}

// requireSame checks that got reads back as want was written.
func requireSame(t *testing.T, want, got Message) {
	t.Helper()
	require.Equal(t, want.Kind, got.Kind)
	require.Equal(t, want.ID, got.ID)
	require.Equal(t, want.JobType, got.JobType)
	require.Equal(t, durationToMillis(want.Timeout), durationToMillis(got.Timeout))
	require.Equal(t, want.ErrCode, got.ErrCode)
	require.Equal(t, want.ErrMessage, got.ErrMessage)
	require.Equal(t, want.PayloadKind, got.PayloadKind)
	require.Equal(t, want.Shared, got.Shared)
	require.Equal(t, want.Span, got.Span)
	require.Equal(t, len(want.Payload), len(got.Payload))
	require.True(t, bytes.Equal(want.Payload, got.Payload))
}
