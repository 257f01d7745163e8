package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/internal/telemetry"
)

// The OpenTelemetry experiment (go run ./bench -otel): what metrics cost
// on the job path. The 1 KiB BLOB workload runs through pools of 2 (8 in
// flight each, 16 callers, as in the throughput tables), one System per
// mode:
//
//	off      no provider: the global ones, which the bench never sets
//	metrics  an SDK MeterProvider with a ManualReader, collected at the
//	         end (which checks that every job was counted)
//	traces   the same, and an SDK TracerProvider that samples every job
//	         and drops the spans (for information: no target)
//
// The three pools are started and warmed up together, then take turns:
// each round runs a batch of jobs through each pool in a rotating order,
// so that a noisy spell of the shared machine falls on every mode alike,
// and compares the modes round by round. A run of cfg.Jobs jobs is ten
// rounds; cfg.Runs runs are made. The target: metrics on keeps at least
// 95% of the throughput of metrics off.

// telemetryTarget is the least share of the throughput with metrics off
// that the pool keeps with metrics on.
const telemetryTarget = 0.95

// roundsPerRun is how many rounds a run of cfg.Jobs jobs is cut into.
const roundsPerRun = 10

// otelMode is one column of the experiment.
type otelMode struct {
	Key    string
	Name   string
	meters bool // an SDK MeterProvider with a ManualReader
	traces bool // an SDK TracerProvider that samples every job
}

var otelModes = []otelMode{
	{Key: "off", Name: "metrics off (global providers, not set)"},
	{Key: "metrics", Name: "metrics on (SDK MeterProvider, ManualReader)", meters: true},
	{Key: "traces", Name: "metrics and traces (every job sampled, spans dropped)", meters: true, traces: true},
}

// otelResult is what the experiment measured.
type otelResult struct {
	Rounds   int
	Batch    int        // jobs per pool per round
	Expected int        // jobs the metrics pool ran, warm-up included
	Samples  [][]sample // by mode, one per round
	// Counted is the jobs procpool.job.count reported for the metrics
	// pool (0 while the routers do not call their Observer).
	Counted int64
}

// otelPool is the pool of one mode.
type otelPool struct {
	sys    *procpool.System
	r      *procpool.Router
	reader *sdkmetric.ManualReader // nil without metrics
	close  []func(context.Context) error
}

// runTelemetry runs the experiment and prints its table.
func runTelemetry(ctx context.Context, e *env) (*otelResult, error) {
	var w *workload
	for _, x := range e.workloads {
		if x.Key == "1KiB" {
			w = x
		}
	}
	callers := 2 * pipeline
	rounds := roundsPerRun * e.cfg.Runs
	res := &otelResult{Rounds: rounds, Batch: max(1, e.cfg.Jobs/roundsPerRun), Samples: make([][]sample, len(otelModes))}
	pools := make([]*otelPool, len(otelModes))
	defer func() {
		for _, p := range pools {
			if p != nil {
				p.shutdown()
			}
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, watchdog+time.Duration(rounds)*time.Minute)
	defer cancel()
	for i, om := range otelModes {
		p, err := startOtelPool(ctx, e, om, callers)
		if err != nil {
			return nil, failf("otel "+om.Name, err)
		}
		pools[i] = p
	}
	next := make([]int, len(pools)) // each pool's next job number
	warm := 2 * callers
	for i, p := range pools {
		if err := runJobs(ctx, warm, callers, p.call(w, 0)); err != nil {
			return nil, failf("otel warm-up "+otelModes[i].Name, poolError(ctx, p.r, err))
		}
		next[i] = warm
	}
	res.Expected = warm + rounds*res.Batch
	for round := range rounds {
		if round%roundsPerRun == 0 {
			e.progress("run %d/%d ", round/roundsPerRun+1, e.cfg.Runs)
		}
		collectGarbage()
		for k := range pools {
			i := (round + k) % len(pools) // every mode takes every place in turn
			p := pools[i]
			sw := startStopwatch()
			if err := runJobs(ctx, res.Batch, callers, p.call(w, next[i])); err != nil {
				return nil, failf("otel "+otelModes[i].Name, poolError(ctx, p.r, err))
			}
			res.Samples[i] = append(res.Samples[i], sw.stop(res.Batch))
			next[i] += res.Batch
		}
		if round%roundsPerRun == roundsPerRun-1 {
			e.progress("\n")
		}
	}
	counted, err := countedJobs(pools[1].reader)
	if err != nil {
		return nil, err
	}
	res.Counted = counted
	res.print(e.cfg.Out)
	return res, nil
}

// startOtelPool starts the pool of mode om, its workers ready.
func startOtelPool(ctx context.Context, e *env, om otelMode, callers int) (*otelPool, error) {
	p := &otelPool{}
	oe := *e
	if om.meters {
		p.reader = sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(p.reader))
		oe.meterProvider, p.close = mp, append(p.close, mp.Shutdown)
	}
	if om.traces {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
			sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(dropSpans{})))
		oe.tracerProvider, p.close = tp, append(p.close, tp.Shutdown)
	}
	jt := procpool.JobType{Name: "sha512", Command: e.bin, MinWorkers: 2, MaxWorkers: 2, IdleTimeout: -1, InFlight: pipeline}
	sys, r, err := startPool(ctx, &oe, jt)
	if err != nil {
		p.shutdown()
		return nil, err
	}
	p.sys, p.r = sys, r
	return p, nil
}

// call returns the job function of the pool: job first+i.
func (p *otelPool) call(w *workload, first int) func(context.Context, int) error {
	return func(ctx context.Context, i int) error { return poolJob(ctx, p.r, w, procpool.Blob, first+i) }
}

func (p *otelPool) shutdown() {
	if p.sys != nil {
		_ = shutdown(p.sys)
	}
	for _, c := range p.close {
		_ = c(context.Background())
	}
	p.sys, p.close = nil, nil
}

// countedJobs returns the sum of procpool.job.count over its data points.
func countedJobs(reader *sdkmetric.ManualReader) (int64, error) {
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		return 0, err
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			if sum, ok := mt.Data.(metricdata.Sum[int64]); ok && mt.Name == "procpool.job.count" && sm.Scope.Name == telemetry.ScopeName {
				for _, p := range sum.DataPoints {
					n += p.Value
				}
			}
		}
	}
	return n, nil
}

// print writes the experiment's table and its target.
func (r *otelResult) print(out io.Writer) {
	fmt.Fprintf(out, "\nOpenTelemetry cost: SHA-512 1 KiB BLOB, pool of 2, %d in flight each, %d callers (%d rounds of %d jobs per mode)\n",
		pipeline, 2*pipeline, r.Rounds, r.Batch)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "mode\tjobs/s\tmin–max\tvs off (per round)\thost CPU µs/job")
	off := rates(r.Samples[0])
	for i, om := range otelModes {
		xs := rates(r.Samples[i])
		host, _ := medianCPU(r.Samples[i])
		vs := "—"
		if i > 0 {
			vs = percent(ratios(xs, off))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", om.Name, med(xs), span(xs), vs, cpu(host))
	}
	tw.Flush()
	on := summarize(ratios(rates(r.Samples[1]), off)).Median
	met := "no"
	switch {
	case r.Counted == 0:
		met = "not measured: the routers do not call their Observer yet (procpool.job.count counted no job)"
	case r.Counted != int64(r.Expected):
		met = fmt.Sprintf("not measured: procpool.job.count counted %d of the pool's %d jobs", r.Counted, r.Expected)
	case on >= telemetryTarget:
		met = "yes"
	}
	fmt.Fprintf(out, "target: metrics on keeps ≥ %.0f%% of metrics off: %.1f%%, met: %s\n", 100*telemetryTarget, 100*on, met)
}

// percent formats the median of per-run ratios as a percentage with one
// decimal, and their range.
func percent(xs []float64) string {
	s := summarize(xs)
	switch s.Runs {
	case 0:
		return "—"
	case 1:
		return fmt.Sprintf("%.1f%%", 100*s.Median)
	}
	return fmt.Sprintf("%.1f%% (%.1f–%.1f%%)", 100*s.Median, 100*s.Min, 100*s.Max)
}

// dropSpans is a span exporter that drops every span.
type dropSpans struct{}

func (dropSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (dropSpans) Shutdown(context.Context) error                             { return nil }

// The providers of the systems the bench starts (nil: the global ones).
type otelProviders struct {
	meterProvider  metric.MeterProvider
	tracerProvider trace.TracerProvider
}
