package telemetry

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/procpool/procpool/actors"
)

// jobPath is what the router calls for one job that runs once and
// succeeds.
func jobPath(obs actors.Observer, ctx context.Context) {
	if jo := obs.JobAccepted(ctx, "x"); jo != nil {
		jo.Dispatched(1, 100)
		_, _ = jo.TraceContext()
		jo.Resolved(nil)
	}
	obs.JobResolved("x", nil, 20*time.Microsecond, 30*time.Microsecond)
}

// TestTheJobPathAllocatesNothing: with metrics on (an SDK MeterProvider
// with a reader) or off (the global provider, not set), and no span to
// follow, a job's calls allocate nothing.
func TestTheJobPathAllocatesNothing(t *testing.T) {
	for _, c := range []struct {
		name string
		mp   metric.MeterProvider
		tp   trace.TracerProvider
	}{
		{"sdk metrics, global tracer", sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())), nil},
		{"sdk metrics, noop tracer", sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())), traceNoop()},
		{"global metrics and tracer", nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			tel, err := New(c.mp, c.tp)
			if err != nil {
				t.Fatal(err)
			}
			defer tel.Close()
			obs := tel.Observer("x")
			ctx := context.Background()
			jobPath(obs, ctx) // the first measurement creates its aggregation
			obs.JobResolved("x", &actors.RemoteError{Code: "handler"}, time.Millisecond, time.Millisecond)
			if n := testing.AllocsPerRun(1000, func() { jobPath(obs, ctx) }); n != 0 {
				t.Errorf("%v allocations per job, want 0", n)
			}
			remote := &actors.RemoteError{Code: "handler"}
			if n := testing.AllocsPerRun(1000, func() { obs.JobResolved("x", remote, time.Millisecond, time.Millisecond) }); n != 0 {
				t.Errorf("%v allocations per failed job, want 0", n)
			}
		})
	}
}

// BenchmarkJobPath measures the Observer's calls for one job.
func BenchmarkJobPath(b *testing.B) {
	sampled := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(discard{})))
	defer sampled.Shutdown(context.Background())
	for _, c := range []struct {
		name string
		mp   metric.MeterProvider
		tp   trace.TracerProvider
	}{
		{"off", nil, nil},
		{"metrics", sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())), nil},
		{"metrics+traces", sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader())), sampled},
	} {
		b.Run(c.name, func(b *testing.B) {
			tel, err := New(c.mp, c.tp)
			if err != nil {
				b.Fatal(err)
			}
			defer tel.Close()
			obs := tel.Observer("x")
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					jobPath(obs, ctx)
				}
			})
		})
	}
}

// discard is a span exporter that drops every span.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }
