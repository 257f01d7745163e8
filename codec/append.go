package codec

import (
	"bytes"
	"encoding/binary"
	"math"

	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// The append functions write msgpack's headers and scalars into a byte
// slice exactly as msgpack.Encoder writes them (in the fewest bytes, as
// its EncodeUint, EncodeString, EncodeBytesLen and EncodeArrayLen do), for
// the messages of every job: a request and a response cost a few appends
// instead of a dozen calls through the Encoder's writer interface. Their
// test checks every size boundary against the Encoder's bytes.

// appendUint appends n as Encoder.EncodeUint does.
func appendUint(b []byte, n uint64) []byte {
	switch {
	case n <= math.MaxInt8:
		return append(b, byte(n))
	case n <= math.MaxUint8:
		return append(b, msgpcode.Uint8, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, msgpcode.Uint16), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, msgpcode.Uint32), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, msgpcode.Uint64), n)
}

// appendString appends s as Encoder.EncodeString does (without interning).
func appendString(b []byte, s string) []byte {
	n := len(s)
	switch {
	case n < 32:
		b = append(b, msgpcode.FixedStrLow|byte(n))
	case n <= math.MaxUint8:
		b = append(b, msgpcode.Str8, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, msgpcode.Str16), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, msgpcode.Str32), uint32(n))
	}
	return append(b, s...)
}

// appendBytesLen appends the header of n bytes of binary, as
// Encoder.EncodeBytesLen does.
func appendBytesLen(b []byte, n int) []byte {
	switch {
	case n <= math.MaxUint8:
		return append(b, msgpcode.Bin8, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, msgpcode.Bin16), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, msgpcode.Bin32), uint32(n))
}

// appendArrayLen appends the header of an array of n elements, as
// Encoder.EncodeArrayLen does.
func appendArrayLen(b []byte, n int) []byte {
	switch {
	case n < 16:
		return append(b, msgpcode.FixedArrayLow|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, msgpcode.Array16), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, msgpcode.Array32), uint32(n))
}

// encodeJobMessage writes into buf, as encodeMessage would, a request
// without meta or a response, but for the raw bytes of its payload, which
// it returns for the caller to send right after. ok is false, with nothing
// written, for any other message, or one whose payload head only the
// Encoder writes (a Value payload, which must be checked, or an unknown
// payload kind).
func encodeJobMessage(buf *bytes.Buffer, m *Message) (payload []byte, ok bool) {
	switch {
	case m.Kind == KindRequest && !m.hasMeta(), m.Kind == KindResponse:
	default:
		return nil, false
	}
	if !m.Shared && m.PayloadKind != Blob || m.PayloadKind > Value {
		return nil, false
	}
	b := buf.AvailableBuffer()
	b = append(b, msgpcode.FixedArrayLow|6)
	b = appendUint(b, uint64(m.Kind))
	b = appendUint(b, m.ID)
	if m.Kind == KindRequest {
		b = appendString(b, m.JobType)
		b = appendUint(b, durationToMillis(m.Timeout))
	} else {
		b = appendString(b, m.ErrCode)
		b = appendString(b, m.ErrMessage)
	}
	if m.Shared {
		b = appendUint(b, uint64(m.PayloadKind|sharedBit))
		b = append(b, msgpcode.FixedArrayLow|2)
		b = appendUint(b, m.Span.Offset)
		b = appendUint(b, m.Span.Length)
	} else {
		b = appendUint(b, uint64(Blob))
		b = appendBytesLen(b, len(m.Payload))
		payload = m.Payload
	}
	buf.Write(b)
	return payload, true
}
