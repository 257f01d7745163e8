package procpool_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/internal/proctest"
	"github.com/procpool/procpool/internal/telemetry"
	"github.com/procpool/procpool/internal/testbin"
)

// otelSystem is a System reporting to SDK providers the test reads.
type otelSystem struct {
	sys    *procpool.System
	reader *sdkmetric.ManualReader
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
}

// newOtelSystem starts a System with an SDK MeterProvider (a ManualReader)
// and TracerProvider (a SpanRecorder), and checks at the end of the test
// that it shut down leaving no process, goroutine or descriptor behind.
func newOtelSystem(t *testing.T) *otelSystem {
	t.Helper()
	testbin.Path(t) // built before counting file descriptors
	checkFDs := proctest.CheckFDs(t)
	o := &otelSystem{reader: sdkmetric.NewManualReader(), spans: tracetest.NewSpanRecorder()}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(o.reader))
	o.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(o.spans))
	logger := hclog.New(&hclog.LoggerOptions{Name: "test", Level: testLogLevel(), Output: testWriter{t}})
	o.sys = procpool.NewSystem(procpool.Config{Logger: logger, MeterProvider: mp, TracerProvider: o.tp})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := o.sys.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		_ = mp.Shutdown(context.Background())
		_ = o.tp.Shutdown(context.Background())
		proctest.VerifyNone(t)
		checkFDs()
	})
	return o
}

// collect returns procpool's metrics by name.
func (o *otelSystem) collect(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := o.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name == telemetry.ScopeName {
			for _, m := range sm.Metrics {
				out[m.Name] = m
			}
		}
	}
	return out
}

// value returns the value of the int64 sum name's data point with exactly
// the attributes kvs, or -1 if it has none.
func value(ms map[string]metricdata.Metrics, name string, kvs ...attribute.KeyValue) int64 {
	sum, ok := ms[name].Data.(metricdata.Sum[int64])
	if !ok {
		return -1
	}
	want := attribute.NewSet(kvs...)
	for _, p := range sum.DataPoints {
		if p.Attributes.Equals(&want) {
			return p.Value
		}
	}
	return -1
}

// TestGaugesOfARealPool: the gauges read a spawned router's Stats: its
// workers by phase, its queue, its running jobs; after Shutdown they are
// gone.
func TestGaugesOfARealPool(t *testing.T) {
	o := newOtelSystem(t)
	jt := jobType(t, "sleep")
	jt.MinWorkers, jt.MaxWorkers = 2, 2
	r, err := o.sys.Spawn(jt)
	if err != nil {
		t.Fatal(err)
	}
	typ := telemetry.JobTypeKey.String("sleep")
	phase := func(p string) attribute.KeyValue { return telemetry.PhaseKey.String(p) }
	if !proctest.WaitFor(30*time.Second, func() bool {
		return value(o.collect(t), "procpool.worker.count", typ, phase("idle")) == 2
	}) {
		t.Fatalf("procpool.worker.count{idle} never reached 2: %v", o.collect(t)["procpool.worker.count"])
	}

	ctx, cancel := context.WithCancel(context.Background())
	var jobs []*procpool.Job
	for range 3 {
		j, err := r.Submit(ctx, procpool.Blob, []byte("60000"))
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	var ms map[string]metricdata.Metrics
	if !proctest.WaitFor(30*time.Second, func() bool {
		ms = o.collect(t)
		return value(ms, "procpool.worker.count", typ, phase("busy")) == 2 && value(ms, "procpool.queue.length", typ) == 1
	}) {
		t.Fatalf("never 2 busy workers and 1 queued job: workers %v, queue %v", ms["procpool.worker.count"], ms["procpool.queue.length"])
	}
	for name, want := range map[string]int64{"procpool.job.running": 2, "procpool.queue.length": 1} {
		if got := value(ms, name, typ); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	for _, p := range []string{"idle", "starting", "retiring", "stopping", "failing"} {
		if got := value(ms, "procpool.worker.count", typ, phase(p)); got != 0 {
			t.Errorf("procpool.worker.count{%s} = %d, want 0", p, got)
		}
	}
	// Each worker's resident memory, under its pid.
	st, err := r.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.PerWorker) != 2 {
		t.Fatalf("Stats has %d workers, want 2", len(st.PerWorker))
	}
	for _, w := range st.PerWorker {
		if rss := value(ms, "process.memory.usage", typ, telemetry.PIDKey.Int(w.PID)); rss <= 0 {
			t.Errorf("process.memory.usage{pid %d} = %d, want its resident memory", w.PID, rss)
		}
	}
	cancel()
	for _, j := range jobs {
		if _, err := j.Wait(context.Background()); !errors.Is(err, procpool.ErrCancelled) {
			t.Errorf("job: %v, want ErrCancelled", err)
		}
	}

	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	if err := o.sys.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	ms = o.collect(t)
	for _, name := range []string{"procpool.worker.count", "procpool.queue.length", "procpool.job.running", "process.memory.usage"} {
		if _, ok := ms[name]; ok {
			t.Errorf("%s still reported after Shutdown", name)
		}
	}
}

// TestMetricsAndSpansOfRealJobs: jobs through real worker processes are
// counted by outcome, timed, and traced as children of their callers'
// spans; a worker's death is counted as a failure and its replacement as a
// restart. (The worker's side of the trace, the trace context carried in
// the request, is not checked here yet.)
func TestMetricsAndSpansOfRealJobs(t *testing.T) {
	o := newOtelSystem(t)
	jt := jobType(t, "mixed")
	jt.MinWorkers, jt.MaxWorkers = 1, 1
	jt.JobTimeout = 300 * time.Millisecond
	r, err := o.sys.Spawn(jt)
	if err != nil {
		t.Fatal(err)
	}
	ctx, caller := o.tp.Tracer("test").Start(context.Background(), "caller")
	call := func(ctx context.Context, payload string) error {
		_, err := r.Call(ctx, procpool.Blob, []byte(payload))
		return err
	}
	for range 3 {
		if err := call(ctx, "echo:hi"); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		payload string
		target  error
	}{
		{"nope:x", procpool.ErrRemote},          // bad_payload: no such job type in the worker
		{"garbage:what", procpool.ErrRemote},    // remote: the handler's error
		{"sleep:10000", procpool.ErrJobTimeout}, // timeout: the worker's deadline
		{"exit:3", procpool.ErrWorkerCrashed},   // crashed: the worker exits mid-job
		{"sleep:10000", procpool.ErrCancelled},  // cancelled by its caller
	}
	for _, c := range cases {
		cctx := ctx
		var cancel context.CancelFunc = func() {}
		if c.target == procpool.ErrCancelled {
			cctx, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
		}
		err := call(cctx, c.payload)
		cancel()
		if !errors.Is(err, c.target) {
			t.Fatalf("%s: %v, want %v", c.payload, err, c.target)
		}
	}
	caller.End()

	typ := telemetry.JobTypeKey.String("mixed")
	outcome := func(o, e string) []attribute.KeyValue {
		kvs := []attribute.KeyValue{typ, telemetry.OutcomeKey.String(o)}
		if e != "" {
			kvs = append(kvs, telemetry.ErrorTypeKey.String(e))
		}
		return kvs
	}
	failure := func(k string) []attribute.KeyValue { return []attribute.KeyValue{typ, telemetry.FailureKey.String(k)} }
	var ms map[string]metricdata.Metrics
	// The crashed worker's replacement starts after a backoff.
	if !proctest.WaitFor(30*time.Second, func() bool {
		ms = o.collect(t)
		return value(ms, "procpool.worker.restarts", failure("exit")...) == 1
	}) {
		t.Errorf("procpool.worker.restarts{exit} = %d, want 1", value(ms, "procpool.worker.restarts", failure("exit")...))
	}
	for _, c := range []struct {
		name string
		kvs  []attribute.KeyValue
		want int64
	}{
		{"procpool.job.count", outcome("succeeded", ""), 3},
		{"procpool.job.count", outcome("failed", "bad_payload"), 1},
		{"procpool.job.count", outcome("failed", "remote"), 1},
		{"procpool.job.count", outcome("failed", "timeout"), 1},
		{"procpool.job.count", outcome("failed", "crashed"), 1},
		{"procpool.job.count", outcome("cancelled", ""), 1},
		{"procpool.worker.failures", failure("exit"), 1},
		{"procpool.worker.starts", []attribute.KeyValue{typ}, 2},
	} {
		if got := value(ms, c.name, c.kvs...); got != c.want {
			t.Errorf("%s%v = %d, want %d", c.name, c.kvs, got, c.want)
		}
	}
	hist, _ := ms["procpool.job.run.duration"].Data.(metricdata.Histogram[float64])
	var runs uint64
	for _, p := range hist.DataPoints {
		runs += p.Count
	}
	if runs != 8 {
		t.Errorf("procpool.job.run.duration counts %d jobs, want the 8 dispatched", runs)
	}

	var jobs []sdktrace.ReadOnlySpan
	for _, s := range o.spans.Ended() {
		if s.Name() == telemetry.SpanName("mixed") {
			jobs = append(jobs, s)
		}
	}
	if len(jobs) != 8 {
		t.Fatalf("%d job spans, want 8", len(jobs))
	}
	for _, s := range jobs {
		if s.Parent().SpanID() != caller.SpanContext().SpanID() {
			t.Errorf("job span's parent %v, want the caller's %v", s.Parent().SpanID(), caller.SpanContext().SpanID())
		}
		var pid int64
		for _, e := range s.Events() {
			if e.Name == telemetry.EventRunning {
				for _, kv := range e.Attributes {
					if kv.Key == telemetry.PIDKey {
						pid = kv.Value.AsInt64()
					}
				}
			}
		}
		if pid <= 0 {
			t.Errorf("job span without a running event naming a worker pid: %v", s.Events())
		}
	}
}
