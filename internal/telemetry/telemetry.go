// Package telemetry turns what procpool's routers tell an actors.Observer
// into OpenTelemetry metrics and traces. It uses only the OpenTelemetry
// API: the application chooses the SDK, the exporters and the providers.
//
// One Telemetry serves a whole procpool.System: Observer returns the
// actors.Observer to give each router (through actors.RouterOptions), and
// Watch lets the observable gauges (queue length, workers by phase,
// memory) read a router's Stats at each collection. docs/metrics.md lists
// every instrument and span.
//
// The job path stays cheap: every attribute set is computed once per job
// type, a job's measurements allocate nothing, and when a provider reports
// nothing (a no-op one, or the global one before the application sets it)
// a job costs one check per kind of signal.
package telemetry

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/procpool/procpool/actors"
)

// ScopeName is the instrumentation scope of procpool's meter and tracer.
const ScopeName = "github.com/procpool/procpool"

// DefaultCollectTimeout bounds how long one collection waits for the
// routers' Stats: a router that has not answered by then is left out of
// that collection, so a stuck router cannot hang the application's
// metrics.
const DefaultCollectTimeout = time.Second

// Telemetry holds the instruments and the tracer of one System. Its
// methods are safe for concurrent use; a nil *Telemetry does nothing (its
// Observer is nil, so that routers skip every call).
type Telemetry struct {
	in      *instruments
	tracer  trace.Tracer
	metrics *liveness // of the MeterProvider
	traces  *liveness // of the TracerProvider

	// CollectTimeout bounds the wait for the routers' Stats in one
	// collection; set it before the first collection. New sets it to
	// DefaultCollectTimeout.
	CollectTimeout time.Duration

	types sync.Map // job type name → *jobType

	mu      sync.Mutex
	watched map[string]*watch // by job type name
	closed  bool
}

// New returns the Telemetry that reports to mp and tp. Pass the global
// providers (otel.GetMeterProvider, otel.GetTracerProvider) for the
// default behaviour: nothing is reported until the application sets them.
// New returns nil when both providers are no-op ones. An error means some
// instruments could not be created; the Telemetry is usable without them.
func New(mp metric.MeterProvider, tp trace.TracerProvider) (*Telemetry, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	t := &Telemetry{
		metrics: meterLiveness(mp), traces: tracerLiveness(tp),
		CollectTimeout: DefaultCollectTimeout, watched: make(map[string]*watch),
	}
	if t.metrics.mode == modeOff && t.traces.mode == modeOff {
		return nil, nil
	}
	t.tracer = tp.Tracer(ScopeName)
	meter := mp.Meter(ScopeName)
	in, err := newInstruments(meter)
	t.in = in
	_, rerr := meter.RegisterCallback(t.observe, in.jobs, in.queue, in.running, in.workers, in.memory)
	return t, errors.Join(err, rerr)
}

// Observer returns the actors.Observer for the router of jobType, with
// its attribute sets computed once. It returns nil when t is nil.
func (t *Telemetry) Observer(jobType string) actors.Observer {
	if t == nil {
		return nil
	}
	return t.jobType(jobType)
}

// jobType returns the state of the job type name, creating it once.
func (t *Telemetry) jobType(name string) *jobType {
	if v, ok := t.types.Load(name); ok {
		return v.(*jobType)
	}
	v, _ := t.types.LoadOrStore(name, newJobType(t, name))
	return v.(*jobType)
}

// Close records the measurements still waiting in the batches, and
// forgets every watched router and refuses new ones, so that a
// MeterProvider that outlives the System stops asking for their Stats:
// from then on the gauges report nothing. The job counts keep their final
// values (as the SDK keeps the histograms'), and the Observers stay
// usable.
func (t *Telemetry) Close() {
	if t == nil {
		return
	}
	t.types.Range(func(_, v any) bool {
		v.(*jobType).flush(nil)
		return true
	})
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	clear(t.watched)
}

// traceJob reports whether a job submitted with ctx gets a span: when
// the TracerProvider reports (see liveness). When it does not, a job whose
// caller's ctx carries a span still sends the caller's trace context on to
// its worker (carryOnly), but records nothing; with a no-op provider, not
// even that.
func (t *Telemetry) traceJob(ctx context.Context) (start, carryOnly bool) {
	if t.traces.live() {
		return true, false
	}
	return false, t.traces.mode == modeGlobal && trace.SpanContextFromContext(ctx).IsValid()
}
