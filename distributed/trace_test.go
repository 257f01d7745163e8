package distributed_test

import (
	"context"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/distributed"
	"github.com/procpool/procpool/distributed/embedded"
)

// TestTraceContextCrossesTheQueue: the job's span on its node, and the
// worker that runs it, join the producer's caller's trace.
func TestTraceContextCrossesTheQueue(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, embedded.Config{})
	cfg := distributed.Config{}
	nodeSpans := tracetest.NewSpanRecorder()
	nodeTP := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(nodeSpans))
	defer func() { _ = nodeTP.Shutdown(context.Background()) }()
	startLocalNodeWith(t, srv.URL(), "n1", cfg, procpool.JobType{Name: "info", MaxWorkers: 1}, procpool.Config{TracerProvider: nodeTP})
	p := newProducer(t, connect(t, srv.URL()), cfg)

	callerTP := sdktrace.NewTracerProvider()
	defer func() { _ = callerTP.Shutdown(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx, caller := callerTP.Tracer("test").Start(ctx, "caller")
	out, err := p.Call(ctx, "info", procpool.Blob, nil)
	caller.End()
	if err != nil {
		t.Fatal(err)
	}
	traceID := caller.SpanContext().TraceID().String()
	if !strings.Contains(string(out), "-"+traceID+"-") {
		t.Errorf("the worker's traceparent is not in the caller's trace %s: %q", traceID, out)
	}
	var found bool
	for _, s := range nodeSpans.Ended() {
		if s.SpanContext().TraceID().String() == traceID && s.Parent().SpanID() == caller.SpanContext().SpanID() {
			found = true
		}
	}
	if !found {
		t.Errorf("no span on the node is a child of the caller's span (%d spans)", len(nodeSpans.Ended()))
	}
}
