package worker

import (
	"bytes"
	"math/bits"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Request payloads up to the codec Reader's shared buffer size (256 KiB) are
// copied into pooled buffers, one pool per power-of-two size class; larger
// frames are read straight into a pooled buffer of their own (the Reader's
// SetAlloc) and handed over as they are. Either way the buffer returns to
// its pool once the job's answer is written.
const (
	minClassShift = 9  // 512 B
	maxClassShift = 26 // 64 MiB, the default frame limit
)

var payloadPools [maxClassShift - minClassShift + 1]sync.Pool

// getPayload returns a pooled buffer of length n (0 < n; sizes above 64 MiB
// are not pooled).
func getPayload(n int) *[]byte {
	shift := max(bits.Len(uint(n-1)), minClassShift)
	if shift > maxClassShift {
		b := make([]byte, n)
		return &b // not pooled: putPayload drops it
	}
	p := &payloadPools[shift-minClassShift]
	if b, ok := p.Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<shift)
	return &b
}

// putPayload returns a buffer obtained from getPayload.
func putPayload(b *[]byte) {
	c := cap(*b)
	shift := bits.Len(uint(c - 1))
	if c != 1<<shift || shift < minClassShift || shift > maxClassShift {
		return
	}
	payloadPools[shift-minClassShift].Put(b)
}

// valueEncoder encodes a VALUE handler's result into a reused buffer.
type valueEncoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

// maxPooledEncoder is the largest buffer a valueEncoder keeps in the pool.
const maxPooledEncoder = 64 << 10

var encoderPool = sync.Pool{New: func() any {
	e := new(valueEncoder)
	e.enc = msgpack.NewEncoder(&e.buf)
	return e
}}

func getEncoder() *valueEncoder {
	e := encoderPool.Get().(*valueEncoder)
	e.buf.Reset()
	return e
}

func putEncoder(e *valueEncoder) {
	if e.buf.Cap() <= maxPooledEncoder {
		encoderPool.Put(e)
	}
}

// valueDecoder decodes a VALUE handler's argument from a byte slice.
type valueDecoder struct {
	br  bytes.Reader
	dec *msgpack.Decoder
}

var decoderPool = sync.Pool{New: func() any {
	d := new(valueDecoder)
	d.dec = msgpack.NewDecoder(&d.br)
	d.dec.UsePreallocateValues(true) // as msgpack.Unmarshal does
	return d
}}

// decodeValue decodes the msgpack value in b into v.
func decodeValue(b []byte, v any) error {
	d := decoderPool.Get().(*valueDecoder)
	d.br.Reset(b)
	d.dec.ResetReader(&d.br)
	err := d.dec.Decode(v)
	d.br.Reset(nil)
	decoderPool.Put(d)
	return err
}
