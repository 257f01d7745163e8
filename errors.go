package procpool

import "github.com/procpool/procpool/actors"

// Errors a call can end with; test for them with errors.Is. They are the
// same values as the actors package's, so either name matches.
var (
	ErrQueueFull       = actors.ErrQueueFull
	ErrShuttingDown    = actors.ErrShuttingDown
	ErrJobTimeout      = actors.ErrJobTimeout
	ErrWorkerCrashed   = actors.ErrWorkerCrashed
	ErrPoisonJob       = actors.ErrPoisonJob
	ErrCancelled       = actors.ErrCancelled
	ErrUnknownJobType  = actors.ErrUnknownJobType
	ErrPayloadTooLarge = actors.ErrPayloadTooLarge
	ErrBadPayload      = actors.ErrBadPayload
	ErrUnavailable     = actors.ErrUnavailable
	ErrRemote          = actors.ErrRemote
	ErrInvalidJobType  = actors.ErrInvalidJobType
	ErrBadResult       = actors.ErrBadResult
)

// RemoteError is an error a worker returned: its code and message. Get it
// with errors.As.
type RemoteError = actors.RemoteError

// CrashError carries the forensics of a worker's death: pid, exit code or
// signal, last lines of stderr, memory, job id and attempt. Get it with
// errors.As.
type CrashError = actors.CrashError
