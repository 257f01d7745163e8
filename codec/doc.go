// Package codec frames and encodes the messages that a procpool host and its
// worker processes exchange over a pair of pipes.
//
// A frame is a 4-byte big-endian length followed by exactly that many bytes
// holding one msgpack-encoded message. Every message is a msgpack array whose
// first element is its [Kind]. The byte layout of each kind, the handshake and
// the ordering rules are specified in docs/protocol.md; this package is the
// reference implementation of that document.
//
// The package knows nothing of processes or actors: it reads and writes
// bytes. A [Reader] enforces a maximum frame size before allocating, reuses
// its buffer between frames, interns the job types and error codes it reads,
// and reports oversized, truncated or malformed frames as errors matching
// [ErrFrameTooLarge], [ErrTruncated] or [ErrMalformed]. A [Writer] encodes
// into a reused buffer and refuses a frame larger than its peer accepts, or
// one its peer would find malformed. Once warmed up, writing and reading
// messages whose payloads fit in 64 KiB allocates nothing but the error
// messages read.
//
// Three optional features, negotiated in the handshake as a set of
// [Features] in Hello and Ready, add to the base protocol: request metadata
// (Message.Attempt, TraceParent, TraceState), batches ([KindBatchRequest]
// and [KindBatchResponse] frames, whose Message.Items are the requests or
// responses; a [Batch] packs them into frames within the peer's limit) and
// streamed results ([KindChunk] partial results, [KindCredit] flow
// control, the request's Message.Credit window). A peer that negotiates
// none exchanges exactly the base protocol's bytes. The Reader decodes
// every kind whatever was negotiated; the caller checks that the peer may
// send it.
//
// Neither a Reader nor a Writer is safe for concurrent use.
package codec
