package telemetry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"

	"github.com/procpool/procpool/actors"
)

func fixedStats(s *actors.Stats) Snapshot {
	return func(context.Context) (*actors.Stats, error) { return s, nil }
}

func TestGaugesReadEachWatchedRouter(t *testing.T) {
	h := newHarness(t)
	h.tel.Watch("a", fixedStats(&actors.Stats{JobType: "a", Queued: 7, Running: 3,
		Starting: 1, Idle: 2, Busy: 3, Retiring: 4, Stopping: 5, Failing: 6,
		PerWorker: []actors.WorkerStats{
			{PID: 101, RSS: 5 << 20}, {PID: 102, RSS: 7 << 20},
			{PID: 0, Phase: actors.PhaseStarting}, // not started yet: no pid, no reading
		}}))
	h.tel.Watch("b", fixedStats(&actors.Stats{JobType: "b", Idle: 1}))
	ms := h.collect(t)

	typ := JobTypeKey.String("a")
	if v, ok := sumValue(t, ms[queueSpec.Name], typ); !ok || v != 7 {
		t.Errorf("%s{a} = %d (found %v), want 7", queueSpec.Name, v, ok)
	}
	if v, ok := sumValue(t, ms[runningSpec.Name], typ); !ok || v != 3 {
		t.Errorf("%s{a} = %d (found %v), want 3", runningSpec.Name, v, ok)
	}
	for i, phase := range phaseLabels {
		v, ok := sumValue(t, ms[workersSpec.Name], typ, PhaseKey.String(phase))
		if !ok || v != int64(i+1) {
			t.Errorf("%s{a, %s} = %d (found %v), want %d", workersSpec.Name, phase, v, ok, i+1)
		}
	}
	// Every phase is reported, zeros included, so that a series does not
	// vanish when its phase empties.
	if v, ok := sumValue(t, ms[workersSpec.Name], JobTypeKey.String("b"), PhaseKey.String("busy")); !ok || v != 0 {
		t.Errorf("%s{b, busy} = %d (found %v), want 0", workersSpec.Name, v, ok)
	}
	if n := points(ms[workersSpec.Name]); n != 2*len(phaseLabels) {
		t.Errorf("%s has %d data points, want %d", workersSpec.Name, n, 2*len(phaseLabels))
	}
	for pid, want := range map[int]int64{101: 5 << 20, 102: 7 << 20} {
		if v, ok := sumValue(t, ms[memorySpec.Name], typ, PIDKey.Int(pid)); !ok || v != want {
			t.Errorf("%s{a, pid %d} = %d (found %v), want %d", memorySpec.Name, pid, v, ok, want)
		}
	}
	if n := points(ms[memorySpec.Name]); n != 2 {
		t.Errorf("%s has %d data points, want one per started worker, 2", memorySpec.Name, n)
	}
}

func TestWatchIsReplacedStoppedAndClosed(t *testing.T) {
	h := newHarness(t)
	stopOld := h.tel.Watch("a", fixedStats(&actors.Stats{Queued: 1}))
	h.tel.Watch("a", fixedStats(&actors.Stats{Queued: 2})) // spawned again under the same name
	stopOld()                                              // stopping the old watch leaves the new one
	ms := h.collect(t)
	if v, ok := sumValue(t, ms[queueSpec.Name], JobTypeKey.String("a")); !ok || v != 2 {
		t.Errorf("%s{a} = %d (found %v), want the new router's 2", queueSpec.Name, v, ok)
	}
	stopB := h.tel.Watch("b", fixedStats(&actors.Stats{Queued: 5}))
	stopB()
	ms = h.collect(t)
	if _, ok := sumValue(t, ms[queueSpec.Name], JobTypeKey.String("b")); ok {
		t.Error("a stopped watch is still collected")
	}
	h.tel.Observer("c").JobResolved("c", nil, time.Millisecond, time.Millisecond)
	h.tel.Close()
	calls := 0
	h.tel.Watch("c", func(context.Context) (*actors.Stats, error) { calls++; return &actors.Stats{}, nil })
	ms = h.collect(t)
	if _, ok := ms[queueSpec.Name]; ok || calls != 0 {
		t.Errorf("after Close: gauges still reported (%v), snapshot called %d times", ok, calls)
	}
	if v, ok := sumValue(t, ms[jobsSpec.Name], outcomeAttrs("c", "succeeded", "")...); !ok || v != 1 {
		t.Errorf("after Close: %s{c} = %d (found %v), want its final 1", jobsSpec.Name, v, ok)
	}
	h.tel.Close() // again: nothing happens
}

func TestGaugesSkipAStoppedRouterQuietly(t *testing.T) {
	h := newHarness(t)
	h.tel.Watch("gone", func(context.Context) (*actors.Stats, error) {
		return nil, fmt.Errorf("procpool: stats of %q: %w", "gone", actors.ErrShuttingDown)
	})
	h.tel.Watch("here", fixedStats(&actors.Stats{Queued: 1}))
	ms := h.collect(t) // fails the test on an error
	if _, ok := sumValue(t, ms[queueSpec.Name], JobTypeKey.String("gone")); ok {
		t.Error("a stopped router has gauges")
	}
	if _, ok := sumValue(t, ms[queueSpec.Name], JobTypeKey.String("here")); !ok {
		t.Error("the live router has no gauges")
	}
}

func TestGaugesReportAFailingRouter(t *testing.T) {
	h := newHarness(t)
	h.tel.Watch("broken", func(context.Context) (*actors.Stats, error) { return nil, errors.New("no answer") })
	_, err := h.collectErr()
	if err == nil || !strings.Contains(err.Error(), `"broken"`) || !strings.Contains(err.Error(), "no answer") {
		t.Errorf("Collect: %v, want the router's error", err)
	}
}

// TestAStuckRouterDoesNotHangACollection: a router whose Stats never
// return (even ignoring its context) is left out once CollectTimeout
// passes; the others are reported.
func TestAStuckRouterDoesNotHangACollection(t *testing.T) {
	h := newHarness(t)
	h.tel.CollectTimeout = 200 * time.Millisecond
	release := make(chan struct{})
	returned := make(chan struct{})
	h.tel.Watch("stuck", func(context.Context) (*actors.Stats, error) {
		defer close(returned)
		<-release // ignores its context
		return &actors.Stats{Queued: 9}, nil
	})
	h.tel.Watch("fine", fixedStats(&actors.Stats{Queued: 1}))
	done := make(chan struct{})
	var err error
	var fine, stuck bool
	go func() {
		defer close(done)
		got, cerr := h.collectErr()
		err = cerr
		if m, ok := got[queueSpec.Name]; ok {
			_, fine = sumValue(t, m, JobTypeKey.String("fine"))
			_, stuck = sumValue(t, m, JobTypeKey.String("stuck"))
		}
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		close(release)
		t.Fatal("the collection hung on a stuck router")
	}
	close(release)
	<-returned
	if err == nil || !strings.Contains(err.Error(), "stuck") {
		t.Errorf("Collect: %v, want an error naming the stuck router", err)
	}
	if !fine || stuck {
		t.Errorf("reported: fine %v, stuck %v; want only fine", fine, stuck)
	}
}

func TestGaugesHonourTheCollectionsContext(t *testing.T) {
	h := newHarness(t)
	h.tel.CollectTimeout = time.Hour
	var deadline time.Time
	h.tel.Watch("a", func(ctx context.Context) (*actors.Stats, error) {
		deadline, _ = ctx.Deadline()
		return &actors.Stats{}, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	want, _ := ctx.Deadline()
	if err := h.tel.observe(ctx, metricnoop.Observer{}); err != nil {
		t.Fatal(err)
	}
	if !deadline.Equal(want) {
		t.Errorf("the snapshot's deadline is %v, want the collection's %v", deadline, want)
	}
}
