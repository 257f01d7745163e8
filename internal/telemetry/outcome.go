package telemetry

import (
	"errors"

	"github.com/procpool/procpool/actors"
	"github.com/procpool/procpool/codec"
)

// outcome is the class of a resolved job: succeeded, cancelled, or one
// class of failure. classify is the one place that decides it.
type outcome uint8

const (
	succeeded outcome = iota
	cancelled
	failedRemote       // the worker answered with an error
	failedCrashed      // the worker running it died
	failedPoison       // quarantined after several workers died running it
	failedTimeout      // overran its timeout (host's timer or the worker's)
	failedUnavailable  // the job type gave up restarting its workers
	failedShuttingDown // the router stopped before the job finished
	failedTooLarge     // its payload or its result did not fit a frame
	failedBadResult    // its result did not decode into the caller's type
	failedBadPayload   // its payload was refused as malformed
	failedQueueFull    // no room in the queue
	failedOther        // none of the above
	numOutcomes
)

// outcomeLabel is the pair of attribute values of an outcome.
type outcomeLabel struct {
	outcome   string // procpool.job.outcome
	errorType string // error.type, "" for none
}

var outcomeLabels = [numOutcomes]outcomeLabel{
	succeeded:          {"succeeded", ""},
	cancelled:          {"cancelled", ""},
	failedRemote:       {"failed", "remote"},
	failedCrashed:      {"failed", "crashed"},
	failedPoison:       {"failed", "poison"},
	failedTimeout:      {"failed", "timeout"},
	failedUnavailable:  {"failed", "unavailable"},
	failedShuttingDown: {"failed", "shutting_down"},
	failedTooLarge:     {"failed", "too_large"},
	failedBadResult:    {"failed", "bad_result"},
	failedBadPayload:   {"failed", "bad_payload"},
	failedQueueFull:    {"failed", "queue_full"},
	failedOther:        {"failed", "_OTHER"}, // the semantic conventions' fallback value
}

// classify returns the class of a job's outcome err (nil for a result),
// with errors.Is on the actors package's errors. The order matters where
// an error matches several of them: a cancellation may carry any cause (a
// context's deadline, say), and a worker's "deadline", "too_large" and
// "bad_payload" answers also match ErrRemote.
func classify(err error) outcome {
	switch {
	case err == nil:
		return succeeded
	case errors.Is(err, actors.ErrCancelled):
		return cancelled
	case errors.Is(err, actors.ErrPoisonJob):
		return failedPoison
	case errors.Is(err, actors.ErrJobTimeout):
		return failedTimeout
	case errors.Is(err, actors.ErrWorkerCrashed):
		return failedCrashed
	case errors.Is(err, actors.ErrPayloadTooLarge):
		return failedTooLarge
	case errors.Is(err, actors.ErrBadPayload), remoteCode(err) == codec.CodeBadPayload:
		return failedBadPayload
	case errors.Is(err, actors.ErrBadResult):
		return failedBadResult
	case errors.Is(err, actors.ErrUnavailable):
		return failedUnavailable
	case errors.Is(err, actors.ErrShuttingDown):
		return failedShuttingDown
	case errors.Is(err, actors.ErrQueueFull):
		return failedQueueFull
	case errors.Is(err, actors.ErrRemote):
		return failedRemote
	}
	return failedOther
}

// remoteCode returns the code of the first *actors.RemoteError in err's
// tree, or "". It is errors.As without the allocation of its target.
func remoteCode(err error) string {
	for err != nil {
		switch e := err.(type) {
		case *actors.RemoteError:
			return e.Code
		case interface{ Unwrap() []error }:
			for _, inner := range e.Unwrap() {
				if c := remoteCode(inner); c != "" {
					return c
				}
			}
			return ""
		case interface{ Unwrap() error }:
			err = e.Unwrap()
		default:
			return ""
		}
	}
	return ""
}
