package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Span events of a job's span.
const (
	EventQueued  = "procpool.job.queued"  // the job was accepted and waits for a worker
	EventRunning = "procpool.job.running" // the job's request went to a worker (attempt, pid)
)

// w3c is the propagator of the trace context sent to workers: always W3C
// Trace Context, whatever the application's global propagator, since that
// is what the protocol carries.
var w3c propagation.TraceContext

// jobSpan follows one job: its span, and the W3C trace context to send
// with its requests, computed once when it starts (it does not change).
type jobSpan struct {
	span                    trace.Span // nil for a job that only carries its caller's trace
	traceparent, tracestate string
	outcomes                *[numOutcomes][]attribute.KeyValue
}

// startSpan starts the span of a job accepted with ctx.
func (jt *jobType) startSpan(ctx context.Context) *jobSpan {
	ctx, span := jt.t.tracer.Start(ctx, jt.spanName, jt.spanStart...)
	js := &jobSpan{span: span, outcomes: &jt.spanOutcome}
	w3c.Inject(ctx, js)
	if span.IsRecording() {
		span.AddEvent(EventQueued)
	}
	return js
}

// carryTrace follows a job that records nothing but sends its caller's
// trace context (from ctx) on to the worker, so that the worker's spans
// still join the caller's trace.
func carryTrace(ctx context.Context) *jobSpan {
	js := &jobSpan{}
	w3c.Inject(ctx, js)
	return js
}

// Dispatched implements actors.JobObserver: an EventRunning event, and the
// attempt and the worker's pid as the span's attributes (the last attempt's
// win).
func (js *jobSpan) Dispatched(attempt, pid int) {
	if js.span == nil || !js.span.IsRecording() {
		return
	}
	kvs := [...]attribute.KeyValue{AttemptKey.Int(attempt), PIDKey.Int(pid)}
	js.span.AddEvent(EventRunning, trace.WithAttributes(kvs[:]...))
	js.span.SetAttributes(kvs[:]...)
}

// TraceContext implements actors.JobObserver.
func (js *jobSpan) TraceContext() (traceparent, tracestate string) {
	return js.traceparent, js.tracestate
}

// Resolved implements actors.JobObserver: the span gets the outcome's
// attributes, an error status for a failure (not for a cancellation), and
// ends.
func (js *jobSpan) Resolved(err error) {
	if js.span == nil {
		return
	}
	if js.span.IsRecording() {
		o := classify(err)
		js.span.SetAttributes(js.outcomes[o]...)
		if o != succeeded && o != cancelled {
			js.span.SetStatus(codes.Error, err.Error())
		}
	}
	js.span.End()
}

// Get, Set and Keys make a jobSpan the carrier the propagator writes the
// trace context into.
func (js *jobSpan) Get(key string) string {
	switch key {
	case traceparentHeader:
		return js.traceparent
	case tracestateHeader:
		return js.tracestate
	}
	return ""
}

// Set implements propagation.TextMapCarrier.
func (js *jobSpan) Set(key, value string) {
	switch key {
	case traceparentHeader:
		js.traceparent = value
	case tracestateHeader:
		js.tracestate = value
	}
}

// Keys implements propagation.TextMapCarrier.
func (js *jobSpan) Keys() []string { return []string{traceparentHeader, tracestateHeader} }

// The W3C Trace Context fields.
const (
	traceparentHeader = "traceparent"
	tracestateHeader  = "tracestate"
)
