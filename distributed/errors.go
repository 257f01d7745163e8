package distributed

import (
	"context"
	"errors"
	"fmt"

	"github.com/procpool/procpool"
)

// Errors of this package; the errors a job ends with also match the
// procpool errors they were on the node (procpool.ErrRemote,
// procpool.ErrPoisonJob, ...).
var (
	// ErrDeadLetter: the job was given up and moved to its type's
	// dead-letter subject: it was poisonous (procpool.ErrPoisonJob, also
	// matched), failed with a retryable error on its last delivery, or
	// was delivered more than MaxDeliver times.
	ErrDeadLetter = errors.New("distributed: job moved to the dead-letter subject")
	// ErrDuplicateJob: a job with the same id was submitted within the
	// de-duplication window (SubmitWithID), or is still pending here.
	ErrDuplicateJob = errors.New("distributed: duplicate job id")
	// ErrNodeLost: the job was delivered more than MaxDeliver times and
	// the nodes of its last deliveries did not report back (they died or
	// lost their connection while running it).
	ErrNodeLost = errors.New("distributed: the nodes running the job were lost")
)

// JobError is the error a job ended with on the node that reported it. Its
// Err is rebuilt from the message: it matches, with errors.Is, the procpool
// error the job ended with there, and errors.As finds a
// *procpool.RemoteError with the worker's code and message.
type JobError struct {
	Node       string // the node that reported the error
	Deliveries int    // the delivery that ended the job, from 1
	DeadLetter bool   // the job was moved to the dead-letter subject
	Err        error
}

// Error implements error.
func (e *JobError) Error() string {
	what := "failed"
	if e.DeadLetter {
		what = "dead-lettered"
	}
	return fmt.Sprintf("distributed: job %s on node %s (delivery %d): %v", what, e.Node, e.Deliveries, e.Err)
}

// Unwrap returns the rebuilt error.
func (e *JobError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrDeadLetter) true for a dead-lettered job.
func (e *JobError) Is(target error) bool { return target == ErrDeadLetter && e.DeadLetter }

// errorKind is how an error crosses the wire. The rule, in one place: a
// node names the first of these kinds its error matches (in this order,
// so that a *procpool.RemoteError keeps its code and a poison job is not
// taken for a crash); the producer rebuilds an error matching the same
// procpool error. An error matching none crosses as kindOther, message
// only.
type errorKind string

const (
	kindRemote       errorKind = "remote"
	kindPoison       errorKind = "poison"
	kindLost         errorKind = "lost"
	kindTimeout      errorKind = "timeout"
	kindCrashed      errorKind = "crashed"
	kindTooLarge     errorKind = "too_large"
	kindBadPayload   errorKind = "bad_payload"
	kindCancelled    errorKind = "cancelled"
	kindUnavailable  errorKind = "unavailable"
	kindShuttingDown errorKind = "shutting_down"
	kindQueueFull    errorKind = "queue_full"
	kindUnknownType  errorKind = "unknown_job_type"
	kindOther        errorKind = "other"
)

// sentinels maps the kinds (but remote, cancelled and other) to the errors
// they match, in encoding order.
var sentinels = []struct {
	kind errorKind
	err  error
}{
	{kindPoison, procpool.ErrPoisonJob},
	{kindLost, ErrNodeLost},
	{kindTimeout, procpool.ErrJobTimeout},
	{kindCrashed, procpool.ErrWorkerCrashed},
	{kindTooLarge, procpool.ErrPayloadTooLarge},
	{kindBadPayload, procpool.ErrBadPayload},
	{kindUnavailable, procpool.ErrUnavailable},
	{kindShuttingDown, procpool.ErrShuttingDown},
	{kindQueueFull, procpool.ErrQueueFull},
	{kindUnknownType, procpool.ErrUnknownJobType},
}

// encodeError returns the wire form of err: its kind, the worker's code
// (remote errors only) and its message.
func encodeError(err error) (kind errorKind, code, message string) {
	var re *procpool.RemoteError
	if errors.As(err, &re) {
		return kindRemote, re.Code, re.Message
	}
	message = err.Error()
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return s.kind, "", message
		}
	}
	if errors.Is(err, procpool.ErrCancelled) {
		return kindCancelled, "", message
	}
	return kindOther, "", message
}

// decodeError rebuilds the error encodeError described.
func decodeError(kind errorKind, code, message string) error {
	switch kind {
	case kindRemote:
		return &procpool.RemoteError{Code: code, Message: message}
	case kindCancelled:
		// A job cancelled on its node ran past the deadline its producer
		// gave it.
		return &matchError{msg: message, is: []error{procpool.ErrCancelled, context.DeadlineExceeded}}
	}
	for _, s := range sentinels {
		if s.kind == kind {
			return &matchError{msg: message, is: []error{s.err}}
		}
	}
	return &matchError{msg: message}
}

// matchError is an error made of a message and the errors it matches: one
// rebuilt from the wire, or a cancellation.
type matchError struct {
	msg string
	is  []error
}

func (e *matchError) Error() string   { return e.msg }
func (e *matchError) Unwrap() []error { return e.is }
