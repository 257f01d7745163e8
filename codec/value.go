package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// maxValueDepth bounds the nesting of arrays and maps in a Value payload, so
// that decoding it later with a recursive decoder cannot exhaust the stack.
const maxValueDepth = 256

// errTooDeep reports a value nested deeper than the limit.
var errTooDeep = errors.New("value nested too deep")

// CheckValue reports whether b may be sent as a Value payload: empty (sent
// as nil), or exactly one msgpack value nested at most 256 deep, as a peer
// accepts. Its error matches ErrMalformed. Writer.Write checks the Value
// payloads it writes in frames; a payload sent through the shared memory
// region is not checked by the codec, so its sender checks it with
// CheckValue.
func CheckValue(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	n, err := valueLen(b, maxValueDepth)
	if err == nil && n != len(b) {
		err = fmt.Errorf("%d trailing bytes after the value", len(b)-n)
	}
	if err != nil {
		return fmt.Errorf("%w: value payload: %v", ErrMalformed, err)
	}
	return nil
}

// codeInfo describes what follows a msgpack code byte.
type codeInfo struct {
	skip     uint8 // fixed bytes that follow (and the ext type byte)
	lenBytes uint8 // size of a big-endian length that follows, 0 if none
	mult     uint8 // that length counts bytes (0), elements (1) or pairs (2)
	children uint8 // elements of a fixarray or fixmap
	invalid  bool  // 0xc1, never used
}

var codeTable = func() (t [256]codeInfo) {
	for c := 0; c < 256; c++ {
		e := &t[c]
		switch {
		case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
			// positive/negative fixint, nil, false, true
		case c <= 0x8f: // fixmap
			e.children = 2 * uint8(c&0x0f)
		case c <= 0x9f: // fixarray
			e.children = uint8(c & 0x0f)
		case c <= 0xbf: // fixstr
			e.skip = uint8(c & 0x1f)
		case c == 0xc4, c == 0xd9: // bin8, str8
			e.lenBytes = 1
		case c == 0xc5, c == 0xda: // bin16, str16
			e.lenBytes = 2
		case c == 0xc6, c == 0xdb: // bin32, str32
			e.lenBytes = 4
		case c == 0xc7: // ext8
			e.lenBytes, e.skip = 1, 1
		case c == 0xc8: // ext16
			e.lenBytes, e.skip = 2, 1
		case c == 0xc9: // ext32
			e.lenBytes, e.skip = 4, 1
		case c == 0xca: // float32
			e.skip = 4
		case c == 0xcb: // float64
			e.skip = 8
		case c == 0xcc, c == 0xd0: // uint8, int8
			e.skip = 1
		case c == 0xcd, c == 0xd1: // uint16, int16
			e.skip = 2
		case c == 0xce, c == 0xd2: // uint32, int32
			e.skip = 4
		case c == 0xcf, c == 0xd3: // uint64, int64
			e.skip = 8
		case c >= 0xd4 && c <= 0xd8: // fixext1..16: type byte and 1<<(c-0xd4) bytes
			e.skip = 1 + 1<<(c-0xd4)
		case c == 0xdc: // array16
			e.lenBytes, e.mult = 2, 1
		case c == 0xdd: // array32
			e.lenBytes, e.mult = 4, 1
		case c == 0xde: // map16
			e.lenBytes, e.mult = 2, 2
		case c == 0xdf: // map32
			e.lenBytes, e.mult = 4, 2
		default: // 0xc1
			e.invalid = true
		}
	}
	return t
}()

// valueLen returns the length in bytes of the single msgpack value at the
// start of b. It walks the encoding iteratively, bounding nesting to
// maxDepth, and never reads past b.
func valueLen(b []byte, maxDepth int) (int, error) {
	maxDepth = min(maxDepth, maxValueDepth)
	// stack[i] is the count of values still to read in the container at
	// depth i, saved while a nested container is read; left is the count
	// at the current depth.
	var stack [maxValueDepth]uint64
	depth := 0
	left := uint64(1)
	off := 0
	for {
		for left == 0 {
			if depth == 0 {
				return off, nil
			}
			depth--
			left = stack[depth]
		}
		left--
		if off >= len(b) {
			return 0, fmt.Errorf("value truncated at byte %d", off)
		}
		c := b[off]
		off++
		e := &codeTable[c]
		skip, children := uint64(e.skip), uint64(e.children)
		if e.lenBytes > 0 {
			if len(b)-off < int(e.lenBytes) {
				return 0, fmt.Errorf("value truncated at byte %d", off)
			}
			var n uint64
			switch e.lenBytes {
			case 1:
				n = uint64(b[off])
			case 2:
				n = uint64(binary.BigEndian.Uint16(b[off:]))
			default:
				n = uint64(binary.BigEndian.Uint32(b[off:]))
			}
			off += int(e.lenBytes)
			if e.mult == 0 {
				skip += n
			} else {
				children = n * uint64(e.mult)
			}
		} else if e.invalid {
			return 0, fmt.Errorf("invalid msgpack code 0x%02x at byte %d", c, off-1)
		}
		if skip > uint64(len(b)-off) {
			return 0, fmt.Errorf("value truncated at byte %d", off)
		}
		off += int(skip)
		if children > 0 {
			// Every child takes at least one byte: refuse counts the
			// remaining bytes cannot hold before going deeper.
			if children > uint64(len(b)-off) {
				return 0, fmt.Errorf("container of %d elements at byte %d exceeds the frame", children, off)
			}
			if depth+1 > maxDepth {
				return 0, fmt.Errorf("%w: deeper than %d", errTooDeep, maxDepth)
			}
			stack[depth] = left
			depth++
			left = children
		}
	}
}
