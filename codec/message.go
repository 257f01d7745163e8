package codec

import (
	"fmt"
	"time"
)

// Version is the protocol version this package speaks. A peer that announces
// another version is refused during the handshake.
const Version = 1

// DefaultMaxFrame is the default upper bound of a frame's length, header
// excluded: 64 MiB.
const DefaultMaxFrame = 64 << 20

// HeaderSize is the size of the big-endian length that precedes every frame.
const HeaderSize = 4

// Kind identifies a message. It is the first element of every message array.
type Kind uint8

// The message kinds. Direction is host to worker (H→W) or worker to host (W→H).
const (
	KindHello    Kind = 1 // H→W: first message; protocol version, the host's frame limit, the shared region's size
	KindReady    Kind = 2 // W→H: answer to Hello; version, pid, job types, the worker's frame limit, the shared region it mapped
	KindRequest  Kind = 3 // H→W: run a job
	KindResponse Kind = 4 // W→H: a job's result or error
	KindCancel   Kind = 5 // H→W: cancel a running job
	KindPing     Kind = 6 // H→W: liveness probe
	KindPong     Kind = 7 // W→H: answer to Ping
	KindShutdown Kind = 8 // H→W: finish running jobs, then exit

	// The kinds of the optional features (see Features): a peer sends them
	// only once the handshake has negotiated their feature.
	KindBatchRequest  Kind = 9  // H→W: many requests in one frame (FeatureBatch)
	KindBatchResponse Kind = 10 // W→H: many responses in one frame (FeatureBatch)
	KindChunk         Kind = 11 // W→H: a partial result of a streamed request (FeatureStream)
	KindCredit        Kind = 12 // H→W: more chunks a streamed request may send (FeatureStream)
)

// String returns the kind's name, as used in docs/protocol.md.
func (k Kind) String() string {
	switch k {
	case KindHello:
		return "hello"
	case KindReady:
		return "ready"
	case KindRequest:
		return "request"
	case KindResponse:
		return "response"
	case KindCancel:
		return "cancel"
	case KindPing:
		return "ping"
	case KindPong:
		return "pong"
	case KindShutdown:
		return "shutdown"
	case KindBatchRequest:
		return "batch request"
	case KindBatchResponse:
		return "batch response"
	case KindChunk:
		return "chunk"
	case KindCredit:
		return "credit"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// PayloadKind tells how a request's or response's payload crosses the wire.
type PayloadKind uint8

const (
	// Blob payloads are the caller's bytes, sent as one msgpack bin.
	Blob PayloadKind = 0
	// Value payloads are any msgpack value, inlined as the message's last
	// element; Message.Payload holds its msgpack encoding.
	Value PayloadKind = 1
)

// sharedBit is the bit a payload kind carries on the wire when the payload lies
// in the shared memory region instead of the frame: 2 is a shared Blob, 3 a
// shared Value. Message.PayloadKind never holds it; Message.Shared does.
const sharedBit = 2

// Span locates a payload in the shared memory region: Length bytes from
// byte Offset of the region.
type Span struct {
	Offset uint64
	Length uint64
}

// String returns "blob" or "value".
func (p PayloadKind) String() string {
	switch p {
	case Blob:
		return "blob"
	case Value:
		return "value"
	}
	return fmt.Sprintf("payload(%d)", uint8(p))
}

// Error codes a worker puts in a response. A worker may use codes of its
// own; these are the ones the protocol and the Go SDK define.
const (
	CodeHandler        = "handler"          // the handler returned an error without a code
	CodePanic          = "panic"            // the handler panicked; the worker exits after answering
	CodeCancelled      = "cancelled"        // the job was cancelled by a cancel message
	CodeDeadline       = "deadline"         // the job's timeout elapsed inside the worker
	CodeUnknownJobType = "unknown_job_type" // no handler for the request's job type
	CodeBadPayload     = "bad_payload"      // the payload could not be decoded
	CodeTooLarge       = "too_large"        // the result exceeds the host's frame limit
	CodeShuttingDown   = "shutting_down"    // the worker received the request after shutdown
)

// Message is one protocol message. It is a flat union: Kind says which
// fields are meaningful, as listed beside each field. A zero field is sent
// as zero. Reusing one Message for many reads avoids allocation.
type Message struct {
	Kind Kind

	// ID is the job id (Request, Response, Cancel) or the sequence number
	// (Ping, Pong). Job ids are chosen by the host and unique per worker.
	ID uint64

	// Version is the protocol version (Hello, Ready).
	Version uint32
	// MaxFrame is the largest frame the sender accepts (Hello, Ready).
	MaxFrame uint32
	// SharedSize is the size in bytes of the shared memory region the host
	// passed as file descriptor 5 (Hello), or of the region the worker
	// mapped (Ready); 0 means none. A worker that cannot map the region
	// answers 0, and payloads then travel in frames only. It is sent only
	// when not 0, as a last, optional element.
	SharedSize uint64
	// Features are the optional features the host may use (Hello), or
	// those of them the worker supports (Ready). They are sent only when
	// not 0, as a last, optional element after SharedSize.
	Features Features
	// PID is the worker's process id (Ready).
	PID int
	// JobTypes lists the job types the worker serves (Ready).
	JobTypes []string

	// JobType names the handler to run (Request).
	JobType string
	// Timeout is the job's time budget inside the worker, counted from the
	// request's arrival; 0 means none (Request). It crosses the wire in
	// milliseconds.
	Timeout time.Duration

	// Attempt is the attempt number of the job (Request, with FeatureMeta):
	// 1 for its first run, more when the host runs it again after a
	// failure. 0 means that the host did not say, which counts as 1; the
	// Writer sends it only when above 1.
	Attempt uint32
	// TraceParent and TraceState are the W3C trace context of the job
	// (Request, with FeatureMeta): the traceparent and tracestate header
	// values of the caller's span, or empty.
	TraceParent string
	TraceState  string
	// Credit is how many chunks a streamed request may send before the host
	// grants more (Request, with FeatureStream: the initial window; 0 means
	// the request is not streamed), or how many more it may send (Credit).
	Credit uint32

	// PayloadKind says how Payload is encoded (Request, Response, Chunk).
	PayloadKind PayloadKind
	// Shared reports that the payload lies in the shared memory region, at
	// Span, instead of in the frame; Payload is then nil (Request,
	// Response, Chunk).
	Shared bool
	// Span locates the payload in the shared memory region when Shared is
	// set. The codec checks nothing of it: the receiver must check it
	// against the region's bounds.
	Span Span
	// Payload is the job's argument (Request), result (Response) or partial
	// result (Chunk): raw
	// bytes for Blob, a msgpack encoding of one value for Value. After a
	// Reader.Read it aliases the reader's buffer; see Reader.Read.
	Payload []byte

	// ErrCode is empty on success and names the failure otherwise (Response).
	ErrCode string
	// ErrMessage is a human-readable description of the failure (Response).
	ErrMessage string

	// Grace is how long the worker may take to finish its running jobs
	// before the host kills it (Shutdown). It crosses the wire in milliseconds.
	Grace time.Duration

	// Items are the messages of a batch (BatchRequest: requests;
	// BatchResponse: responses), 1 to MaxBatch of them, each with the fields
	// of its own Kind. After a Reader.Read their payloads alias the
	// reader's buffer, as Payload does.
	Items []Message
}

// Reset clears m for reuse, keeping the capacity of JobTypes and Items.
func (m *Message) Reset() {
	jt, items := m.JobTypes[:0], m.Items[:0]
	*m = Message{JobTypes: jt, Items: items}
}

// MaxBatch is the largest number of items a batch frame may hold. It bounds
// what a Reader allocates for a batch, whatever the frame limit.
const MaxBatch = 1024

// hasMeta reports whether a Request carries the optional meta element.
func (m *Message) hasMeta() bool {
	return m.Attempt > 1 || m.TraceParent != "" || m.TraceState != "" || m.Credit > 0
}
