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

// ErrBatchFull reports that a Batch has no room for one more item: it holds
// MaxBatch items, or the item would take the frame past the limit. The item
// fits in a batch of its own: flush this one and add it again.
var ErrBatchFull = errors.New("codec: batch full")
