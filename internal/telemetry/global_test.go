package telemetry

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

func metricNoop() metric.MeterProvider { return metricnoop.NewMeterProvider() }
func traceNoop() trace.TracerProvider  { return tracenoop.NewTracerProvider() }

// globalEnv makes the test binary run TestGlobalProvidersSetLater's body.
const globalEnv = "PROCPOOL_TELEMETRY_GLOBAL_TEST"

// TestGlobalProvidersSetLater: a Telemetry built on the global providers
// before the application sets them reports nothing, then everything once
// they are set. Setting the global providers cannot be undone, so the test
// runs in a process of its own.
func TestGlobalProvidersSetLater(t *testing.T) {
	if os.Getenv(globalEnv) == "1" {
		globalProvidersSetLater(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestGlobalProvidersSetLater$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), globalEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the test's own process failed: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

func globalProvidersSetLater(t *testing.T) {
	tel, err := New(nil, nil)
	if err != nil || tel == nil {
		t.Fatalf("New(global, global) = %v, %v", tel, err)
	}
	defer tel.Close()
	obs := tel.Observer("x")
	if jo := obs.JobAccepted(context.Background(), "x"); jo != nil {
		t.Fatal("a span before any TracerProvider was set")
	}
	obs.JobResolved("x", nil, time.Millisecond, time.Millisecond) // lost: no provider yet

	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer mp.Shutdown(context.Background())
	defer tp.Shutdown(context.Background())
	otel.SetMeterProvider(mp)
	otel.SetTracerProvider(tp)

	jo := obs.JobAccepted(context.Background(), "x")
	if jo == nil {
		t.Fatal("no span once the global TracerProvider is set")
	}
	jo.Resolved(nil)
	obs.JobResolved("x", nil, time.Millisecond, time.Millisecond)
	if n := len(spans.Ended()); n != 1 {
		t.Errorf("%d spans recorded, want 1", n)
	}
	h := &harness{tel: tel, reader: reader}
	ms := h.collect(t)
	if v, ok := sumValue(t, ms[jobsSpec.Name], outcomeAttrs("x", "succeeded", "")...); !ok || v != 1 {
		t.Errorf("%s = %d (found %v), want the 1 job after the provider was set", jobsSpec.Name, v, ok)
	}
}
