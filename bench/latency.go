package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/procpool/procpool"
)

// The latency experiment (issue 13): one SHA-512 job over 1 KiB (BLOB) at
// a time from one caller, each call timed on its own, through a pool of
// one worker (Router.Call) and through the bare pipe loop (the same
// worker binary, childproc and codec by hand). Both are started before
// the clock and take turns in blocks of latencyBlock calls, so that a
// noisy spell of the machine falls on both alike. Every result is checked.

// latencyBlock is how many calls one side makes before the other's turn.
const latencyBlock = 250

// latencySample is one run's call durations, sorted.
type latencySample struct {
	Calls []time.Duration
}

// quantile returns the q-quantile (0 ≤ q ≤ 1) of the run's calls: the
// smallest duration that at least q of the calls did not exceed.
func (s latencySample) quantile(q float64) time.Duration {
	if len(s.Calls) == 0 {
		return 0
	}
	i := int(q*float64(len(s.Calls)) + 0.999999)
	return s.Calls[min(max(i-1, 0), len(s.Calls)-1)]
}

// latencyKeys are the experiment's two sides.
var latencyKeys = []struct{ Key, Name string }{
	{"bare", "bare pipe loop, 1 process"},
	{"call", "procpool Call, pool of 1, 1 caller"},
}

// runLatency measures n calls on each side once and appends the samples
// to res.Latency.
func runLatency(ctx context.Context, e *env, res *results) error {
	w := e.workload("1KiB")
	n := e.cfg.Jobs
	b, err := startBare(e)
	if err != nil {
		return err
	}
	defer b.close()
	if err := b.handshake(); err != nil {
		return err
	}
	sys, r, err := startPool(ctx, e, procpool.JobType{Name: "sha512", Command: e.bin,
		MinWorkers: 1, MaxWorkers: 1, IdleTimeout: -1})
	if err != nil {
		return err
	}
	defer shutdown(sys)
	ctx, cancel := context.WithTimeout(ctx, watchdog)
	defer cancel()
	bare := func(i int) error { return b.job(w, procpool.Blob, i) }
	call := func(i int) error {
		d, err := r.Call(ctx, procpool.Blob, w.bufs[seed(i)])
		if err != nil {
			return poolError(ctx, r, err)
		}
		return w.checkDigest(i, d)
	}
	sides := []func(int) error{bare, call}
	times := [][]time.Duration{make([]time.Duration, 0, n), make([]time.Duration, 0, n)}
	for i := range 2 * latencyBlock { // warm up both
		if err := sides[i%2](i); err != nil {
			return failf("latency warm-up", err)
		}
	}
	collectGarbage()
	for done := 0; done < n; done += latencyBlock {
		for s, side := range sides {
			for i := done; i < min(n, done+latencyBlock); i++ {
				t0 := time.Now()
				err := side(i)
				times[s] = append(times[s], time.Since(t0))
				if err != nil {
					return failf("latency, "+latencyKeys[s].Name, err)
				}
			}
		}
	}
	if err := b.stop(); err != nil {
		return err
	}
	if err := shutdown(sys); err != nil {
		return err
	}
	for s, k := range latencyKeys {
		slices.Sort(times[s])
		res.Latency[k.Key] = append(res.Latency[k.Key], latencySample{Calls: times[s]})
	}
	return nil
}

// latencyTable is the latency experiment's table: the quantiles of each
// side, median over the runs, and their ratios within each run.
func (rp *report) latencyTable() {
	t := &table{
		Title: "10. Latency of one call, one caller (1 KiB SHA-512, BLOB)",
		Intro: fmt.Sprintf("One job at a time from one caller, each call timed on its own (the result's check "+
			"excluded): Router.Call through a pool of one worker, and the bare pipe loop over the same worker binary. "+
			"Both run in the same process and take turns in blocks of %d calls; %s calls each per run. "+
			"Median over the runs of each run's quantile.", latencyBlock, thousands(int64(rp.res.Cfg.Jobs))),
		Header: []string{"", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs"},
	}
	qs := []float64{0.5, 0.9, 0.99, 0.999}
	for _, k := range latencyKeys {
		row := []string{k.Name}
		for _, q := range qs {
			row = append(row, usOf(rp.latencyQuantiles(k.Key, q)))
		}
		t.Rows = append(t.Rows, row)
	}
	row := []string{"procpool Call / bare loop (within each run)"}
	for _, q := range qs {
		row = append(row, ratioOf(ratios(rp.latencyQuantiles("call", q), rp.latencyQuantiles("bare", q))))
	}
	t.Rows = append(t.Rows, row)
	rp.tables = append(rp.tables, t)
}

// latencyQuantiles returns the q-quantile of every run of one side, in µs.
func (rp *report) latencyQuantiles(key string, q float64) []float64 {
	var out []float64
	for _, s := range rp.res.Latency[key] {
		out = append(out, float64(s.quantile(q))/float64(time.Microsecond))
	}
	return out
}

// usOf formats the median of xs, in µs.
func usOf(xs []float64) string {
	if len(xs) == 0 {
		return "—"
	}
	return cpu(summarize(xs).Median)
}

// judgeLatency decides the latency target.
func (rp *report) judgeLatency() {
	r := summarize(ratios(rp.latencyQuantiles("call", 0.5), rp.latencyQuantiles("bare", 0.5)))
	tg := target{
		Name: "one 1 KiB Call from one caller (pool of 1), p50 vs the bare pipe loop's round trip",
		Want: "≤ 2x",
		Got: fmt.Sprintf("%.2fx (p50 %s vs %s µs; p99 %s vs %s µs; p99.9 %s vs %s µs)", r.Median,
			usOf(rp.latencyQuantiles("call", 0.5)), usOf(rp.latencyQuantiles("bare", 0.5)),
			usOf(rp.latencyQuantiles("call", 0.99)), usOf(rp.latencyQuantiles("bare", 0.99)),
			usOf(rp.latencyQuantiles("call", 0.999)), usOf(rp.latencyQuantiles("bare", 0.999))),
		Met: r.Runs > 0 && r.Median <= 2,
	}
	rp.targets = append(rp.targets, tg)
}
