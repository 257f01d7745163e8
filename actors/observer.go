package actors

import (
	"context"
	"time"
)

// Observer is told what a router's jobs and workers do, for metrics and
// traces (package procpool wires one to OpenTelemetry). Its methods are
// called on the job path and from the router's goroutine: they must be
// cheap, must not block, and must be safe for concurrent use. A router
// with no Observer skips every call.
type Observer interface {
	// JobAccepted is called once a job is admitted, with the context it
	// was submitted with (context.Background for a *Job sent to the
	// router's PID). It may return a JobObserver that follows the job
	// (a span, say), or nil.
	JobAccepted(ctx context.Context, jobType string) JobObserver
	// JobResolved is called once per accepted job, when it resolves: err
	// is its outcome (nil for a result), queueWait the time from its
	// acceptance to its last dispatch to a worker (its whole life, if it
	// was never dispatched), and run the time from that dispatch to its
	// resolution (0 if it was never dispatched).
	JobResolved(jobType string, err error, queueWait, run time.Duration)
	// Event is called for every supervision event the router publishes.
	Event(e *WorkerEvent)
}

// JobObserver follows one job, from its acceptance to its resolution.
type JobObserver interface {
	// Dispatched is called each time the job's request goes to a worker:
	// attempt counts from 1, pid is the worker's process id.
	Dispatched(attempt, pid int)
	// TraceContext returns the W3C trace context (traceparent,
	// tracestate) to send to the worker with the job's request, so that
	// the worker's own spans join the job's trace; empty strings for none.
	TraceContext() (traceparent, tracestate string)
	// Resolved is called once, when the job resolves, with its outcome.
	Resolved(err error)
}
