package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/vmihailenco/msgpack/v5"
)

// Batch collects requests (for a BatchRequest) or responses (for a
// BatchResponse) into one batch frame, which Flush writes through its
// Writer. Each item is encoded as Add is called, so the Batch knows the
// frame's size at every step: Add refuses, adding nothing, an item that
// would take the frame past the Writer's limit or the batch past MaxBatch
// items (ErrBatchFull: flush, then add it again), or that is too large even
// alone (ErrFrameTooLarge). Reusing a Batch costs no allocation once its
// buffer has grown.
//
// The payload of an item larger than 64 KiB is not copied: its slice must
// stay unchanged until Flush or Reset. A Batch has a buffer of its own, so
// the Writer may write other messages while items are being collected; the
// caller orders them (a cancel for an item, for instance, must follow the
// batch that carries the item). Neither a Batch nor its Writer is safe for
// concurrent use.
type Batch struct {
	w    *Writer
	kind Kind
	buf  bytes.Buffer
	enc  *msgpack.Encoder
	n    int       // items
	size int       // bytes of the items, payloads sent apart included
	segs []segment // payloads sent apart, in order
}

// segment is a payload written straight from the caller's slice, between
// buf[:at] and buf[at:].
type segment struct {
	at int
	p  []byte
}

// batchPrefix is the room a Batch keeps before its items: the frame's
// length, the message's array header (two elements), its kind and, at most,
// an array16 header for the items. A batch of up to 15 items needs a 1-byte
// fixarray header instead; Flush then moves the 6 bytes before it up by 2,
// never the items.
const batchPrefix = HeaderSize + 1 + 1 + 3

var zeroPrefix [batchPrefix]byte

// NewBatch returns an empty Batch of kind KindBatchRequest or
// KindBatchResponse that writes through w. It panics for another kind.
func NewBatch(w *Writer, kind Kind) *Batch {
	if itemKind(kind) == 0 {
		panic("codec: NewBatch of " + kind.String())
	}
	b := &Batch{w: w, kind: kind}
	b.enc = msgpack.NewEncoder(&b.buf)
	b.Reset()
	return b
}

// Kind returns the batch's kind.
func (b *Batch) Kind() Kind { return b.kind }

// Len returns the number of items added since the last Flush or Reset.
func (b *Batch) Len() int { return b.n }

// Size returns the length of the frame's body if it were flushed now.
func (b *Batch) Size() int { return batchBodySize(b.n, b.size) }

// batchBodySize is the body length of a batch of n items of size bytes.
func batchBodySize(n, size int) int {
	hdr := 1
	if n > 15 {
		hdr = 3 // MaxBatch fits in an array16
	}
	return 2 + hdr + size
}

// Reset drops the items added since the last Flush, writing nothing.
func (b *Batch) Reset() {
	if b.buf.Cap() > keepLimit {
		b.buf = bytes.Buffer{} // b.enc writes to &b.buf, which stays valid
	}
	b.buf.Reset()
	b.buf.Write(zeroPrefix[:])
	b.n, b.size = 0, 0
	clear(b.segs)
	b.segs = b.segs[:0]
}

// Add encodes m, a request or a response as the batch's kind holds, as the
// batch's next item. Without adding anything it returns an error matching
// ErrBatchFull when the batch has no room for m, ErrFrameTooLarge when m is
// too large for any batch under the Writer's limit, and ErrMalformed when
// m's Value payload is not exactly one msgpack value, as Writer.Write does.
func (b *Batch) Add(m *Message) error {
	want := itemKind(b.kind)
	if m.Kind != want {
		return fmt.Errorf("codec: a %s holds %s messages, not %s", b.kind, want, m.Kind)
	}
	if b.n >= MaxBatch {
		return fmt.Errorf("%w: %d items", ErrBatchFull, b.n)
	}
	before := b.buf.Len()
	payload, err := encodeMessage(b.enc, &b.buf, m)
	if err != nil {
		b.buf.Truncate(before)
		return err
	}
	item := b.buf.Len() - before + len(payload)
	limit := min(uint64(b.w.maxFrame), math.MaxUint32)
	if n := batchBodySize(1, item); uint64(n) > limit {
		b.buf.Truncate(before)
		return fmt.Errorf("%w: %s %d makes a %s frame of %d bytes alone, limit %d", ErrFrameTooLarge, m.Kind, m.ID, b.kind, n, limit)
	}
	if n := batchBodySize(b.n+1, b.size+item); uint64(n) > limit {
		b.buf.Truncate(before)
		return fmt.Errorf("%w: %s %d would make the frame %d bytes, limit %d", ErrBatchFull, m.Kind, m.ID, n, limit)
	}
	if len(payload) > inlineLimit {
		b.segs = append(b.segs, segment{at: b.buf.Len(), p: payload})
	} else {
		b.buf.Write(payload)
	}
	b.n++
	b.size += item
	return nil
}

// Flush writes the items added since the last Flush as one frame and
// empties the batch; with no item it writes nothing. Payloads larger than
// 64 KiB go out in writes of their own, straight from their slices, as
// Writer.Write sends them. It returns the underlying writer's error.
func (b *Batch) Flush() error {
	if b.n == 0 {
		return nil
	}
	defer b.Reset()
	buf := b.buf.Bytes()
	start := 0
	if b.n <= 15 {
		start = 2
		buf[batchPrefix-1] = 0x90 | byte(b.n)
	} else {
		buf[batchPrefix-3] = 0xdc
		binary.BigEndian.PutUint16(buf[batchPrefix-2:], uint16(b.n))
	}
	binary.BigEndian.PutUint32(buf[start:], uint32(b.Size()))
	buf[start+HeaderSize] = 0x92
	buf[start+HeaderSize+1] = byte(b.kind)
	pos := start
	for _, s := range b.segs {
		if _, err := b.w.w.Write(buf[pos:s.at]); err != nil {
			return err
		}
		if _, err := b.w.w.Write(s.p); err != nil {
			return err
		}
		pos = s.at
	}
	if pos == len(buf) {
		return nil
	}
	_, err := b.w.w.Write(buf[pos:])
	return err
}

// writeBatch writes a batch message whole, or nothing.
func (w *Writer) writeBatch(m *Message) error {
	if len(m.Items) == 0 || len(m.Items) > MaxBatch {
		return fmt.Errorf("%w: a %s of %d items, want 1 to %d", ErrMalformed, m.Kind, len(m.Items), MaxBatch)
	}
	if w.batch == nil || w.batch.kind != m.Kind {
		w.batch = NewBatch(w, m.Kind)
	}
	b := w.batch
	for i := range m.Items {
		if err := b.Add(&m.Items[i]); err != nil {
			b.Reset()
			if errors.Is(err, ErrBatchFull) {
				return fmt.Errorf("%w: a %s of %d items exceeds the limit of %d bytes", ErrFrameTooLarge, m.Kind, len(m.Items), w.maxFrame)
			}
			return fmt.Errorf("item %d: %w", i, err)
		}
	}
	return b.Flush()
}
