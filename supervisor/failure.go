package supervisor

import (
	"fmt"
	"syscall"
)

// FailureKind classifies why a worker process died or was killed. The zero
// value is not a valid kind.
type FailureKind int

const (
	// ExitFailure: the worker exited by itself with a non-zero code, or with
	// code 0 when it had not been asked to stop.
	ExitFailure FailureKind = iota + 1
	// SignalFailure: the worker was killed by a signal that procpool did not
	// send (the OOM killer, SIGSEGV, an external kill).
	SignalFailure
	// ProtocolFailure: the worker broke the wire protocol (a malformed or
	// oversized frame, a bad handshake, garbage on the pipe) and was killed.
	ProtocolFailure
	// JobTimeoutFailure: a job overran its timeout and the worker running it
	// was killed.
	JobTimeoutFailure
	// HeartbeatFailure: the worker missed its heartbeats (it is hung) and was
	// killed.
	HeartbeatFailure
	// MemoryFailure: the worker's resident memory rose above the ceiling
	// while it was busy and it was killed. Recycling an idle worker between
	// jobs because of its memory is not a failure and is never reported.
	MemoryFailure
	// StartupFailure: the worker exited before completing the handshake, or
	// the handshake timed out.
	StartupFailure
)

var failureKindNames = [...]string{
	ExitFailure:       "exit",
	SignalFailure:     "signal",
	ProtocolFailure:   "protocol",
	JobTimeoutFailure: "job timeout",
	HeartbeatFailure:  "heartbeat",
	MemoryFailure:     "memory",
	StartupFailure:    "startup",
}

// String returns the kind's short lower-case name ("exit", "signal",
// "protocol", "job timeout", "heartbeat", "memory", "startup"), or
// "FailureKind(n)" for a value that is not a defined kind.
func (k FailureKind) String() string {
	if k >= ExitFailure && int(k) < len(failureKindNames) {
		return failureKindNames[k]
	}
	return fmt.Sprintf("FailureKind(%d)", int(k))
}

// Failure describes one worker failure: what the router reports to
// [Restarts.Failed] and passes to a [Decider].
//
// Failure implements error, so the router can wrap it into the error of the
// jobs the failure interrupted; [Failure.Unwrap] exposes the cause.
type Failure struct {
	// Kind classifies the failure.
	Kind FailureKind
	// ExitCode is the process exit code, or -1 if it was ended by a signal.
	ExitCode int
	// Signal is the signal that ended the process; 0 unless signalled.
	Signal syscall.Signal
	// Err is the underlying cause (a codec error, a timeout, ...); may be nil.
	Err error
}

// Error describes the failure in one line, for example "worker exited with
// code 3" or "worker killed by signal 11 (segmentation fault)", followed by
// ": " and the cause when Err is not nil.
func (f Failure) Error() string {
	var s string
	switch f.Kind {
	case ExitFailure:
		s = fmt.Sprintf("worker exited with code %d", f.ExitCode)
	case SignalFailure:
		s = "worker killed by " + signalText(f.Signal)
	case ProtocolFailure:
		s = "worker broke the protocol"
	case JobTimeoutFailure:
		s = "worker killed: job timed out"
	case HeartbeatFailure:
		s = "worker killed: missed heartbeats"
	case MemoryFailure:
		s = "worker killed: memory above the ceiling"
	case StartupFailure:
		s = "worker failed to start"
		switch {
		case f.Signal != 0:
			s += " (" + signalText(f.Signal) + ")"
		case f.ExitCode != 0:
			s += fmt.Sprintf(" (exit code %d)", f.ExitCode)
		}
	default:
		s = "worker failed: " + f.Kind.String()
	}
	if f.Err != nil {
		s += ": " + f.Err.Error()
	}
	return s
}

// Unwrap returns the cause, so that errors.Is and errors.As see through a
// Failure.
func (f Failure) Unwrap() error { return f.Err }

func signalText(sig syscall.Signal) string {
	return fmt.Sprintf("signal %d (%s)", int(sig), sig)
}
