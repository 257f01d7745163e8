package telemetry

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/procpool/procpool/actors"
	"github.com/procpool/procpool/supervisor"
)

// failureLabels are the values of FailureKey, by supervisor.FailureKind;
// failureUnknown is for a kind not listed (and a restart whose failure was
// not seen).
var failureLabels = [...]string{
	supervisor.ExitFailure:       "exit",
	supervisor.SignalFailure:     "signal",
	supervisor.ProtocolFailure:   "protocol",
	supervisor.JobTimeoutFailure: "job_timeout",
	supervisor.HeartbeatFailure:  "heartbeat",
	supervisor.MemoryFailure:     "memory",
	supervisor.StartupFailure:    "startup",
}

// failureUnknown indexes the "unknown" failure label, after the kinds.
const failureUnknown = len(failureLabels)

// failureIndex returns the index of f's kind in the attribute sets.
func failureIndex(f *supervisor.Failure) int {
	if f == nil || f.Kind <= 0 || int(f.Kind) >= len(failureLabels) {
		return failureUnknown
	}
	return int(f.Kind)
}

// The worker phases of procpool.worker.count, in the order observeStats
// reads them from actors.Stats.
var phaseLabels = [...]string{"starting", "idle", "busy", "retiring", "stopping", "failing"}

// crashMemory bounds how many failed workers a job type remembers, so
// that a restart can name the failure of the worker it replaces.
const crashMemory = 256

// measured is one precomputed attribute set, as the options each kind of
// instrument call takes: passing a prebuilt slice to a variadic parameter
// allocates nothing.
type measured struct {
	add     []metric.AddOption
	record  []metric.RecordOption
	observe []metric.ObserveOption
}

// measure returns the options of the attribute set of kvs (which it may
// reorder).
func measure(kvs ...attribute.KeyValue) measured {
	o := metric.WithAttributeSet(attribute.NewSet(kvs...))
	return measured{add: []metric.AddOption{o}, record: []metric.RecordOption{o}, observe: []metric.ObserveOption{o}}
}

// jobType is the actors.Observer of one job type: its attribute sets,
// computed once, and what it remembers of failed workers.
type jobType struct {
	t    *Telemetry
	name string

	plain     measured                     // the job type alone (the histograms' too)
	byClass   [numOutcomes]measured        // job type, outcome, error.type: the job counter's
	byFailure [failureUnknown + 1]measured // job type, failure kind
	byPhase   [len(phaseLabels)]measured   // job type, phase

	spanName    string
	spanStart   []trace.SpanStartOption
	spanOutcome [numOutcomes][]attribute.KeyValue

	// batches hold the resolved jobs' measurements until they are
	// recorded in bulk (see shards), and count the jobs by class.
	batches shards

	mu        sync.Mutex
	crashed   map[int]int // failure index, by the pid of a failed worker not yet replaced
	lastCrash int         // failure index of the last failure, failureUnknown before the first
}

func newJobType(t *Telemetry, name string) *jobType {
	jt := &jobType{t: t, name: name, crashed: make(map[int]int), lastCrash: failureUnknown}
	typ := JobTypeKey.String(name)
	jt.plain = measure(typ)
	for o, l := range outcomeLabels {
		span := []attribute.KeyValue{OutcomeKey.String(l.outcome)}
		if l.errorType != "" {
			span = append(span, ErrorTypeKey.String(l.errorType))
		}
		jt.byClass[o] = measure(append([]attribute.KeyValue{typ}, span...)...)
		jt.spanOutcome[o] = span
	}
	for i := range jt.byFailure {
		label := "unknown"
		if i < failureUnknown && failureLabels[i] != "" {
			label = failureLabels[i]
		}
		jt.byFailure[i] = measure(typ, FailureKey.String(label))
	}
	for i, p := range phaseLabels {
		jt.byPhase[i] = measure(typ, PhaseKey.String(p))
	}
	jt.spanName = SpanName(name)
	jt.spanStart = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(typ)}
	return jt
}

// SpanName returns the name of the span of a job of jobType.
func SpanName(jobType string) string { return "procpool.job " + jobType }

// of returns the state of jobType: jt itself, unless the router was given
// an Observer made for another job type.
func (jt *jobType) of(jobType string) *jobType {
	if jobType == jt.name {
		return jt
	}
	return jt.t.jobType(jobType)
}

// JobAccepted implements actors.Observer: it starts the job's span, a
// child of the span in ctx, when traces are on (see Telemetry.traceJob).
func (jt *jobType) JobAccepted(ctx context.Context, jobType string) actors.JobObserver {
	start, carry := jt.t.traceJob(ctx)
	switch {
	case start:
		return jt.of(jobType).startSpan(ctx)
	case carry:
		return carryTrace(ctx)
	}
	return nil
}

// JobResolved implements actors.Observer: it counts the job by class of
// outcome and records its queue wait and, if it was dispatched, its run
// time.
func (jt *jobType) JobResolved(jobType string, err error, queueWait, run time.Duration) {
	if !jt.t.metrics.live() {
		return
	}
	a := jt.of(jobType)
	a.batches.add(jt.t.in, a.plain.record, classify(err), queueWait, run)
}

// flush records jt's waiting measurements and observes its job counter
// (o nil: no observation): the classes that have counted a job.
func (jt *jobType) flush(o metric.Observer) {
	counts := jt.batches.flushAll(jt.t.in, jt.plain.record)
	if o == nil {
		return
	}
	for c, n := range counts {
		if n > 0 {
			o.ObserveInt64(jt.t.in.jobs, n, jt.byClass[c].observe...)
		}
	}
}

// Event implements actors.Observer: it counts worker starts, failures,
// restarts, recycles, passivations, unclean stops and give-ups.
func (jt *jobType) Event(e *actors.WorkerEvent) {
	ctx := context.Background()
	in := jt.t.in
	a := jt.of(e.JobType)
	switch e.Kind {
	case actors.EventStarted:
		in.starts.Add(ctx, 1, a.plain.add...)
	case actors.EventCrashed:
		i := failureIndex(e.Failure)
		a.rememberCrash(e.PID, i)
		in.failures.Add(ctx, 1, a.byFailure[i].add...)
	case actors.EventRestarted:
		i := failureIndex(e.Failure)
		if e.Failure == nil {
			i = a.replacedCrash(e.PID)
		}
		in.restarts.Add(ctx, 1, a.byFailure[i].add...)
	case actors.EventRecycled:
		in.recycles.Add(ctx, 1, a.plain.add...)
	case actors.EventPassivated:
		in.passivations.Add(ctx, 1, a.plain.add...)
	case actors.EventUncleanStop:
		in.unclean.Add(ctx, 1, a.plain.add...)
	case actors.EventGaveUp:
		in.gaveUp.Add(ctx, 1, a.byFailure[failureIndex(e.Failure)].add...)
	}
}

// rememberCrash records the failure of the worker pid, so that the
// restart that replaces it counts under the same kind.
func (jt *jobType) rememberCrash(pid, failure int) {
	jt.mu.Lock()
	defer jt.mu.Unlock()
	jt.lastCrash = failure
	if pid == 0 {
		return
	}
	if len(jt.crashed) >= crashMemory {
		for p := range jt.crashed { // forget one: its restart, if any, counts as the last failure's
			delete(jt.crashed, p)
			break
		}
	}
	jt.crashed[pid] = failure
}

// replacedCrash returns the failure index of the failed worker pid that a
// restart replaces. A worker that did not fail itself (a sibling of a
// failed one, under the all-for-one strategy) is replaced because of the
// job type's last failure.
func (jt *jobType) replacedCrash(pid int) int {
	jt.mu.Lock()
	defer jt.mu.Unlock()
	if i, ok := jt.crashed[pid]; ok {
		delete(jt.crashed, pid)
		return i
	}
	return jt.lastCrash
}
