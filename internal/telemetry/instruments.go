package telemetry

import (
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Kinds of instrument, as docs/metrics.md names them.
const (
	kindCounter         = "Counter"
	kindObservedCounter = "Counter (observed)"
	kindHistogram       = "Histogram"
	kindUpDownCounter   = "UpDownCounter (observed)"
)

// Spec is one instrument: its name, kind, unit, description and the
// attributes its measurements carry. The instruments below are the only
// ones this package creates; docs/metrics.md lists each of them (a test
// checks that the two agree).
type Spec struct {
	Name        string
	Kind        string
	Unit        string
	Description string
	Attributes  []attribute.Key
}

// Attribute keys. Every measurement carries JobTypeKey.
const (
	JobTypeKey   = attribute.Key("procpool.job.type")     // the job type's name
	OutcomeKey   = attribute.Key("procpool.job.outcome")  // succeeded, failed or cancelled
	ErrorTypeKey = attribute.Key("error.type")            // a failed job's class (semantic conventions' error.type)
	PhaseKey     = attribute.Key("procpool.worker.phase") // starting, idle, busy, retiring, stopping, failing
	FailureKey   = attribute.Key("procpool.failure.kind") // why a worker failed: exit, signal, protocol, ...
	PIDKey       = attribute.Key("process.pid")           // a worker's process id (semantic conventions)
	AttemptKey   = attribute.Key("procpool.job.attempt")  // which run of the job, from 1 (spans)
)

// durationBuckets are the histograms' bucket boundaries in seconds: from
// 10 µs (a small job on a warm worker) to a minute.
var durationBuckets = []float64{
	0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 2.5, 5, 10, 30, 60,
}

// The instruments.
var (
	jobsSpec = Spec{"procpool.job.count", kindObservedCounter, "{job}",
		"Jobs resolved, by outcome; error.type is the class of a failed job.",
		[]attribute.Key{JobTypeKey, OutcomeKey, ErrorTypeKey}}
	waitSpec = Spec{"procpool.job.wait.duration", kindHistogram, "s",
		"Time from a job's acceptance to its last dispatch to a worker (its whole life if it was never dispatched).",
		[]attribute.Key{JobTypeKey}}
	runSpec = Spec{"procpool.job.run.duration", kindHistogram, "s",
		"Time from a job's last dispatch to a worker to its resolution; not recorded for jobs never dispatched.",
		[]attribute.Key{JobTypeKey}}
	queueSpec = Spec{"procpool.queue.length", kindUpDownCounter, "{job}",
		"Jobs accepted and waiting for a worker.",
		[]attribute.Key{JobTypeKey}}
	runningSpec = Spec{"procpool.job.running", kindUpDownCounter, "{job}",
		"Jobs dispatched to a worker and not yet answered.",
		[]attribute.Key{JobTypeKey}}
	workersSpec = Spec{"procpool.worker.count", kindUpDownCounter, "{worker}",
		"Live worker processes, by phase.",
		[]attribute.Key{JobTypeKey, PhaseKey}}
	memorySpec = Spec{"process.memory.usage", kindUpDownCounter, "By",
		"Resident memory of each live worker process, shared memory region excluded.",
		[]attribute.Key{JobTypeKey, PIDKey}}
	startsSpec = Spec{"procpool.worker.starts", kindCounter, "{worker}",
		"Worker processes started.",
		[]attribute.Key{JobTypeKey}}
	failuresSpec = Spec{"procpool.worker.failures", kindCounter, "{failure}",
		"Worker processes that failed (died or were killed), by kind of failure.",
		[]attribute.Key{JobTypeKey, FailureKey}}
	restartsSpec = Spec{"procpool.worker.restarts", kindCounter, "{restart}",
		"Replacements started for failed workers, by the kind of failure they replace.",
		[]attribute.Key{JobTypeKey, FailureKey}}
	recyclesSpec = Spec{"procpool.worker.recycles", kindCounter, "{worker}",
		"Workers retired by plan (job count, age, memory).",
		[]attribute.Key{JobTypeKey}}
	passivationsSpec = Spec{"procpool.worker.passivations", kindCounter, "{worker}",
		"Idle workers above the minimum that were stopped.",
		[]attribute.Key{JobTypeKey}}
	uncleanSpec = Spec{"procpool.worker.unclean_stops", kindCounter, "{worker}",
		"Workers asked to stop that did not exit with status 0 within their grace.",
		[]attribute.Key{JobTypeKey}}
	gaveUpSpec = Spec{"procpool.restart_intensity.exceeded", kindCounter, "{event}",
		"Times the job type gave up restarting workers and became unavailable, by the last failure's kind.",
		[]attribute.Key{JobTypeKey, FailureKey}}
)

// Specs returns every instrument this package creates.
func Specs() []Spec {
	return []Spec{jobsSpec, waitSpec, runSpec, queueSpec, runningSpec, workersSpec, memorySpec,
		startsSpec, failuresSpec, restartsSpec, recyclesSpec, passivationsSpec, uncleanSpec, gaveUpSpec}
}

// instruments are the created instruments of one Telemetry.
type instruments struct {
	jobs               metric.Int64ObservableCounter
	wait, run          metric.Float64Histogram
	queue, running     metric.Int64ObservableUpDownCounter
	workers, memory    metric.Int64ObservableUpDownCounter
	starts, failures   metric.Int64Counter
	restarts, recycles metric.Int64Counter
	passivations       metric.Int64Counter
	unclean, gaveUp    metric.Int64Counter
}

// newInstruments creates the instruments on m. On error the instruments
// it returns are still usable (the API hands back no-op ones).
func newInstruments(m metric.Meter) (*instruments, error) {
	var errs []error
	counter := func(s Spec) metric.Int64Counter {
		c, err := m.Int64Counter(s.Name, metric.WithUnit(s.Unit), metric.WithDescription(s.Description))
		errs = append(errs, err)
		return c
	}
	histogram := func(s Spec) metric.Float64Histogram {
		h, err := m.Float64Histogram(s.Name, metric.WithUnit(s.Unit), metric.WithDescription(s.Description),
			metric.WithExplicitBucketBoundaries(durationBuckets...))
		errs = append(errs, err)
		return h
	}
	observedCounter := func(s Spec) metric.Int64ObservableCounter {
		c, err := m.Int64ObservableCounter(s.Name, metric.WithUnit(s.Unit), metric.WithDescription(s.Description))
		errs = append(errs, err)
		return c
	}
	gauge := func(s Spec) metric.Int64ObservableUpDownCounter {
		g, err := m.Int64ObservableUpDownCounter(s.Name, metric.WithUnit(s.Unit), metric.WithDescription(s.Description))
		errs = append(errs, err)
		return g
	}
	in := &instruments{
		jobs:         observedCounter(jobsSpec),
		wait:         histogram(waitSpec),
		run:          histogram(runSpec),
		queue:        gauge(queueSpec),
		running:      gauge(runningSpec),
		workers:      gauge(workersSpec),
		memory:       gauge(memorySpec),
		starts:       counter(startsSpec),
		failures:     counter(failuresSpec),
		restarts:     counter(restartsSpec),
		recycles:     counter(recyclesSpec),
		passivations: counter(passivationsSpec),
		unclean:      counter(uncleanSpec),
		gaveUp:       counter(gaveUpSpec),
	}
	return in, errors.Join(errs...)
}
