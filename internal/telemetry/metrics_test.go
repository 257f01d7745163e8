package telemetry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/procpool/procpool/actors"
	"github.com/procpool/procpool/supervisor"
)

// outcomeCases are errors a job can resolve with, and the outcome and
// error.type each must be counted under.
var outcomeCases = []struct {
	name      string
	err       error
	outcome   string
	errorType string // "" for none
}{
	{"result", nil, "succeeded", ""},
	{"cancelled by its context", actors.Cancelled(context.DeadlineExceeded), "cancelled", ""},
	{"cancelled with a cause", fmt.Errorf("wrapped: %w", actors.Cancelled(errors.New("user gave up"))), "cancelled", ""},
	{"worker error", &actors.RemoteError{Code: "handler", Message: "no"}, "failed", "remote"},
	{"worker panic", &actors.RemoteError{Code: "panic", Message: "boom"}, "failed", "remote"},
	{"worker died", &actors.CrashError{Cause: actors.ErrWorkerCrashed, PID: 7}, "failed", "crashed"},
	{"poison", &actors.CrashError{Cause: actors.ErrPoisonJob}, "failed", "poison"},
	{"host's timeout", &actors.CrashError{Cause: actors.ErrJobTimeout}, "failed", "timeout"},
	{"worker's deadline", &actors.RemoteError{Code: "deadline"}, "failed", "timeout"},
	{"unavailable", fmt.Errorf("%w: gave up", actors.ErrUnavailable), "failed", "unavailable"},
	{"shutting down", fmt.Errorf("%w: router stopped", actors.ErrShuttingDown), "failed", "shutting_down"},
	{"payload too large", fmt.Errorf("%w: 9 bytes", actors.ErrPayloadTooLarge), "failed", "too_large"},
	{"result too large", &actors.RemoteError{Code: "too_large"}, "failed", "too_large"},
	{"bad result", fmt.Errorf("%w: msgpack: bad", actors.ErrBadResult), "failed", "bad_result"},
	{"bad payload (host)", fmt.Errorf("%w: truncated", actors.ErrBadPayload), "failed", "bad_payload"},
	{"bad payload (worker)", errors.Join(errors.New("context"), &actors.RemoteError{Code: "bad_payload"}), "failed", "bad_payload"},
	{"queue full", actors.ErrQueueFull, "failed", "queue_full"},
	{"anything else", errors.New("something new"), "failed", "_OTHER"},
}

func outcomeAttrs(jobType, outcome, errorType string) []attribute.KeyValue {
	kvs := []attribute.KeyValue{JobTypeKey.String(jobType), OutcomeKey.String(outcome)}
	if errorType != "" {
		kvs = append(kvs, ErrorTypeKey.String(errorType))
	}
	return kvs
}

func TestJobsAreCountedByOutcome(t *testing.T) {
	h := newHarness(t)
	obs := h.tel.Observer("sha512")
	// Case i resolves i+1 times, so that every count is distinct.
	for i, c := range outcomeCases {
		for range i + 1 {
			obs.JobResolved("sha512", c.err, 2*time.Millisecond, 3*time.Millisecond)
		}
	}
	ms := h.collect(t)
	jobs := ms[jobsSpec.Name]
	want := map[string]int64{} // several cases share a class
	for i, c := range outcomeCases {
		want[c.outcome+"/"+c.errorType] += int64(i + 1)
	}
	if got := points(jobs); got != len(want) || got != int(numOutcomes) {
		t.Errorf("%s has %d data points, want %d (one per class, %d classes)", jobsSpec.Name, got, len(want), numOutcomes)
	}
	for _, c := range outcomeCases {
		got, ok := sumValue(t, jobs, outcomeAttrs("sha512", c.outcome, c.errorType)...)
		if w := want[c.outcome+"/"+c.errorType]; !ok || got != w {
			t.Errorf("%s: %s{outcome=%s, error.type=%q} = %d (found %v), want %d", c.name, jobsSpec.Name, c.outcome, c.errorType, got, ok, w)
		}
	}
}

func TestWaitAndRunAreRecordedInSeconds(t *testing.T) {
	h := newHarness(t)
	obs := h.tel.Observer("sleep")
	obs.JobResolved("sleep", nil, 1500*time.Microsecond, 250*time.Millisecond)
	obs.JobResolved("sleep", nil, 500*time.Microsecond, 750*time.Millisecond)
	// Cancelled while queued: never dispatched, so no run time.
	obs.JobResolved("sleep", actors.Cancelled(nil), 2*time.Second, 0)
	ms := h.collect(t)

	typ := JobTypeKey.String("sleep")
	wait, found := histogramPoint(t, ms[waitSpec.Name], typ)
	if !found || wait.Count != 3 || math.Abs(wait.Sum-2.002) > 1e-9 {
		t.Errorf("wait: count %d sum %v (found %v), want 3 and 2.002 s", wait.Count, wait.Sum, found)
	}
	run, found := histogramPoint(t, ms[runSpec.Name], typ)
	if !found || run.Count != 2 || math.Abs(run.Sum-1.0) > 1e-9 {
		t.Errorf("run: count %d sum %v (found %v), want 2 (the cancelled job never ran) and 1 s", run.Count, run.Sum, found)
	}
	if !equalFloats(run.Bounds, durationBuckets) || !equalFloats(wait.Bounds, durationBuckets) {
		t.Errorf("buckets %v and %v, want %v", wait.Bounds, run.Bounds, durationBuckets)
	}
	// 1.5 ms, 0.5 ms and 2 s fall in the buckets ending at 2.5 ms, 0.5 ms
	// and 2.5 s.
	for i, b := range wait.Bounds {
		want := uint64(0)
		if b == 0.0025 || b == 0.0005 || b == 2.5 {
			want = 1
		}
		if wait.BucketCounts[i] != want {
			t.Errorf("wait bucket ≤ %v s: %d jobs, want %d", b, wait.BucketCounts[i], want)
		}
	}
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestWorkerEventsAreCounted(t *testing.T) {
	h := newHarness(t)
	obs := h.tel.Observer("w")
	ev := func(kind actors.EventKind, pid int, f *supervisor.Failure) {
		obs.Event(&actors.WorkerEvent{Kind: kind, JobType: "w", PID: pid, Failure: f})
	}
	exit := &supervisor.Failure{Kind: supervisor.ExitFailure, ExitCode: 3}
	mem := &supervisor.Failure{Kind: supervisor.MemoryFailure}
	hb := &supervisor.Failure{Kind: supervisor.HeartbeatFailure}
	for pid := 10; pid < 13; pid++ {
		ev(actors.EventStarted, pid, nil)
		ev(actors.EventReady, pid, nil)
	}
	ev(actors.EventCrashed, 10, exit)
	ev(actors.EventCrashed, 11, mem)
	ev(actors.EventRestarted, 11, nil) // replaces 11: memory
	ev(actors.EventRestarted, 10, nil) // replaces 10: exit
	ev(actors.EventRestarted, 12, nil) // 12 did not fail (all-for-one): the last failure, memory
	ev(actors.EventRestarted, 13, hb)  // an event that names its failure is taken at its word
	ev(actors.EventRecycled, 20, nil)
	ev(actors.EventRecycled, 21, nil)
	ev(actors.EventPassivated, 22, nil)
	ev(actors.EventUncleanStop, 23, nil)
	ev(actors.EventCrashed, 24, &supervisor.Failure{Kind: supervisor.StartupFailure})
	ev(actors.EventGaveUp, 24, &supervisor.Failure{Kind: supervisor.StartupFailure})
	ev(actors.EventRecovered, 0, nil)
	ev(actors.EventCrashed, 25, &supervisor.Failure{Kind: 99})

	ms := h.collect(t)
	typ := JobTypeKey.String("w")
	kind := func(s string) attribute.KeyValue { return FailureKey.String(s) }
	checks := []struct {
		spec Spec
		kvs  []attribute.KeyValue
		want int64
	}{
		{startsSpec, []attribute.KeyValue{typ}, 3},
		{failuresSpec, []attribute.KeyValue{typ, kind("exit")}, 1},
		{failuresSpec, []attribute.KeyValue{typ, kind("memory")}, 1},
		{failuresSpec, []attribute.KeyValue{typ, kind("startup")}, 1},
		{failuresSpec, []attribute.KeyValue{typ, kind("unknown")}, 1},
		{restartsSpec, []attribute.KeyValue{typ, kind("exit")}, 1},
		{restartsSpec, []attribute.KeyValue{typ, kind("memory")}, 2},
		{restartsSpec, []attribute.KeyValue{typ, kind("heartbeat")}, 1},
		{recyclesSpec, []attribute.KeyValue{typ}, 2},
		{passivationsSpec, []attribute.KeyValue{typ}, 1},
		{uncleanSpec, []attribute.KeyValue{typ}, 1},
		{gaveUpSpec, []attribute.KeyValue{typ, kind("startup")}, 1},
	}
	for _, c := range checks {
		got, ok := sumValue(t, ms[c.spec.Name], c.kvs...)
		if !ok || got != c.want {
			t.Errorf("%s%v = %d (found %v), want %d", c.spec.Name, c.kvs, got, ok, c.want)
		}
	}
	if n := points(ms[restartsSpec.Name]); n != 3 {
		t.Errorf("%s has %d data points, want 3", restartsSpec.Name, n)
	}
}

func TestCrashMemoryIsBounded(t *testing.T) {
	h := newHarness(t)
	jt := h.tel.jobType("w")
	for pid := 1; pid <= 10*crashMemory; pid++ {
		jt.Event(&actors.WorkerEvent{Kind: actors.EventCrashed, JobType: "w", PID: pid, Failure: &supervisor.Failure{Kind: supervisor.ExitFailure}})
	}
	jt.mu.Lock()
	n := len(jt.crashed)
	jt.mu.Unlock()
	if n > crashMemory {
		t.Errorf("remembers %d failed workers, want at most %d", n, crashMemory)
	}
}

func TestEveryMeasurementCarriesTheJobType(t *testing.T) {
	h := newHarness(t)
	a, b := h.tel.Observer("a"), h.tel.Observer("b")
	a.JobResolved("a", nil, time.Millisecond, time.Millisecond)
	b.JobResolved("b", nil, time.Millisecond, time.Millisecond)
	// An Observer given to the router of another job type counts under
	// the job type it is told.
	a.JobResolved("c", nil, time.Millisecond, time.Millisecond)
	for _, k := range []actors.EventKind{actors.EventStarted, actors.EventCrashed, actors.EventRestarted,
		actors.EventRecycled, actors.EventPassivated, actors.EventUncleanStop, actors.EventGaveUp} {
		a.Event(&actors.WorkerEvent{Kind: k, JobType: "a", PID: 1})
		b.Event(&actors.WorkerEvent{Kind: k, JobType: "b", PID: 2})
	}
	h.tel.Watch("a", fixedStats(&actors.Stats{JobType: "a", Queued: 1, PerWorker: []actors.WorkerStats{{PID: 1, RSS: 1}}}))
	ms := h.collect(t)
	for _, s := range Specs() {
		m, ok := ms[s.Name]
		if !ok {
			t.Errorf("%s: not reported", s.Name)
			continue
		}
		for _, attrs := range attributeSets(m) {
			if v, ok := attrs.Value(JobTypeKey); !ok || v.AsString() == "" {
				t.Errorf("%s: a data point without %s: %v", s.Name, JobTypeKey, attrs.ToSlice())
			}
		}
	}
	if _, ok := sumValue(t, ms[jobsSpec.Name], outcomeAttrs("c", "succeeded", "")...); !ok {
		t.Errorf("the job of type c was not counted under c")
	}
}

func attributeSets(m metricdata.Metrics) []attribute.Set {
	var out []attribute.Set
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			out = append(out, p.Attributes)
		}
	}
	return out
}

func TestInstrumentsAreWhatTheirSpecsSay(t *testing.T) {
	h := newHarness(t)
	obs := h.tel.Observer("x")
	obs.JobResolved("x", nil, time.Millisecond, time.Millisecond)
	for _, k := range []actors.EventKind{actors.EventStarted, actors.EventCrashed, actors.EventRestarted,
		actors.EventRecycled, actors.EventPassivated, actors.EventUncleanStop, actors.EventGaveUp} {
		obs.Event(&actors.WorkerEvent{Kind: k, JobType: "x", PID: 1})
	}
	h.tel.Watch("x", fixedStats(&actors.Stats{JobType: "x", PerWorker: []actors.WorkerStats{{PID: 1, RSS: 1}}}))
	ms := h.collect(t)
	seen := map[string]bool{}
	for _, s := range Specs() {
		if seen[s.Name] {
			t.Errorf("%s is specified twice", s.Name)
		}
		seen[s.Name] = true
		m, ok := ms[s.Name]
		if !ok {
			t.Errorf("%s: not reported", s.Name)
			continue
		}
		if m.Unit != s.Unit || m.Description != s.Description {
			t.Errorf("%s: unit %q description %q, want %q and %q", s.Name, m.Unit, m.Description, s.Unit, s.Description)
		}
		// The data does not tell an observed instrument from another.
		var kind string
		switch d := m.Data.(type) {
		case metricdata.Sum[int64]:
			kind = "UpDownCounter"
			if d.IsMonotonic {
				kind = "Counter"
			}
		case metricdata.Histogram[float64]:
			kind = "Histogram"
		}
		if kind != strings.TrimSuffix(s.Kind, " (observed)") {
			t.Errorf("%s is a %s (%T), want a %s", s.Name, kind, m.Data, s.Kind)
		}
		for _, attrs := range attributeSets(m) {
			for _, kv := range attrs.ToSlice() {
				if !containsKey(s.Attributes, kv.Key) {
					t.Errorf("%s: attribute %s is not in its spec %v", s.Name, kv.Key, s.Attributes)
				}
			}
		}
	}
}

func containsKey(keys []attribute.Key, k attribute.Key) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}

// TestBatchesLoseNothing: jobs resolved from many goroutines while
// collections run are all counted and all recorded, whatever batch they
// waited in.
func TestBatchesLoseNothing(t *testing.T) {
	h := newHarness(t)
	obs := h.tel.Observer("b")
	const goroutines, perGoroutine = 8, 1000 // not a multiple of batchSize per shard
	done := make(chan struct{})
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for {
			select {
			case <-done:
				return
			default:
				if _, err := h.collectErr(); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perGoroutine {
				var err error
				if (g+i)%5 == 0 {
					err = &actors.RemoteError{Code: "handler"}
				}
				obs.JobResolved("b", err, time.Millisecond, time.Duration(i%2)*time.Millisecond)
			}
		})
	}
	wg.Wait()
	close(done)
	<-collected
	ms := h.collect(t)
	total := int64(goroutines * perGoroutine)
	ok, _ := sumValue(t, ms[jobsSpec.Name], outcomeAttrs("b", "succeeded", "")...)
	failed, _ := sumValue(t, ms[jobsSpec.Name], outcomeAttrs("b", "failed", "remote")...)
	if ok != total*4/5 || failed != total/5 {
		t.Errorf("counted %d succeeded and %d failed, want %d and %d", ok, failed, total*4/5, total/5)
	}
	wait, _ := histogramPoint(t, ms[waitSpec.Name], JobTypeKey.String("b"))
	run, _ := histogramPoint(t, ms[runSpec.Name], JobTypeKey.String("b"))
	if wait.Count != uint64(total) || run.Count != uint64(total/2) {
		t.Errorf("recorded %d waits and %d runs, want %d and %d", wait.Count, run.Count, total, total/2)
	}
}

func TestCloseRecordsWhatWaits(t *testing.T) {
	h := newHarness(t)
	jt := h.tel.jobType("c")
	for range 3 {
		jt.JobResolved("c", nil, time.Millisecond, time.Millisecond)
	}
	h.tel.Close()
	for i := range jt.batches {
		if n := jt.batches[i].n; n != 0 {
			t.Errorf("shard %d still holds %d values after Close", i, n)
		}
	}
	if wait, _ := histogramPoint(t, h.collect(t)[waitSpec.Name], JobTypeKey.String("c")); wait.Count != 3 {
		t.Errorf("recorded %d waits, want 3", wait.Count)
	}
}
