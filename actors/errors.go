package actors

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/procpool/procpool/codec"
)

// Errors a job can end with. Every one of them is usable with errors.Is, also
// when it comes wrapped in a *CrashError or with more context.
var (
	// ErrQueueFull: the job type's queue had no free slot (TrySubmit, or a
	// message sent straight to a router whose queue is full).
	ErrQueueFull = errors.New("procpool: queue full")
	// ErrShuttingDown: the system or router is stopping and accepts no jobs,
	// or stopped before the job could finish.
	ErrShuttingDown = errors.New("procpool: shutting down")
	// ErrJobTimeout: the job overran its job type's per-job timeout.
	ErrJobTimeout = errors.New("procpool: job timeout")
	// ErrWorkerCrashed: the worker running the job died (exit, signal,
	// protocol error, missed heartbeat, memory ceiling). The error is a
	// *CrashError carrying the forensics.
	ErrWorkerCrashed = errors.New("procpool: worker crashed")
	// ErrPoisonJob: the job was running when several workers died and was
	// quarantined instead of being retried again.
	ErrPoisonJob = errors.New("procpool: poison job quarantined")
	// ErrCancelled: the caller's context ended before the job finished.
	// Errors with this cause also match the context's own error.
	ErrCancelled = errors.New("procpool: job cancelled")
	// ErrUnknownJobType: no router exists for the job type named.
	ErrUnknownJobType = errors.New("procpool: unknown job type")
	// ErrPayloadTooLarge: the payload cannot fit in one frame.
	ErrPayloadTooLarge = errors.New("procpool: payload too large")
	// ErrBadPayload: a VALUE payload is not exactly one msgpack value
	// nested at most 256 deep; the error also matches codec.ErrMalformed.
	ErrBadPayload = errors.New("procpool: malformed VALUE payload")
	// ErrUnavailable: the job type gave up restarting its workers (restart
	// intensity exceeded) and fails jobs fast until its cool-down ends.
	ErrUnavailable = errors.New("procpool: job type unavailable")
	// ErrRemote: the worker answered with an error. The error is a
	// *RemoteError carrying the worker's code and message.
	ErrRemote = errors.New("procpool: worker returned an error")
)

// RemoteError is an error a worker returned for a job.
type RemoteError struct {
	Code    string // the error code, e.g. "handler", "panic", "cancelled"
	Message string // the worker's description, one line for a panic
	// Detail is what the worker sent beside the message, if anything: for
	// a panic, the SDKs send the whole value and the first frames of the
	// stack (at most 64 KiB are kept).
	Detail string
}

// Error implements error.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("procpool: worker error %s: %s", e.Code, e.Message)
}

// Is makes errors.Is(err, ErrRemote) true; errors.Is(err, ErrJobTimeout)
// too when the worker itself stopped the job at its deadline (code
// "deadline": the job's timeout crosses the wire with the request); and
// errors.Is(err, ErrPayloadTooLarge) when the result was too large for the
// host's frame limit (code "too_large").
func (e *RemoteError) Is(target error) bool {
	switch target {
	case ErrRemote:
		return true
	case ErrJobTimeout:
		return e.Code == codec.CodeDeadline
	case ErrPayloadTooLarge:
		return e.Code == codec.CodeTooLarge
	}
	return false
}

// CrashError describes the death of the worker that was running a job.
type CrashError struct {
	Cause      error          // ErrWorkerCrashed, ErrJobTimeout or ErrPoisonJob
	Reason     string         // what killed the worker, e.g. "exit 3", "killed by SIGKILL", "protocol error: ..."
	PID        int            // the worker's process id
	ExitCode   int            // -1 if killed by a signal
	Signal     syscall.Signal // 0 unless killed by a signal
	StderrTail []string       // the worker's last lines of stderr
	RSS        uint64         // resident memory in bytes at the last reading before death
	JobID      uint64         // the job's id on that worker
	Attempt    int            // which attempt of the job this was, from 1
	Uptime     time.Duration  // how long the worker had lived
	// Err is the failure's underlying error, if it has one: the start's
	// (a missing binary is an *exec.Error or a *fs.PathError), a refused
	// handshake, a protocol violation. errors.As finds it.
	Err error
}

// Error implements error.
func (e *CrashError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v: worker pid %d (%s) attempt %d", e.Cause, e.PID, e.Reason, e.Attempt)
	if line := tellingLine(e.StderrTail); line != "" {
		fmt.Fprintf(&b, "; last stderr: %q", line)
	}
	return b.String()
}

// tellingLine returns the last line of a stderr tail that says something:
// not a line of a stack trace (a frame, its file line, a goroutine header),
// which the tail keeps whole all the same.
func tellingLine(tail []string) string {
	for i := len(tail) - 1; i >= 0; i-- {
		l := strings.TrimSpace(tail[i])
		switch {
		case l == "", strings.HasPrefix(tail[i], "\t"), strings.HasPrefix(tail[i], " "),
			strings.HasPrefix(l, "goroutine "), strings.HasPrefix(l, "created by "),
			strings.HasSuffix(l, ")") && strings.Contains(l, "("):
			continue
		}
		return tail[i]
	}
	if n := len(tail); n > 0 {
		return tail[n-1]
	}
	return ""
}

// Unwrap returns the cause, so errors.Is(err, ErrWorkerCrashed) works, and
// the underlying error, if any.
func (e *CrashError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Cause}
	}
	return []error{e.Cause, e.Err}
}

// cancelError is ErrCancelled joined with why the job was cancelled: the
// error of the context that ended (context.Canceled or
// context.DeadlineExceeded) and its cause (context.Cause), or the cause
// given to Job.Cancel.
type cancelError struct {
	ctxErr error // ctx.Err(), nil for Job.Cancel
	cause  error // context.Cause(ctx), or Job.Cancel's cause
}

func (e *cancelError) Error() string {
	switch {
	case e.cause != nil && e.ctxErr != nil && e.cause != e.ctxErr:
		return ErrCancelled.Error() + ": " + e.cause.Error() + " (" + e.ctxErr.Error() + ")"
	case e.cause != nil:
		return ErrCancelled.Error() + ": " + e.cause.Error()
	case e.ctxErr != nil:
		return ErrCancelled.Error() + ": " + e.ctxErr.Error()
	}
	return ErrCancelled.Error()
}

func (e *cancelError) Unwrap() []error {
	errs := []error{ErrCancelled}
	if e.ctxErr != nil {
		errs = append(errs, e.ctxErr)
	}
	if e.cause != nil && e.cause != e.ctxErr {
		errs = append(errs, e.cause)
	}
	return errs
}

// Cancelled returns an error matching both ErrCancelled and cause.
func Cancelled(cause error) error { return &cancelError{cause: cause} }

// cancelledBy returns the error of a job whose context ctx ended: it
// matches ErrCancelled, ctx.Err() and context.Cause(ctx).
func cancelledBy(ctx context.Context) error {
	return &cancelError{ctxErr: ctx.Err(), cause: context.Cause(ctx)}
}

// ErrBadResult reports a VALUE result that could not be decoded into the
// caller's type.
var ErrBadResult = errors.New("procpool: result does not decode")
