package worker

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/procpool/procpool/codec"
)

// JobInfo describes the job a handler runs: what the request said about
// it. Info returns it from the handler's context.
type JobInfo struct {
	// ID is the request's id, chosen by the host and unique among this
	// worker's jobs in flight (not across workers: a job the host runs
	// again elsewhere gets another id there).
	ID uint64
	// JobType is the job type the request named.
	JobType string
	// Attempt is 1 for the job's first run, and counts up when the host
	// runs it again (on this worker or another) after a failure. Hosts that
	// do not say (before the "meta" feature) count as 1.
	Attempt int
	// Deadline is when the job's timeout elapses, counted from the
	// request's arrival; zero without a timeout. The handler's context
	// ends then.
	Deadline time.Time
	// TraceParent and TraceState are the W3C trace context of the caller's
	// span (the traceparent and tracestate header values), empty when the
	// host sent none. Carrier hands them to a propagator, so that the
	// handler's own spans join the caller's trace.
	TraceParent string
	TraceState  string
	// Streaming reports that the host asked for the job's partial results:
	// the handler may call Send (or SendValue) before it returns.
	Streaming bool
}

// Info returns the description of the job whose handler received ctx (or a
// context derived from it), and false for any other context.
func Info(ctx context.Context) (JobInfo, bool) {
	jc, ok := ctx.Value(jobKey{}).(*jobContext)
	if !ok {
		return JobInfo{}, false
	}
	info := JobInfo{
		ID:        jc.id,
		JobType:   jc.jobType,
		Attempt:   max(1, int(jc.attempt)),
		Streaming: jc.stream != nil,
	}
	if jc.trace != nil {
		info.TraceParent, info.TraceState = jc.trace.TraceParent, jc.trace.TraceState
	}
	info.Deadline, _ = jc.Deadline()
	return info, true
}

// Carrier returns the job's trace context as a carrier for a W3C trace
// context propagator. It has the methods of OpenTelemetry's
// propagation.TextMapCarrier, so a handler's spans join the caller's trace
// with:
//
//	info, _ := worker.Info(ctx)
//	ctx = propagation.TraceContext{}.Extract(ctx, info.Carrier())
//	ctx, span := tracer.Start(ctx, "resize")
//	defer span.End()
//
// (go.opentelemetry.io/otel/propagation; this package does not depend on
// OpenTelemetry.)
func (i JobInfo) Carrier() *TraceCarrier {
	return &TraceCarrier{TraceParent: i.TraceParent, TraceState: i.TraceState}
}

// TraceCarrier holds a W3C trace context. Its Get, Set and Keys methods are
// those of OpenTelemetry's propagation.TextMapCarrier; keys are matched
// without regard to case, as HTTP header names are.
type TraceCarrier struct {
	TraceParent string
	TraceState  string
}

// The W3C trace context's header names.
const (
	traceParentKey = "traceparent"
	traceStateKey  = "tracestate"
)

// Get returns the value of the traceparent or tracestate key, or "".
func (c *TraceCarrier) Get(key string) string {
	switch {
	case strings.EqualFold(key, traceParentKey):
		return c.TraceParent
	case strings.EqualFold(key, traceStateKey):
		return c.TraceState
	}
	return ""
}

// Set sets the traceparent or tracestate key, and ignores any other.
func (c *TraceCarrier) Set(key, value string) {
	switch {
	case strings.EqualFold(key, traceParentKey):
		c.TraceParent = value
	case strings.EqualFold(key, traceStateKey):
		c.TraceState = value
	}
}

// Keys returns the keys that have a value.
func (c *TraceCarrier) Keys() []string {
	keys := make([]string, 0, 2)
	if c.TraceParent != "" {
		keys = append(keys, traceParentKey)
	}
	if c.TraceState != "" {
		keys = append(keys, traceStateKey)
	}
	return keys
}

// jobKey is the context key under which a job's context finds itself.
type jobKey struct{}

// jobContext is the context a handler receives: the job's cancellable
// context (a lazyContext: cancel, timeout), the job's description and its
// stream's state. One is allocated per job and never reused, so that a
// context a handler leaks (to a goroutine that outlives the job) never
// speaks for a later job.
type jobContext struct {
	lazyContext

	c       *conn
	id      uint64
	jobType string
	attempt uint32
	kind    codec.PayloadKind // of the handler's results, and so of its chunks
	trace   *TraceCarrier     // nil unless the request carried a trace context
	stream  *streamState      // nil unless the host asked for partial results
}

// streamState is the state of a job's stream of partial results.
type streamState struct {
	mu     sync.Mutex
	credit uint64        // chunks the host still accepts
	done   bool          // the handler returned: no more chunks
	wake   chan struct{} // closed, and replaced, when credit grows
}

// Value returns the jobContext itself for jobKey, and otherwise what the
// job's context holds.
func (jc *jobContext) Value(key any) any {
	if _, ok := key.(jobKey); ok {
		return jc
	}
	return jc.lazyContext.Value(key)
}

// init makes jc, zero, describe the job m requests, for a handler of kind,
// its context a child of c.ctx that ends when m's timeout elapses.
func (jc *jobContext) init(c *conn, m *codec.Message, kind codec.PayloadKind) {
	// Field by field, jc being zero: a composite literal would copy the
	// whole struct, through the GC's bulk write barrier while it marks.
	jc.c, jc.id, jc.jobType, jc.attempt, jc.kind = c, m.ID, m.JobType, m.Attempt, kind
	if m.TraceParent != "" || m.TraceState != "" {
		jc.trace = &TraceCarrier{TraceParent: m.TraceParent, TraceState: m.TraceState}
	}
	if m.Credit > 0 && c.features.Has(codec.FeatureStream) {
		jc.stream = &streamState{credit: uint64(m.Credit)}
	}
	var deadline time.Time
	if m.Timeout > 0 {
		deadline = time.Now().Add(m.Timeout)
	}
	jc.lazyContext.begin(c.ctx, deadline)
}
