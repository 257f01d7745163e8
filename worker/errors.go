package worker

import (
	"errors"
	"fmt"
)

// Exit codes used by [Main].
const (
	// ExitOK is Main's exit code after a clean shutdown or when the host
	// went away.
	ExitOK = 0
	// ExitError is Main's exit code after a protocol error (a malformed or
	// oversized frame, a version mismatch, an unexpected message) or when
	// the protocol pipes are missing.
	ExitError = 1
	// ExitPanic is Main's exit code after a handler panicked (EX_SOFTWARE
	// of sysexits.h). The host should replace the worker: its state may be
	// corrupt.
	ExitPanic = 70
)

// Error is an error with a code, which a handler returns (directly or
// wrapped) to choose the error code of its response. The host receives Code
// and Message unchanged. Codes are free-form strings; the ones of package
// codec (codec.CodeBadPayload, ...) have protocol-defined meanings.
type Error struct {
	// Code is the response's error code; empty means codec.CodeHandler.
	Code string
	// Message is a human-readable description of the failure.
	Message string

	err error // what Errorf wrapped with %w, if anything
}

// Error returns "code: message", or the message alone when Code is empty.
func (e *Error) Error() string {
	if e.Code == "" {
		return e.Message
	}
	return e.Code + ": " + e.Message
}

// Unwrap returns the errors wrapped by Errorf's %w verbs, if any.
func (e *Error) Unwrap() error { return e.err }

// Errorf returns an *Error with the given code whose message is formatted
// as by fmt.Errorf. Errors wrapped with %w remain reachable through
// errors.Is and errors.As.
func Errorf(code, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	e := &Error{Code: code, Message: err.Error()}
	if errors.Unwrap(err) != nil {
		e.err = err
	} else if _, ok := err.(interface{ Unwrap() []error }); ok {
		e.err = err
	}
	return e
}

// PanicError is the error Serve and ServeConn return after a handler
// panicked. It identifies the job and carries the panic value and the full
// stack of the panicking goroutine.
type PanicError struct {
	// JobType and ID identify the job whose handler panicked.
	JobType string
	ID      uint64
	// Value is the value passed to panic.
	Value any
	// Stack is the panicking goroutine's stack, as runtime/debug.Stack
	// formats it.
	Stack []byte
}

// Error describes the panic without its stack.
func (e *PanicError) Error() string {
	return fmt.Sprintf("worker: handler for job type %q panicked in job %d: %v", e.JobType, e.ID, e.Value)
}

// Unwrap returns the panic value if it is an error, so that errors.Is and
// errors.As reach it.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}
