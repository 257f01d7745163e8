package codec

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// The decoder below reads a frame body in place. It is stricter than a
// general msgpack decoder where a lax reading would let a malformed frame
// through: integers must be non-negative where the field is unsigned and
// must fit the field, and nil stands only for an empty string, blob or job
// type list, never for a number.

var errShort = errors.New("frame ends inside an element")

// maxInterned bounds the strings a Reader interns, so that a peer sending
// ever new job types or error codes cannot grow it without limit.
const (
	maxInterned    = 256
	maxInternedLen = 128
)

// interner maps the bytes of short strings seen before to one string, so
// that the job types and error codes repeated in every frame of a stream are
// allocated once.
type interner struct {
	m map[string]string
}

func (t *interner) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if t == nil || len(b) > maxInternedLen {
		return string(b)
	}
	if s, ok := t.m[string(b)]; ok { // no allocation: the compiler
		return s // optimises a map index by string(bytes)
	}
	s := string(b)
	if len(t.m) < maxInterned {
		if t.m == nil {
			t.m = make(map[string]string)
		}
		t.m[s] = s
	}
	return s
}

// shape is how many elements the array of a kind may have, indexed by kind;
// the optional elements are the last ones (hello, ready) or the meta element
// before the payload (request).
var shapes = [...]struct{ min, max uint64 }{
	KindHello:         {3, 5},
	KindReady:         {5, 7},
	KindRequest:       {6, 7},
	KindResponse:      {6, 6},
	KindCancel:        {2, 2},
	KindPing:          {2, 2},
	KindPong:          {2, 2},
	KindShutdown:      {2, 2},
	KindBatchRequest:  {2, 2},
	KindBatchResponse: {2, 2},
	KindChunk:         {4, 4},
	KindCredit:        {3, 3},
}

// itemKind is the kind of the items of a batch kind, 0 for other kinds.
func itemKind(k Kind) Kind {
	switch k {
	case KindBatchRequest:
		return KindRequest
	case KindBatchResponse:
		return KindResponse
	}
	return 0
}

// decodeFrame decodes the message in frame into m. strs may be nil.
func decodeFrame(frame []byte, m *Message, strs *interner) error {
	m.Reset()
	p := parser{b: frame, strs: strs}
	if err := decodeMessage(&p, m, 0); err != nil {
		return err
	}
	if rest := len(frame) - p.off; rest != 0 {
		return fmt.Errorf("%d trailing bytes after %s message", rest, m.Kind)
	}
	return nil
}

// decodeMessage decodes the message array at p's position into m, which is
// clear. want is the kind the message must have as an item of a batch, 0
// for a frame's message. A batch's items are decoded by the loop of
// decodeItems, never by recursion: items cannot be batches.
func decodeMessage(p *parser, m *Message, want Kind) error {
	n, err := p.arrayLen("message", false)
	if err != nil {
		return err
	}
	if n == 0 {
		return errors.New("message is an empty array")
	}
	k, err := p.uint("kind", math.MaxUint8)
	if err != nil {
		return err
	}
	m.Kind = Kind(k)
	if int(k) >= len(shapes) || shapes[k].min == 0 {
		return fmt.Errorf("unknown message kind %d", k)
	}
	if want != 0 && m.Kind != want {
		return fmt.Errorf("%s where a batch holds only %s messages", m.Kind, want)
	}
	if sh := shapes[k]; n < sh.min || n > sh.max {
		if sh.min == sh.max {
			return fmt.Errorf("%s message has %d elements, want %d", m.Kind, n, sh.min)
		}
		return fmt.Errorf("%s message has %d elements, want %d to %d", m.Kind, n, sh.min, sh.max)
	}
	switch m.Kind {
	case KindHello, KindReady:
		v, err := p.uint("version", math.MaxUint32)
		if err != nil {
			return err
		}
		m.Version = uint32(v)
		if v, err = p.uint("max frame", math.MaxUint32); err != nil {
			return err
		}
		m.MaxFrame = uint32(v)
		base := shapes[k].min
		if m.Kind == KindReady {
			if err := decodeReady(p, m); err != nil {
				return err
			}
		}
		if n > base {
			if m.SharedSize, err = p.uint("shared size", math.MaxUint64); err != nil {
				return err
			}
		}
		if n > base+1 {
			if m.Features, err = decodeFeatures(p); err != nil {
				return err
			}
		}
	case KindRequest:
		if m.ID, err = p.uint("id", math.MaxUint64); err != nil {
			return err
		}
		if m.JobType, err = p.str("job type", true); err != nil {
			return err
		}
		ms, err := p.uint("timeout", math.MaxUint64)
		if err != nil {
			return err
		}
		m.Timeout = millisToDuration(ms)
		if n == shapes[k].max {
			if err := decodeMeta(p, m); err != nil {
				return err
			}
		}
		if err := decodePayload(p, m); err != nil {
			return err
		}
	case KindResponse:
		if m.ID, err = p.uint("id", math.MaxUint64); err != nil {
			return err
		}
		if m.ErrCode, err = p.str("error code", true); err != nil {
			return err
		}
		if m.ErrMessage, err = p.str("error message", false); err != nil {
			return err
		}
		if err := decodePayload(p, m); err != nil {
			return err
		}
	case KindCancel, KindPing, KindPong:
		if m.ID, err = p.uint("id", math.MaxUint64); err != nil {
			return err
		}
	case KindShutdown:
		ms, err := p.uint("grace", math.MaxUint64)
		if err != nil {
			return err
		}
		m.Grace = millisToDuration(ms)
	case KindBatchRequest, KindBatchResponse:
		return decodeItems(p, m)
	case KindChunk:
		if m.ID, err = p.uint("id", math.MaxUint64); err != nil {
			return err
		}
		return decodePayload(p, m)
	case KindCredit:
		if m.ID, err = p.uint("id", math.MaxUint64); err != nil {
			return err
		}
		v, err := p.uint("credit", math.MaxUint32)
		if err != nil {
			return err
		}
		m.Credit = uint32(v)
	}
	return nil
}

func decodeReady(p *parser, m *Message) error {
	pid, err := p.int("pid")
	if err != nil {
		return err
	}
	if int64(int(pid)) != pid {
		return fmt.Errorf("pid: %d overflows int", pid)
	}
	m.PID = int(pid)
	nt, err := p.arrayLen("job types", true)
	if err != nil {
		return err
	}
	// Every job type takes at least one byte: refuse a count the frame
	// cannot hold before growing the slice.
	if nt > uint64(len(p.b)-p.off) {
		return fmt.Errorf("job types: %d announced, %d bytes left in frame", nt, len(p.b)-p.off)
	}
	for i := uint64(0); i < nt; i++ {
		s, err := p.str("job type", true)
		if err != nil {
			return fmt.Errorf("job type %d: %w", i, err)
		}
		m.JobTypes = append(m.JobTypes, s)
	}
	return nil
}

// decodePayload reads the payload kind and the payload, the message's last
// element, and points m.Payload into the frame.
func decodePayload(p *parser, m *Message) error {
	pk, err := p.uint("payload kind", math.MaxUint8)
	if err != nil {
		return err
	}
	if pk&sharedBit != 0 && pk&^sharedBit <= uint64(Value) {
		m.PayloadKind, m.Shared = PayloadKind(pk&^sharedBit), true
		return decodeSpan(p, m)
	}
	m.PayloadKind = PayloadKind(pk)
	switch m.PayloadKind {
	case Blob:
		if m.Payload, err = p.raw("blob payload"); err != nil {
			return err
		}
		return nil
	case Value:
		n, err := valueLen(p.b[p.off:], maxValueDepth)
		if err != nil {
			return fmt.Errorf("value payload: %w", err)
		}
		m.Payload, _ = p.take(uint64(n))
		return nil
	}
	return fmt.Errorf("unknown payload kind %d", pk)
}

// decodeSpan reads the [offset, length] array that stands for a payload in
// the shared region.
func decodeSpan(p *parser, m *Message) error {
	n, err := p.arrayLen("shared payload", false)
	if err != nil {
		return err
	}
	if n != 2 {
		return fmt.Errorf("shared payload: array of %d elements, want [offset, length]", n)
	}
	if m.Span.Offset, err = p.uint("shared payload offset", math.MaxUint64); err != nil {
		return err
	}
	if m.Span.Length, err = p.uint("shared payload length", math.MaxUint64); err != nil {
		return err
	}
	return nil
}

func millisToDuration(ms uint64) time.Duration {
	const maxMs = uint64(math.MaxInt64) / uint64(time.Millisecond)
	if ms > maxMs {
		ms = maxMs
	}
	return time.Duration(ms) * time.Millisecond
}
