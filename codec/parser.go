package codec

import (
	"encoding/binary"
	"fmt"
	"math"
)

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
