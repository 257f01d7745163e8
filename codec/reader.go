package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// reuseLimit is the largest buffer a Reader keeps between frames. Larger
// frames get a buffer of their own, which the caller may keep.
const reuseLimit = 256 << 10

// Reader reads frames from an io.Reader and decodes them into Messages.
//
// A read that fails with a timeout (an error with a Timeout method that
// returns true, such as os.ErrDeadlineExceeded from a pipe with a read
// deadline) loses nothing: the next Read resumes the frame where the last
// one stopped. That lets a reader be interrupted and another goroutine take
// over the stream.
type Reader struct {
	r        io.Reader
	maxFrame int
	hdr      [HeaderSize]byte
	hdrN     int    // header bytes read of the current frame
	frame    []byte // the current frame's body, once its header is read
	bodyN    int    // body bytes read
	inBody   bool   // the header is complete
	buf      []byte // reused frame buffer, at most reuseLimit bytes
	owned    bool   // the last frame has a buffer of its own
	alloc    func(n int) []byte
	allocAt  int // frames larger than this go to alloc (0: reuseLimit)
	strs     interner
}

// SetAlloc makes the Reader take the buffer of every frame larger than
// 256 KiB from alloc, which must return a slice of length n, instead of
// allocating it; such frames are Owned by the caller, who may recycle the
// buffer once done with the message. nil restores the default.
func (r *Reader) SetAlloc(alloc func(n int) []byte) { r.alloc, r.allocAt = alloc, 0 }

// SetAllocAbove is SetAlloc for frames larger than n bytes (at most 256
// KiB; n <= 0 means 256 KiB): a caller that keeps the payloads of smaller
// frames past the next Read (the items of a batch, say) takes their
// buffers rather than copying each payload out.
func (r *Reader) SetAllocAbove(n int, alloc func(n int) []byte) {
	if n <= 0 || n > reuseLimit {
		n = 0
	}
	r.alloc, r.allocAt = alloc, n
}

// ownedAbove returns the size past which a frame gets a buffer of its own.
func (r *Reader) ownedAbove() int {
	if r.alloc == nil || r.allocAt == 0 {
		return reuseLimit
	}
	return r.allocAt
}

// NewReader returns a Reader that reads frames from r and refuses frames
// longer than maxFrame bytes (header excluded). A maxFrame <= 0 means
// DefaultMaxFrame. r should be buffered by the caller only if it is not a
// pipe or socket: the Reader issues one read for the header and one for the
// body of each frame.
func NewReader(r io.Reader, maxFrame int) *Reader {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrame
	}
	return &Reader{r: r, maxFrame: maxFrame}
}

// MaxFrame returns the largest frame the Reader accepts.
func (r *Reader) MaxFrame() int { return r.maxFrame }

// Read reads the next frame and decodes it into m, overwriting every field.
//
// It returns io.EOF when the stream ends cleanly between frames, an error
// matching ErrTruncated when it ends inside one, ErrFrameTooLarge when the
// announced length exceeds the limit (nothing is allocated for it), and
// ErrMalformed when the frame does not hold a valid message. After a
// timeout, Read may be called again and resumes the frame; after any other
// error but io.EOF the stream cannot be resynchronised.
//
// m.Payload aliases the Reader's buffer and stays valid only until the next
// Read, unless Owned reports that it does not. The strings of m never alias
// the buffer; the job types and error codes of a stream are interned, so
// that reading them costs no allocation once they have been seen.
func (r *Reader) Read(m *Message) error {
	if !r.inBody {
		for r.hdrN < HeaderSize {
			n, err := r.r.Read(r.hdr[r.hdrN:])
			r.hdrN += n
			if err == nil {
				continue
			}
			if r.hdrN == HeaderSize {
				break // a full header and an error: the body read reports it
			}
			if errors.Is(err, io.EOF) && r.hdrN > 0 {
				return fmt.Errorf("%w: stream ended inside a frame header", ErrTruncated)
			}
			return err
		}
		n := binary.BigEndian.Uint32(r.hdr[:])
		if uint64(n) > uint64(r.maxFrame) {
			return fmt.Errorf("%w: announced %d bytes, limit %d", ErrFrameTooLarge, n, r.maxFrame)
		}
		if int(n) <= r.ownedAbove() {
			if cap(r.buf) < int(n) {
				r.buf = make([]byte, n, max(int(n), 4<<10))
			}
			r.frame = r.buf[:n]
			r.owned = false
		} else {
			if r.alloc != nil {
				r.frame = r.alloc(int(n))[:n]
			} else {
				r.frame = make([]byte, n)
			}
			r.owned = true
		}
		r.inBody, r.bodyN = true, 0
	}
	for r.bodyN < len(r.frame) {
		n, err := r.r.Read(r.frame[r.bodyN:])
		r.bodyN += n
		if err == nil || r.bodyN == len(r.frame) {
			continue
		}
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: stream ended inside a %d-byte frame", ErrTruncated, len(r.frame))
		}
		return err
	}
	frame := r.frame
	r.inBody, r.hdrN, r.frame = false, 0, nil
	if err := decodeFrame(frame, m, &r.strs); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}

// Owned reports whether the frame returned by the last Read has a buffer of
// its own, so that its Message.Payload may be kept after the next Read.
// Frames up to 256 KiB share one reused buffer; larger ones do not.
func (r *Reader) Owned() bool { return r.owned }

// Decode decodes one frame body (header excluded) into m, overwriting every
// field, and returns an error matching ErrMalformed if it does not hold a
// valid message. m.Payload aliases frame.
func Decode(frame []byte, m *Message) error {
	if err := decodeFrame(frame, m, nil); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}
