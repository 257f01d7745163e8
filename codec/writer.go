package codec

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/bits"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// inlineLimit is the payload size up to which a Writer copies the payload
// into its buffer and issues one write; larger payloads go out in a second
// write straight from the caller's slice.
const inlineLimit = 64 << 10

// Writer encodes messages into frames and writes them to an io.Writer. It
// keeps one buffer across calls, so writing a message whose payload fits in
// 64 KiB costs no allocation once the buffer has grown.
type Writer struct {
	w        io.Writer
	maxFrame int
	buf      bytes.Buffer
	enc      *msgpack.Encoder
	batch    *Batch // for Write of a batch message
}

// NewWriter returns a Writer that writes frames to w and refuses frames longer
// than maxFrame bytes (header excluded). A maxFrame <= 0 means DefaultMaxFrame.
func NewWriter(w io.Writer, maxFrame int) *Writer {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	wr := &Writer{w: w, maxFrame: maxFrame}
	wr.enc = msgpack.NewEncoder(&wr.buf)
	return wr
}

// SetMaxFrame changes the largest frame the Writer sends, typically to the
// limit the peer announced in the handshake. A value <= 0 is ignored.
func (w *Writer) SetMaxFrame(n int) {
	if n > 0 {
		w.maxFrame = n
	}
}

// MaxFrame returns the largest frame the Writer sends.
func (w *Writer) MaxFrame() int { return w.maxFrame }

// keepLimit is the largest buffer a Writer keeps between frames; a larger
// one, grown by a long string, is dropped after the write.
const keepLimit = 4 * inlineLimit

// Write encodes m as one frame and writes it. Without writing anything, it
// returns an error matching ErrFrameTooLarge when the frame would exceed the
// limit, and one matching ErrMalformed when a Value payload is not exactly
// one msgpack value nested at most 256 deep (a frame the peer would refuse).
// Otherwise it returns the underlying writer's error.
//
// A frame up to 64 KiB of payload goes out in one call to the underlying
// writer; a larger one in two, the second straight from m.Payload.
//
// A BatchRequest or BatchResponse is written as a Batch of its Items would
// be: whole, or, when the frame would exceed the limit, not at all. A Batch
// packs items into frames of the right size one by one.
func (w *Writer) Write(m *Message) error {
	if itemKind(m.Kind) != 0 {
		return w.writeBatch(m)
	}
	defer w.trim()
	payload, err := w.encode(m)
	if err != nil {
		return err
	}
	n := w.buf.Len() - HeaderSize + len(payload)
	limit := min(uint64(w.maxFrame), math.MaxUint32) // what the header can say
	if uint64(n) > limit {
		return fmt.Errorf("%w: %s frame of %d bytes, limit %d", ErrFrameTooLarge, m.Kind, n, limit)
	}
	b := w.buf.Bytes()
	binary.BigEndian.PutUint32(b[:HeaderSize], uint32(n))
	if len(payload) <= inlineLimit {
		w.buf.Write(payload)
		_, err = w.w.Write(w.buf.Bytes())
		return err
	}
	if _, err = w.w.Write(b); err != nil {
		return err
	}
	_, err = w.w.Write(payload)
	return err
}

// trim drops a buffer grown beyond keepLimit.
func (w *Writer) trim() {
	if w.buf.Cap() > keepLimit {
		w.buf = bytes.Buffer{} // w.enc writes to &w.buf, which stays valid
	}
}

// encode writes the header placeholder and every element of m but the raw
// payload bytes into w.buf, and returns the bytes still to be sent after it.
func (w *Writer) encode(m *Message) ([]byte, error) {
	w.buf.Reset()
	w.buf.Write([]byte{0, 0, 0, 0}) // the length, filled in by Write
	return encodeMessage(w.enc, &w.buf, m)
}

// encodeMessage writes the array of m into buf, the buffer e writes to,
// but for the raw bytes of its payload, which it returns for the caller to
// send right after. Requests and responses take encodeJobMessage's appends.
func encodeMessage(e *msgpack.Encoder, buf *bytes.Buffer, m *Message) ([]byte, error) {
	if payload, ok := encodeJobMessage(buf, m); ok {
		return payload, nil
	}
	var payload []byte
	switch m.Kind {
	case KindHello:
		e.EncodeArrayLen(3 + handshakeElems(m))
		e.EncodeUint(uint64(m.Kind))
		e.EncodeUint(uint64(m.Version))
		e.EncodeUint(uint64(m.MaxFrame))
		encodeHandshakeTail(e, m)
	case KindReady:
		e.EncodeArrayLen(5 + handshakeElems(m))
		e.EncodeUint(uint64(m.Kind))
		e.EncodeUint(uint64(m.Version))
		e.EncodeUint(uint64(m.MaxFrame))
		e.EncodeInt(int64(m.PID))
		e.EncodeArrayLen(len(m.JobTypes))
		for _, t := range m.JobTypes {
			e.EncodeString(t)
		}
		encodeHandshakeTail(e, m)
	case KindRequest:
		meta := m.hasMeta()
		if meta {
			e.EncodeArrayLen(7)
		} else {
			e.EncodeArrayLen(6)
		}
		e.EncodeUint(uint64(m.Kind))
		e.EncodeUint(m.ID)
		e.EncodeString(m.JobType)
		e.EncodeUint(durationToMillis(m.Timeout))
		if meta {
			encodeMeta(e, m)
		}
		p, err := encodePayloadHead(e, m)
		if err != nil {
			return nil, err
		}
		payload = p
	case KindResponse:
		e.EncodeArrayLen(6)
		e.EncodeUint(uint64(m.Kind))
		e.EncodeUint(m.ID)
		e.EncodeString(m.ErrCode)
		e.EncodeString(m.ErrMessage)
		p, err := encodePayloadHead(e, m)
		if err != nil {
			return nil, err
		}
		payload = p
	case KindCancel, KindPing, KindPong:
		e.EncodeArrayLen(2)
		e.EncodeUint(uint64(m.Kind))
		e.EncodeUint(m.ID)
	case KindShutdown:
		e.EncodeArrayLen(2)
		e.EncodeUint(uint64(m.Kind))
		e.EncodeUint(durationToMillis(m.Grace))
	case KindChunk:
		e.EncodeArrayLen(4)
		e.EncodeUint(uint64(m.Kind))
		e.EncodeUint(m.ID)
		p, err := encodePayloadHead(e, m)
		if err != nil {
			return nil, err
		}
		payload = p
	case KindCredit:
		e.EncodeArrayLen(3)
		e.EncodeUint(uint64(m.Kind))
		e.EncodeUint(m.ID)
		e.EncodeUint(uint64(m.Credit))
	default:
		return nil, fmt.Errorf("codec: cannot write message of unknown %s", m.Kind)
	}
	return payload, nil
}

// handshakeElems is how many optional elements a Hello or Ready carries:
// SharedSize when it is not 0 or Features follow it, and Features when not
// empty.
func handshakeElems(m *Message) int {
	switch {
	case m.Features != 0:
		return 2
	case m.SharedSize != 0:
		return 1
	}
	return 0
}

// encodeHandshakeTail writes the optional elements of a Hello or Ready.
func encodeHandshakeTail(e *msgpack.Encoder, m *Message) {
	if handshakeElems(m) == 0 {
		return
	}
	e.EncodeUint(m.SharedSize)
	if m.Features == 0 {
		return
	}
	e.EncodeArrayLen(bits.OnesCount32(uint32(m.Features & AllFeatures)))
	for i, name := range featureNames {
		if m.Features&(1<<i) != 0 {
			e.EncodeString(name)
		}
	}
}

// encodeMeta writes the meta map of a Request: the fields that are set, in
// a fixed order.
func encodeMeta(e *msgpack.Encoder, m *Message) {
	n := 0
	for _, set := range [...]bool{m.Attempt > 1, m.TraceParent != "", m.TraceState != "", m.Credit > 0} {
		if set {
			n++
		}
	}
	e.EncodeMapLen(n)
	if m.Attempt > 1 {
		e.EncodeString(metaAttempt)
		e.EncodeUint(uint64(m.Attempt))
	}
	if m.TraceParent != "" {
		e.EncodeString(metaTraceParent)
		e.EncodeString(m.TraceParent)
	}
	if m.TraceState != "" {
		e.EncodeString(metaTraceState)
		e.EncodeString(m.TraceState)
	}
	if m.Credit > 0 {
		e.EncodeString(metaCredit)
		e.EncodeUint(uint64(m.Credit))
	}
}

// encodePayloadHead writes the payload kind and what precedes the payload's
// raw bytes: the bin header for Blob, nothing for Value (whose bytes are
// already msgpack), and the whole [offset, length] span of a payload in the
// shared region.
func encodePayloadHead(e *msgpack.Encoder, m *Message) ([]byte, error) {
	if m.Shared {
		if m.PayloadKind > Value {
			return nil, fmt.Errorf("codec: cannot write unknown %s", m.PayloadKind)
		}
		e.EncodeUint(uint64(m.PayloadKind | sharedBit))
		e.EncodeArrayLen(2)
		e.EncodeUint(m.Span.Offset)
		e.EncodeUint(m.Span.Length)
		return nil, nil
	}
	e.EncodeUint(uint64(m.PayloadKind))
	switch m.PayloadKind {
	case Blob:
		e.EncodeBytesLen(len(m.Payload))
		return m.Payload, nil
	case Value:
		if len(m.Payload) == 0 {
			e.EncodeNil()
			return nil, nil
		}
		if err := CheckValue(m.Payload); err != nil {
			return nil, fmt.Errorf("cannot write %s: %w", m.Kind, err)
		}
		return m.Payload, nil
	}
	return nil, fmt.Errorf("codec: cannot write unknown %s", m.PayloadKind)
}

// durationToMillis rounds d up to whole milliseconds; d <= 0 gives 0.
func durationToMillis(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	ms := uint64(d / time.Millisecond)
	if d%time.Millisecond != 0 {
		ms++ // not d+ms-1, which overflows near math.MaxInt64
	}
	return ms
}
