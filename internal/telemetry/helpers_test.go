package telemetry

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// harness is a Telemetry reporting to SDK providers that the test reads:
// a ManualReader for the metrics, a SpanRecorder for the spans.
type harness struct {
	tel    *Telemetry
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	h.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(h.spans))
	tel, err := New(mp, h.tp)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if tel == nil {
		t.Fatal("New returned nil for SDK providers")
	}
	h.tel = tel
	t.Cleanup(func() {
		tel.Close()
		_ = mp.Shutdown(context.Background())
		_ = h.tp.Shutdown(context.Background())
	})
	return h
}

// collect collects the metrics, by name, and fails the test if the
// collection returns an error.
func (h *harness) collect(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	ms, err := h.collectErr()
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	return ms
}

func (h *harness) collectErr() (map[string]metricdata.Metrics, error) {
	var rm metricdata.ResourceMetrics
	err := h.reader.Collect(context.Background(), &rm)
	out := make(map[string]metricdata.Metrics)
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sm.Scope.Name == ScopeName {
				out[m.Name] = m
			}
		}
	}
	return out, err
}

// sumValue returns the value of m's data point with exactly the attributes
// kvs, and whether there is one. m must be an int64 sum.
func sumValue(t *testing.T, m metricdata.Metrics, kvs ...attribute.KeyValue) (int64, bool) {
	t.Helper()
	sum, ok := m.Data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s: data is %T, want an int64 Sum", m.Name, m.Data)
	}
	want := attribute.NewSet(kvs...)
	for _, p := range sum.DataPoints {
		if p.Attributes.Equals(&want) {
			return p.Value, true
		}
	}
	return 0, false
}

// histogramPoint returns m's data point with exactly the attributes kvs.
func histogramPoint(t *testing.T, m metricdata.Metrics, kvs ...attribute.KeyValue) (metricdata.HistogramDataPoint[float64], bool) {
	t.Helper()
	hist, ok := m.Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%s: data is %T, want a float64 Histogram", m.Name, m.Data)
	}
	want := attribute.NewSet(kvs...)
	for _, p := range hist.DataPoints {
		if p.Attributes.Equals(&want) {
			return p, true
		}
	}
	return metricdata.HistogramDataPoint[float64]{}, false
}

// points returns how many data points m has.
func points(m metricdata.Metrics) int {
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		return len(d.DataPoints)
	case metricdata.Histogram[float64]:
		return len(d.DataPoints)
	}
	return -1
}
