package telemetry

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"go.opentelemetry.io/otel/metric"

	"github.com/procpool/procpool/actors"
)

// Snapshot returns the current Stats of one router; Router.Stats is one.
// It should return by ctx's deadline; if it does not, the collection goes
// on without it.
type Snapshot func(ctx context.Context) (*actors.Stats, error)

// watch is one watched router.
type watch struct {
	jt   *jobType
	snap Snapshot
}

// Watch makes the gauges of jobType read snap at every collection, until
// stop is called, Close is called, or Watch is called again for the same
// job type (a router spawned again under the same name replaces the old
// one). A router that has stopped (its Stats fail with
// actors.ErrShuttingDown) is left out of collections quietly.
func (t *Telemetry) Watch(jobType string, snap Snapshot) (stop func()) {
	if t == nil {
		return func() {}
	}
	w := &watch{jt: t.jobType(jobType), snap: snap}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return func() {}
	}
	t.watched[jobType] = w
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.watched[jobType] == w {
			delete(t.watched, jobType)
		}
	}
}

// snapshotResult is one router's answer in a collection.
type snapshotResult struct {
	w     *watch
	stats *actors.Stats
	err   error
}

// observe is the callback of the observed instruments. It records the
// measurements waiting in every job type's batches and observes their job
// counts; then it asks every watched router for its
// Stats at once, each in a goroutine of its own, and observes the answers
// that arrive within CollectTimeout (or ctx's deadline, if sooner). A
// router that answers late is left out of this collection and named in the
// error, which the SDK hands to OpenTelemetry's error handler; its
// goroutine ends when its Snapshot returns.
func (t *Telemetry) observe(ctx context.Context, o metric.Observer) error {
	t.types.Range(func(_, v any) bool {
		v.(*jobType).flush(o)
		return true
	})
	t.mu.Lock()
	ws := make([]*watch, 0, len(t.watched))
	for _, w := range t.watched {
		ws = append(ws, w)
	}
	t.mu.Unlock()
	if len(ws) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, t.CollectTimeout)
	defer cancel()
	answers := make(chan snapshotResult, len(ws)) // buffered: a late answer blocks nobody
	for _, w := range ws {
		go func() {
			s, err := w.snap(ctx)
			answers <- snapshotResult{w, s, err}
		}()
	}
	var errs []error
	answered := make(map[*watch]bool, len(ws))
	for range ws {
		select {
		case a := <-answers:
			answered[a.w] = true
			switch {
			case a.err == nil && a.stats != nil:
				observeStats(o, a.w.jt, a.stats)
			case a.err != nil && !errors.Is(a.err, actors.ErrShuttingDown):
				errs = append(errs, fmt.Errorf("procpool telemetry: stats of %q: %w", a.w.jt.name, a.err))
			}
		case <-ctx.Done():
			var late []string
			for _, w := range ws {
				if !answered[w] {
					late = append(late, w.jt.name)
				}
			}
			sort.Strings(late)
			errs = append(errs, fmt.Errorf("procpool telemetry: no stats from %s within the collection's time: %w",
				strings.Join(late, ", "), ctx.Err()))
			return errors.Join(errs...)
		}
	}
	return errors.Join(errs...)
}

// observeStats observes one router's gauges.
func observeStats(o metric.Observer, jt *jobType, s *actors.Stats) {
	in := jt.t.in
	o.ObserveInt64(in.queue, int64(s.Queued), jt.plain.observe...)
	o.ObserveInt64(in.running, int64(s.Running), jt.plain.observe...)
	byPhase := [len(phaseLabels)]int{s.Starting, s.Idle, s.Busy, s.Retiring, s.Stopping, s.Failing}
	for i, n := range byPhase {
		o.ObserveInt64(in.workers, int64(n), jt.byPhase[i].observe...)
	}
	for _, w := range s.PerWorker {
		if w.PID != 0 && w.RSS != 0 { // 0: still starting, or not read
			o.ObserveInt64(in.memory, int64(w.RSS), metric.WithAttributes(JobTypeKey.String(jt.name), PIDKey.Int(w.PID)))
		}
	}
}
