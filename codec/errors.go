package codec

import "errors"

var (
	// ErrFrameTooLarge reports a frame whose length exceeds the limit. A
	// Reader reports it before allocating; a Writer before writing anything.
	ErrFrameTooLarge = errors.New("codec: frame too large")
	// ErrTruncated reports a stream that ended inside a frame.
	ErrTruncated = errors.New("codec: truncated frame")
	// ErrMalformed reports a frame whose contents are not a valid message. A
	// Writer reports it, before writing anything, for a Value payload that
	// is not exactly one msgpack value.
	ErrMalformed = errors.New("codec: malformed frame")
)
