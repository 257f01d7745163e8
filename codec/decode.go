package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
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

// parser reads msgpack elements from b, starting at off.
type parser struct {
	b    []byte
	off  int
	strs *interner // nil: do not intern
}

func (p *parser) code() (byte, error) {
	if p.off >= len(p.b) {
		return 0, errShort
	}
	c := p.b[p.off]
	p.off++
	return c, nil
}

// take returns the next n bytes, capacity capped so that appending to them
// cannot overwrite the rest of the frame.
func (p *parser) take(n uint64) ([]byte, error) {
	if n > uint64(len(p.b)-p.off) {
		return nil, fmt.Errorf("element of %d bytes, %d left in frame", n, len(p.b)-p.off)
	}
	i := p.off
	p.off += int(n)
	return p.b[i:p.off:p.off], nil
}

// be reads an n-byte big-endian unsigned number (n is 1, 2, 4 or 8).
func (p *parser) be(n int) (uint64, error) {
	if len(p.b)-p.off < n {
		return 0, errShort
	}
	b := p.b[p.off : p.off+n]
	p.off += n
	switch n {
	case 1:
		return uint64(b[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(b)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(b)), nil
	}
	return binary.BigEndian.Uint64(b), nil
}

// integer reads any msgpack integer. neg reports a negative value, whose
// two's complement is returned in v.
func (p *parser) integer(what string) (v uint64, neg bool, err error) {
	c, err := p.code()
	if err != nil {
		return 0, false, fmt.Errorf("%s: %w", what, err)
	}
	switch {
	case c <= 0x7f:
		return uint64(c), false, nil
	case c >= 0xe0:
		return uint64(int64(int8(c))), true, nil
	case c >= 0xcc && c <= 0xcf: // uint8..uint64
		v, err = p.be(1 << (c - 0xcc))
	case c >= 0xd0 && c <= 0xd3: // int8..int64
		n := 1 << (c - 0xd0)
		if v, err = p.be(n); err == nil {
			shift := 64 - 8*n
			s := int64(v<<shift) >> shift // sign-extend
			v, neg = uint64(s), s < 0
		}
	default:
		return 0, false, fmt.Errorf("%s: want an integer, got %s", what, typeName(c))
	}
	if err != nil {
		return 0, false, fmt.Errorf("%s: %w", what, err)
	}
	return v, neg, nil
}

// uint reads a non-negative integer no larger than limit.
func (p *parser) uint(what string, limit uint64) (uint64, error) {
	v, neg, err := p.integer(what)
	if err != nil {
		return 0, err
	}
	if neg {
		return 0, fmt.Errorf("%s: %d is negative", what, int64(v))
	}
	if v > limit {
		return 0, fmt.Errorf("%s: %d exceeds %d", what, v, limit)
	}
	return v, nil
}

// int reads an integer that fits an int64.
func (p *parser) int(what string) (int64, error) {
	v, neg, err := p.integer(what)
	if err != nil {
		return 0, err
	}
	if !neg && v > math.MaxInt64 {
		return 0, fmt.Errorf("%s: %d overflows int64", what, v)
	}
	return int64(v), nil
}

// raw reads a str or bin and returns its bytes; nil reads as no bytes (a nil
// slice).
func (p *parser) raw(what string) ([]byte, error) {
	c, err := p.code()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var n uint64
	switch {
	case c >= 0xa0 && c <= 0xbf: // fixstr
		n = uint64(c & 0x1f)
	case c == 0xd9, c == 0xc4: // str8, bin8
		n, err = p.be(1)
	case c == 0xda, c == 0xc5: // str16, bin16
		n, err = p.be(2)
	case c == 0xdb, c == 0xc6: // str32, bin32
		n, err = p.be(4)
	case c == 0xc0:
		return nil, nil
	default:
		return nil, fmt.Errorf("%s: want a string or bin, got %s", what, typeName(c))
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	b, err := p.take(n)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return b, nil
}

func (p *parser) str(what string, intern bool) (string, error) {
	b, err := p.raw(what)
	if err != nil {
		return "", err
	}
	if intern {
		return p.strs.str(b), nil
	}
	return string(b), nil
}

// arrayLen reads an array header; nil reads as an empty array if nilOK.
func (p *parser) arrayLen(what string, nilOK bool) (uint64, error) {
	c, err := p.code()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	var n uint64
	switch {
	case c >= 0x90 && c <= 0x9f:
		n = uint64(c & 0x0f)
	case c == 0xdc:
		n, err = p.be(2)
	case c == 0xdd:
		n, err = p.be(4)
	case c == 0xc0 && nilOK:
		return 0, nil
	default:
		return 0, fmt.Errorf("%s: want an array, got %s", what, typeName(c))
	}
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	return n, nil
}

// mapLen reads a map header; nil reads as an empty map.
func (p *parser) mapLen(what string) (uint64, error) {
	c, err := p.code()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	var n uint64
	switch {
	case c >= 0x80 && c <= 0x8f:
		n = uint64(c & 0x0f)
	case c == 0xde:
		n, err = p.be(2)
	case c == 0xdf:
		n, err = p.be(4)
	case c == 0xc0:
		return 0, nil
	default:
		return 0, fmt.Errorf("%s: want a map, got %s", what, typeName(c))
	}
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	return n, nil
}

// typeName names the msgpack type that code c starts.
func typeName(c byte) string {
	switch {
	case c <= 0x7f, c >= 0xe0, c >= 0xcc && c <= 0xd3:
		return "an integer"
	case c >= 0x80 && c <= 0x8f, c == 0xde, c == 0xdf:
		return "a map"
	case c >= 0x90 && c <= 0x9f, c == 0xdc, c == 0xdd:
		return "an array"
	case c >= 0xa0 && c <= 0xbf, c >= 0xd9 && c <= 0xdb:
		return "a string"
	case c == 0xc0:
		return "nil"
	case c == 0xc2, c == 0xc3:
		return "a boolean"
	case c >= 0xc4 && c <= 0xc6:
		return "a bin"
	case c >= 0xc7 && c <= 0xc9, c >= 0xd4 && c <= 0xd8:
		return "an ext"
	case c == 0xca, c == 0xcb:
		return "a float"
	}
	return fmt.Sprintf("invalid code 0x%02x", c)
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

// decodeItems reads the array of a batch's items into m.Items.
func decodeItems(p *parser, m *Message) error {
	n, err := p.arrayLen("batch items", false)
	if err != nil {
		return err
	}
	if n == 0 || n > MaxBatch {
		return fmt.Errorf("a %s of %d items, want 1 to %d", m.Kind, n, MaxBatch)
	}
	// Every item takes at least one byte: refuse a count the frame cannot
	// hold before growing the slice.
	if n > uint64(len(p.b)-p.off) {
		return fmt.Errorf("batch items: %d announced, %d bytes left in frame", n, len(p.b)-p.off)
	}
	want := itemKind(m.Kind)
	m.Items = slices.Grow(m.Items[:0], int(n))[:n]
	for i := range m.Items {
		it := &m.Items[i]
		*it = Message{}
		if err := decodeMessage(p, it, want); err != nil {
			return fmt.Errorf("item %d: %w", i, err)
		}
	}
	return nil
}

// decodeFeatures reads the array of feature names of a hello or ready,
// ignoring the names this package does not know.
func decodeFeatures(p *parser) (Features, error) {
	n, err := p.arrayLen("features", true)
	if err != nil {
		return 0, err
	}
	if n > uint64(len(p.b)-p.off) {
		return 0, fmt.Errorf("features: %d announced, %d bytes left in frame", n, len(p.b)-p.off)
	}
	var f Features
	for i := uint64(0); i < n; i++ {
		name, err := p.raw("feature")
		if err != nil {
			return 0, fmt.Errorf("feature %d: %w", i, err)
		}
		f |= featureOf(name)
	}
	return f, nil
}

// The keys of a request's meta map.
const (
	metaAttempt     = "attempt"
	metaTraceParent = "traceparent"
	metaTraceState  = "tracestate"
	metaCredit      = "credit"
)

// decodeMeta reads a request's meta map. Keys this package does not know
// are skipped, their values checked as a Value payload is; a known key may
// appear once.
func decodeMeta(p *parser, m *Message) error {
	n, err := p.mapLen("meta")
	if err != nil {
		return err
	}
	if n > uint64(len(p.b)-p.off)/2 {
		return fmt.Errorf("meta: %d entries announced, %d bytes left in frame", n, len(p.b)-p.off)
	}
	var seen uint8
	for i := uint64(0); i < n; i++ {
		key, err := p.raw("meta key")
		if err != nil {
			return err
		}
		var bit uint8
		switch string(key) {
		case metaAttempt:
			bit = 1
			v, err := p.uint("meta attempt", math.MaxUint32)
			if err != nil {
				return err
			}
			m.Attempt = uint32(v)
		case metaTraceParent:
			bit = 2
			if m.TraceParent, err = p.str("meta traceparent", false); err != nil {
				return err
			}
		case metaTraceState:
			bit = 4
			if m.TraceState, err = p.str("meta tracestate", false); err != nil {
				return err
			}
		case metaCredit:
			bit = 8
			v, err := p.uint("meta credit", math.MaxUint32)
			if err != nil {
				return err
			}
			m.Credit = uint32(v)
		default:
			vn, err := valueLen(p.b[p.off:], maxValueDepth)
			if err != nil {
				return fmt.Errorf("meta %q: %w", key, err)
			}
			p.off += vn
		}
		if seen&bit != 0 {
			return fmt.Errorf("meta: key %q twice", key)
		}
		seen |= bit
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
