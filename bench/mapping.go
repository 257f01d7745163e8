package main

import (
	"context"
	"fmt"
	"iter"

	"github.com/procpool/procpool"
)

// The Map experiment (issue 13): many small SHA-512 jobs, BLOB payloads of
// 64 B, 1 KiB and 1 MiB, through a pool of 2 with Router.Map (items in
// batch frames), beside the same items through Router.Call one job per
// call, in-process on one goroutine per core, and Python's
// ProcessPoolExecutor(2) with submit and with map(chunksize). Every result
// is checked against its expected digest, in input order.

// mapWorkers is the size of the pools of the Map experiment, that of
// Python's executor.
const mapWorkers = peerWorkers

// mapInFlight is the jobs in flight per worker of the Map pools: those of
// the pools one job per call goes through, so that both modes run on the
// same pool. A Map job holds a slot per batch; Map spreads the items at
// hand over two batches per worker, so small items still travel in large
// batches, and large ones (one per batch) keep every slot busy.
const mapInFlight = pipeline

// mapSizes are the Map experiment's workloads: SHA-512 over 64 B, 1 KiB
// and 1 MiB, and the chunk size Python's map is given for each.
var mapSizes = []struct {
	Key, Name string
	Size      int
	Chunk     int // Python's map(chunksize=)
}{
	{"64B", "SHA-512 64 B", 64, 256},
	{"1KiB", "SHA-512 1 KiB", 1 << 10, 256},
	{"1MiB", "SHA-512 1 MiB", 1 << 20, 4},
}

// mapMode is one column of the Map experiment.
type mapMode struct {
	Key, Name string
	// many: the mode runs cfg.MapItems items per run (the fast ones);
	// else cfg.Jobs (one job per call), or JobsMiB for 1 MiB either way.
	many bool
	sdk  *sdkWorker // Map through another language's SDK worker
}

// mapModes returns the modes measured at every size, Python's and the
// SDK workers' included when they are here.
func mapModes(cores int, python bool, sdks []*sdkWorker) []mapMode {
	ms := []mapMode{
		{Key: "inproc", Name: fmt.Sprintf("in-process, %d goroutines", cores), many: true},
		{Key: "map", Name: fmt.Sprintf("procpool Map, pool of %d (InFlight %d), 1 caller", mapWorkers, mapInFlight), many: true},
		{Key: "call", Name: fmt.Sprintf("procpool Call, pool of %d (InFlight %d), %d callers", mapWorkers, pipeline, pipeline*mapWorkers)},
	}
	if python {
		ms = append(ms,
			mapMode{Key: "pymap", Name: fmt.Sprintf("Python ProcessPoolExecutor(%d).map(chunksize)", peerWorkers), many: true},
			mapMode{Key: "pysubmit", Name: fmt.Sprintf("Python ProcessPoolExecutor(%d).submit", peerWorkers)})
	}
	for _, w := range sdks {
		ms = append(ms, mapMode{Key: w.Key + "map", Name: fmt.Sprintf("%s, Map, pool of %d (InFlight %d)", w.Name, mapWorkers, mapInFlight),
			many: true, sdk: w})
	}
	return ms
}

// mapKey names one Map measurement: workload and mode.
func mapKey(size, mode string) string { return size + "/" + mode }

// mapItems is the items per run of a workload in a mode.
func (e *env) mapItems(w *workload, m mapMode) int {
	switch {
	case w.Size >= 1<<20:
		return e.cfg.JobsMiB
	case m.many:
		return e.cfg.MapItems
	}
	return e.cfg.Jobs
}

// mapWorkloads builds the workloads of mapSizes.
func mapWorkloads() []*workload {
	ws := make([]*workload, len(mapSizes))
	for i, s := range mapSizes {
		ws[i] = newWorkload(s.Key, s.Name, s.Size, true)
	}
	return ws
}

// runMap measures every Map workload in every mode once and appends the
// samples to res.Map. Python's runs go in one interpreter, after ours.
func runMap(ctx context.Context, e *env, python string, res *results) error {
	var py []peerTest
	for i, w := range e.mapWorkloads {
		for _, m := range res.MapModes {
			n := e.mapItems(w, m)
			var s sample
			var err error
			switch {
			case m.Key == "inproc":
				collectGarbage()
				sw := startStopwatch()
				err = runJobs(ctx, n, e.cores, func(_ context.Context, i int) error { return w.inProcess(procpool.Blob, i) })
				s = sw.stop(n)
			case m.Key == "call":
				s, err = measurePool(ctx, e, w, procpool.Blob, mode{Kind: pool, Workers: mapWorkers, InFlight: pipeline, Callers: pipeline * mapWorkers}, n)
			case m.Key == "pymap", m.Key == "pysubmit":
				t := peerTest{Key: mapKey(w.Key, m.Key), Size: w.Size, Jobs: n, Kind: "BLOB", Hash: true, Mode: "submit"}
				if m.Key == "pymap" {
					t.Mode, t.Chunk = "map", mapSizes[i].Chunk
				}
				py = append(py, t)
				continue
			default:
				s, err = measureMap(ctx, e, w, m.sdk, n)
			}
			if err != nil {
				return failf(fmt.Sprintf("map %s, %s", w.Name, m.Name), err)
			}
			k := mapKey(w.Key, m.Key)
			res.Map[k] = append(res.Map[k], s)
		}
	}
	if python == "" || len(py) == 0 {
		return nil
	}
	out, err := runPeerTests(ctx, python, py)
	if err != nil {
		return err
	}
	for _, r := range out {
		w := e.mapWorkload(r.Key)
		if w == nil {
			return fmt.Errorf("python peer: unknown test %q", r.Key)
		}
		if want := w.expectedCheck(r.Jobs); r.Check != want {
			return fmt.Errorf("python peer %s: wrong results (check %s, want %s)", r.Key, r.Check, want)
		}
		res.Map[r.Key] = append(res.Map[r.Key], r.sample())
	}
	return nil
}

// mapWorkload returns the workload of a Map measurement's key.
func (e *env) mapWorkload(key string) *workload {
	for _, w := range e.mapWorkloads {
		if len(key) > len(w.Key) && key[:len(w.Key)+1] == w.Key+"/" {
			return w
		}
	}
	return nil
}

// measureMap runs n items of w through one Router.Map over a fresh pool of
// mapWorkers workers (the test worker, or sdk's), checks every result in
// input order, and times it up to the end of the system's Shutdown.
func measureMap(ctx context.Context, e *env, w *workload, sdk *sdkWorker, n int) (sample, error) {
	jt := procpool.JobType{Name: w.jobType(procpool.Blob), Command: e.bin,
		MinWorkers: mapWorkers, MaxWorkers: mapWorkers, IdleTimeout: -1, InFlight: mapInFlight}
	if sdk != nil {
		jt.Command, jt.Args = sdk.Command, sdk.Args
	}
	sys, r, err := startPool(ctx, e, jt)
	if err != nil {
		return sample{}, err
	}
	defer shutdown(sys)
	ctx, cancel := context.WithTimeout(ctx, watchdog)
	defer cancel()
	// Warm up with a Map as large as the window Map keeps open (at most a
	// tenth of the run), so that the shared memory regions' pages and the
	// buffers are in use. The workers' CPU time, read when they are reaped,
	// includes the warm-up's.
	if err := mapItems(ctx, r, w, warmUpItems(n, w.Size)); err != nil {
		return sample{}, poolError(ctx, r, err)
	}
	collectGarbage()
	sw := startStopwatch()
	if err := mapItems(ctx, r, w, n); err != nil {
		return sample{}, poolError(ctx, r, err)
	}
	if err := shutdown(sys); err != nil {
		return sample{}, err
	}
	return sw.stop(n), nil
}

// warmUpItems is the size of the warm-up Map before a run of n items of
// size bytes: a tenth of the run, at most 2,048 items, at least two per
// slot; large items, which travel one per batch, warm up with two per slot
// as the calls' pools do, since the workers' CPU time includes the
// warm-up's.
func warmUpItems(n, size int) int {
	slots := mapWorkers * mapInFlight
	if size >= 64<<10 {
		return 2 * slots
	}
	return min(2048, max(n/10, 2*slots))
}

// mapItems runs items 0..n-1 of w through one Map and checks each result.
func mapItems(ctx context.Context, r *procpool.Router, w *workload, n int) error {
	i := 0
	for d, err := range r.Map(ctx, procpool.Blob, w.items(n)) {
		if err != nil {
			return fmt.Errorf("%s item %d: %w", w.Name, i, err)
		}
		if err := w.checkDigest(i, d); err != nil {
			return err
		}
		i++
	}
	if i != n {
		return fmt.Errorf("%s: Map yielded %d results for %d items", w.Name, i, n)
	}
	return nil
}

// items yields the BLOB payloads of jobs 0..n-1.
func (w *workload) items(n int) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for i := range n {
			if !yield(w.bufs[seed(i)]) {
				return
			}
		}
	}
}

// runMany runs the experiments of issue 13 once: Map, the no-copy payload
// and one call's latency.
func runMany(ctx context.Context, e *env, python string, res *results) error {
	if err := runMap(ctx, e, python, res); err != nil {
		return err
	}
	if err := runFill(ctx, e, res); err != nil {
		return err
	}
	return runLatency(ctx, e, res)
}

// runMapOnly is `bench -map`: runMany cfg.Runs times, then its tables and
// targets alone.
func runMapOnly(ctx context.Context, e *env, python string, res *results) error {
	for r := range e.cfg.Runs {
		e.progress("run %d/%d: map, no-copy payload, latency\n", r+1, e.cfg.Runs)
		if err := runMany(ctx, e, python, res); err != nil {
			return err
		}
	}
	res.Machine.LoadEnd = loadAvg()
	rp := &report{res: res}
	rp.manyTables()
	rp.judgeMany()
	rp.print(e.cfg.Out)
	return nil
}
