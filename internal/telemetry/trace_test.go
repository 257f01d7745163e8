package telemetry

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/procpool/procpool/actors"
)

// spanAttrs returns a span's attributes by key.
func spanAttrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	out := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		out[kv.Key] = kv.Value
	}
	return out
}

// extract parses a W3C trace context as a worker would.
func extract(traceparent, tracestate string) trace.SpanContext {
	c := propagation.MapCarrier{"traceparent": traceparent}
	if tracestate != "" {
		c["tracestate"] = tracestate
	}
	return trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), c))
}

func TestAJobsSpanIsAChildOfItsCallersSpan(t *testing.T) {
	h := newHarness(t)
	obs := h.tel.Observer("sha512")
	ts, err := trace.ParseTraceState("vendor=value")
	if err != nil {
		t.Fatal(err)
	}
	ctx, parent := h.tp.Tracer("caller").Start(context.Background(), "handle request")
	ctx = trace.ContextWithSpanContext(ctx, parent.SpanContext().WithTraceState(ts))

	jo := obs.JobAccepted(ctx, "sha512")
	if jo == nil {
		t.Fatal("JobAccepted returned no JobObserver under a sampled span")
	}
	jo.Dispatched(1, 4101)
	jo.Dispatched(2, 4102) // its first worker died
	traceparent, tracestate := jo.TraceContext()
	jo.Resolved(&actors.CrashError{Cause: actors.ErrWorkerCrashed, PID: 4102})
	parent.End()

	ended := h.spans.Ended()
	if len(ended) != 2 {
		t.Fatalf("%d spans ended, want 2 (the job's, the caller's)", len(ended))
	}
	job := ended[0]
	if job.Name() != "procpool.job sha512" || job.SpanKind() != trace.SpanKindClient {
		t.Errorf("span %q kind %v, want %q, client", job.Name(), job.SpanKind(), "procpool.job sha512")
	}
	if job.Parent().SpanID() != parent.SpanContext().SpanID() || job.SpanContext().TraceID() != parent.SpanContext().TraceID() {
		t.Errorf("job span's parent %v, want the caller's span %v", job.Parent(), parent.SpanContext())
	}
	if job.InstrumentationScope().Name != ScopeName {
		t.Errorf("scope %q, want %q", job.InstrumentationScope().Name, ScopeName)
	}
	attrs := spanAttrs(job)
	want := map[attribute.Key]attribute.Value{
		JobTypeKey:   attribute.StringValue("sha512"),
		AttemptKey:   attribute.IntValue(2),
		PIDKey:       attribute.IntValue(4102),
		OutcomeKey:   attribute.StringValue("failed"),
		ErrorTypeKey: attribute.StringValue("crashed"),
	}
	for k, v := range want {
		if attrs[k] != v {
			t.Errorf("attribute %s = %v, want %v", k, attrs[k], v)
		}
	}
	if job.Status().Code != codes.Error || job.Status().Description == "" {
		t.Errorf("status %v, want an error with a description", job.Status())
	}
	events := job.Events()
	if len(events) != 3 || events[0].Name != EventQueued || events[1].Name != EventRunning || events[2].Name != EventRunning {
		t.Fatalf("events %v, want queued, running, running", events)
	}
	for i, e := range events[1:] {
		ea := map[attribute.Key]attribute.Value{}
		for _, kv := range e.Attributes {
			ea[kv.Key] = kv.Value
		}
		if ea[AttemptKey].AsInt64() != int64(i+1) || ea[PIDKey].AsInt64() != int64(4101+i) {
			t.Errorf("running event %d: %v, want attempt %d pid %d", i+1, e.Attributes, i+1, 4101+i)
		}
	}
	// The worker gets the job's span as its parent, and the caller's
	// trace state.
	sc := extract(traceparent, tracestate)
	if !sc.IsValid() || sc.SpanID() != job.SpanContext().SpanID() || sc.TraceID() != job.SpanContext().TraceID() || !sc.IsSampled() {
		t.Errorf("TraceContext %q: %v, want the job's span %v, sampled", traceparent, sc, job.SpanContext())
	}
	if tracestate != "vendor=value" {
		t.Errorf("tracestate %q, want the caller's %q", tracestate, "vendor=value")
	}
}

func TestSpanStatusFollowsTheOutcome(t *testing.T) {
	for _, c := range outcomeCases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			jo := h.tel.Observer("x").JobAccepted(context.Background(), "x")
			if jo == nil {
				t.Fatal("no JobObserver with an SDK TracerProvider")
			}
			jo.Resolved(c.err)
			ended := h.spans.Ended()
			if len(ended) != 1 {
				t.Fatalf("%d spans ended, want 1", len(ended))
			}
			s := ended[0]
			if s.Parent().IsValid() {
				t.Errorf("a job without a caller's span has parent %v, want a root span", s.Parent())
			}
			attrs := spanAttrs(s)
			if attrs[OutcomeKey].AsString() != c.outcome || attrs[ErrorTypeKey].AsString() != c.errorType {
				t.Errorf("outcome %q error.type %q, want %q %q", attrs[OutcomeKey].AsString(), attrs[ErrorTypeKey].AsString(), c.outcome, c.errorType)
			}
			wantCode := codes.Unset
			if c.outcome == "failed" {
				wantCode = codes.Error
			}
			if s.Status().Code != wantCode {
				t.Errorf("status %v, want %v", s.Status().Code, wantCode)
			}
		})
	}
}

func TestAnUnsampledJobCarriesTheDecision(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()), sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())
	tel, err := New(sdkmetric.NewMeterProvider(), tp)
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Close()
	jo := tel.Observer("x").JobAccepted(context.Background(), "x")
	if jo == nil {
		t.Fatal("no JobObserver")
	}
	jo.Dispatched(1, 1)
	traceparent, _ := jo.TraceContext()
	jo.Resolved(nil)
	sc := extract(traceparent, "")
	if !sc.IsValid() || sc.IsSampled() {
		t.Errorf("traceparent %q: valid %v sampled %v, want a valid, unsampled context", traceparent, sc.IsValid(), sc.IsSampled())
	}
	if n := len(spans.Ended()); n != 0 {
		t.Errorf("%d spans recorded by a NeverSample provider", n)
	}
}

// otherTracer is a TracerProvider of the application's that procpool was
// not given: its spans are in the caller's context.
func otherTracer(t *testing.T) trace.Tracer {
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp.Tracer("app")
}

// TestWithoutATracerProviderNothingIsRecorded: with the global
// TracerProvider (which no test of this package sets; see
// TestGlobalProvidersSetLater, which runs in a process of its own), a job
// gets no span; if its caller's context carries one, that span's trace
// context is still sent to the worker, so that the worker's own spans join
// the caller's trace.
func TestWithoutATracerProviderNothingIsRecorded(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	tel, err := New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Close()
	if tel.traces.mode != modeGlobal {
		t.Fatalf("tracing mode %d, want the global provider's (%d)", tel.traces.mode, modeGlobal)
	}
	obs := tel.Observer("x")
	if jo := obs.JobAccepted(context.Background(), "x"); jo != nil {
		t.Errorf("JobAccepted without a span or a TracerProvider returned %T, want nil", jo)
	}
	ctx, callerSpan := otherTracer(t).Start(context.Background(), "caller")
	defer callerSpan.End()
	jo := obs.JobAccepted(ctx, "x")
	if jo == nil {
		t.Fatal("a caller's span is not carried to the worker")
	}
	jo.Dispatched(1, 1)
	traceparent, _ := jo.TraceContext()
	jo.Resolved(errors.New("x"))
	if sc := extract(traceparent, ""); sc.SpanID() != callerSpan.SpanContext().SpanID() {
		t.Errorf("traceparent %q, want the caller's span %v", traceparent, callerSpan.SpanContext().SpanID())
	}
	if !callerSpan.IsRecording() {
		t.Error("the job ended its caller's span")
	}
}

func TestNoopProvidersGiveNoObserver(t *testing.T) {
	tel, err := New(metricNoop(), traceNoop())
	if err != nil || tel != nil {
		t.Fatalf("New(noop, noop) = %v, %v; want nil, nil", tel, err)
	}
	if obs := tel.Observer("x"); obs != nil {
		t.Errorf("a nil Telemetry's Observer is %#v, want nil", obs)
	}
	tel.Watch("x", fixedStats(&actors.Stats{}))() // no panic
	tel.Close()
	// Metrics off, traces on: an Observer that only traces.
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.Background())
	tel, err = New(metricNoop(), tp)
	if err != nil || tel == nil {
		t.Fatalf("New(noop, sdk) = %v, %v", tel, err)
	}
	obs := tel.Observer("x")
	obs.JobResolved("x", nil, time.Millisecond, time.Millisecond)
	obs.JobAccepted(context.Background(), "x").Resolved(nil)
	if len(spans.Ended()) != 1 {
		t.Errorf("%d spans, want 1", len(spans.Ended()))
	}
}
