package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// watchdog bounds every measurement: none takes more than a few seconds, so
// one still running after this is stuck (a job that never resolves, a
// worker that never answers). It then fails the run, with a dump of the
// goroutines, instead of hanging it.
const watchdog = 2 * time.Minute

// errStuck marks a measurement stopped by the watchdog.
var errStuck = errors.New("stuck: the watchdog expired")

// stuck wraps err as a stuck measurement and dumps every goroutine to
// stderr, once per process, for the post-mortem.
func stuck(what string, err error) error {
	dumpOnce.Do(func() {
		fmt.Fprintf(os.Stderr, "bench: %s is stuck after %v; goroutines:\n", what, watchdog)
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
	})
	return fmt.Errorf("%s: %w: %v", what, errStuck, err)
}

var dumpOnce sync.Once

// sample is one timed run of n operations (jobs, or start-ups).
type sample struct {
	N       int
	Elapsed time.Duration
	// HostCPU is the CPU time (user+system) of this process during the
	// run; WorkerCPU that of the child processes reaped during it (a
	// worker's whole life, its start-up included).
	HostCPU, WorkerCPU time.Duration
	// HostSys is the system part of HostCPU: system calls, and the
	// kernel's side of waking threads.
	HostSys time.Duration
}

// Rate is operations per second.
func (s sample) Rate() float64 {
	if s.Elapsed <= 0 {
		return math.Inf(1)
	}
	return float64(s.N) / s.Elapsed.Seconds()
}

// cpuPerOp returns the host's and the workers' CPU microseconds per
// operation.
func (s sample) cpuPerOp() (host, workers float64) {
	if s.N == 0 {
		return 0, 0
	}
	return float64(s.HostCPU.Microseconds()) / float64(s.N), float64(s.WorkerCPU.Microseconds()) / float64(s.N)
}

// stopwatch times a run and the CPU used by this process and by the
// children reaped meanwhile.
type stopwatch struct {
	start               time.Time
	self, selfSys, kids time.Duration
}

// collectGarbage collects the garbage of earlier measurements before a
// throughput run, so that its collection is not timed in this one: the
// start of an actor system alone allocates 32,768 maps (protoactor's
// process registry), and every pool measurement starts a system.
func collectGarbage() { runtime.GC() }

func startStopwatch() stopwatch {
	self, selfSys := cpuTime(syscall.RUSAGE_SELF)
	kids, _ := cpuTime(syscall.RUSAGE_CHILDREN)
	return stopwatch{start: time.Now(), self: self, selfSys: selfSys, kids: kids}
}

// stop ends the run of n operations.
func (w stopwatch) stop(n int) sample {
	el := time.Since(w.start)
	self, selfSys := cpuTime(syscall.RUSAGE_SELF)
	kids, _ := cpuTime(syscall.RUSAGE_CHILDREN)
	return sample{
		N: n, Elapsed: el,
		HostCPU:   self - w.self,
		HostSys:   selfSys - w.selfSys,
		WorkerCPU: kids - w.kids,
	}
}

// cpuTime returns the user+system time of who (RUSAGE_SELF or
// RUSAGE_CHILDREN), and its system part.
func cpuTime(who int) (total, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), time.Duration(ru.Stime.Nano())
}

// runJobs runs jobs 0..n-1 with fn from callers goroutines, which take the
// next job number from a shared counter, and returns the first error. A
// failing job stops every caller.
func runJobs(ctx context.Context, n, callers int, fn func(ctx context.Context, i int) error) error {
	var (
		next     atomic.Int64
		failed   atomic.Bool
		once     sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	for range max(callers, 1) {
		wg.Go(func() {
			for !failed.Load() {
				if err := ctx.Err(); err != nil {
					once.Do(func() { firstErr = err })
					failed.Store(true)
					return
				}
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(ctx, i); err != nil {
					once.Do(func() { firstErr = err })
					failed.Store(true)
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

// summary is the median and range of a series of rates.
type summary struct {
	Median, Min, Max float64
	Runs             int
}

// summarize returns the median, min and max of xs (Runs 0 if empty).
func summarize(xs []float64) summary {
	if len(xs) == 0 {
		return summary{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return summary{Median: m, Min: s[0], Max: s[len(s)-1], Runs: len(s)}
}

// rates returns the rates of samples.
func rates(ss []sample) []float64 {
	out := make([]float64, len(ss))
	for i, s := range ss {
		out[i] = s.Rate()
	}
	return out
}

// ratios returns a[i]/b[i] for the runs both have: ratios measured within
// the same run.
func ratios(a, b []float64) []float64 {
	n := min(len(a), len(b))
	out := make([]float64, 0, n)
	for i := range n {
		if b[i] > 0 {
			out = append(out, a[i]/b[i])
		}
	}
	return out
}

// medianCPU returns the median host and worker CPU µs per operation.
// medianSys is the median system part of the host's CPU time per operation,
// in µs.
func medianSys(ss []sample) float64 {
	xs := make([]float64, len(ss))
	for i, s := range ss {
		if s.N > 0 {
			xs[i] = float64(s.HostSys.Microseconds()) / float64(s.N)
		}
	}
	return summarize(xs).Median
}

func medianCPU(ss []sample) (host, workers float64) {
	hs, ws := make([]float64, len(ss)), make([]float64, len(ss))
	for i, s := range ss {
		hs[i], ws[i] = s.cpuPerOp()
	}
	return summarize(hs).Median, summarize(ws).Median
}

// failf wraps a failed job or start-up with the experiment it belongs to.
func failf(what string, err error) error { return fmt.Errorf("%s: %w", what, err) }
