package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/procpool/procpool"
)

// modeKind is how jobs are run in a throughput mode.
type modeKind int

const (
	inProcess modeKind = iota // a function call in the caller's goroutine(s)
	bareLoop                  // the hand-written loop over one worker's pipes
	pool                      // procpool: Router.Call through the actors
)

// mode is one column of the throughput experiment.
type mode struct {
	Key      string
	Name     string
	Kind     modeKind
	Workers  int        // worker processes (pool)
	InFlight int        // jobs in flight per worker (pool; 0 = 1)
	Callers  int        // goroutines calling, each one job at a time
	sdk      *sdkWorker // the worker of another language's SDK (pool); nil: the test worker
	// Sandboxed runs the pool's workers under benchSandbox.
	Sandboxed bool
}

// pipeline is the jobs in flight per worker in the pool modes: a worker
// always finds its next request already in its pipe when it answers.
const pipeline = 8

// modes returns the throughput modes: in-process with one goroutine and
// with one per core; the bare loop; one long-lived worker called serially
// (the article's "one process"); pools of 1, 2 and 2 x cores workers, each
// with `pipeline` jobs in flight per worker and called from as many
// goroutines with Router.Call (one job per call), so that a worker always
// has its next job waiting in its pipe.
func modes(cores int) []mode {
	ms := []mode{
		{Key: "inproc", Name: "in-process, 1 goroutine", Kind: inProcess, Callers: 1},
		{Key: "goroutines", Name: fmt.Sprintf("in-process, %d goroutines", cores), Kind: inProcess, Callers: cores},
		{Key: "bare", Name: "bare pipe loop, 1 process", Kind: bareLoop, Workers: 1, Callers: 1},
		{Key: "one", Name: "one process (pool of 1, 1 caller)", Kind: pool, Workers: 1, Callers: 1},
	}
	for _, n := range []int{1, 2, 2 * cores} {
		key := fmt.Sprintf("pool%d", n)
		dup := false
		for _, m := range ms {
			dup = dup || m.Key == key
		}
		if !dup {
			ms = append(ms, mode{Key: key, Name: fmt.Sprintf("pool of %d, %d in flight each, %d callers", n, pipeline, pipeline*n),
				Kind: pool, Workers: n, InFlight: pipeline, Callers: pipeline * n})
		}
		if n == 2 {
			ms = append(ms, mode{Key: "pool2sb", Name: fmt.Sprintf("pool of 2, sandboxed, %d in flight each, %d callers", pipeline, 2*pipeline),
				Kind: pool, Workers: 2, InFlight: pipeline, Callers: 2 * pipeline, Sandboxed: true})
		}
	}
	return ms
}

// measureOrder is the order the modes are measured in within a run: the
// pool of 2 between the two figures its targets are judged against
// (in-process with goroutines, and the bare loop), so that a noisy spell of
// the shared machine is less likely to fall between them.
func measureOrder(ms []mode) []mode {
	first := []string{"goroutines", "pool2", "pool2sb", "bare"}
	out := make([]mode, 0, len(ms))
	for _, k := range first {
		for _, m := range ms {
			if m.Key == k {
				out = append(out, m)
			}
		}
	}
	for _, m := range ms {
		if !slices.Contains(first, m.Key) {
			out = append(out, m)
		}
	}
	return out
}

// throughputKey names one measurement: workload, payload kind and mode.
func throughputKey(w *workload, kind procpool.PayloadKind, m string) string {
	return w.Key + "/" + kindName(kind) + "/" + m
}

// jobsFor is the number of jobs per run of a workload.
func (e *env) jobsFor(w *workload) int {
	if w.Size >= 1<<20 && w.Hash {
		return e.cfg.JobsMiB
	}
	return e.cfg.Jobs
}

// runThroughput measures every workload, payload kind and mode once, and
// appends the samples to res.
func runThroughput(ctx context.Context, e *env, res *results) error {
	for _, w := range e.workloads {
		for _, kind := range kinds {
			for _, m := range measureOrder(res.Modes) {
				if m.Sandboxed && res.SandboxNote != "" {
					continue
				}
				s, err := measureThroughput(ctx, e, w, kind, m, e.jobsFor(w))
				if err != nil {
					return failf(fmt.Sprintf("throughput %s %s, %s", w.Name, kindName(kind), m.Name), err)
				}
				k := throughputKey(w, kind, m.Key)
				res.Throughput[k] = append(res.Throughput[k], s)
			}
		}
	}
	return nil
}

// measureThroughput runs n jobs in one mode and times them, the stop of the
// worker processes included.
func measureThroughput(ctx context.Context, e *env, w *workload, kind procpool.PayloadKind, m mode, n int) (sample, error) {
	switch m.Kind {
	case inProcess:
		collectGarbage()
		sw := startStopwatch()
		err := runJobs(ctx, n, m.Callers, func(_ context.Context, i int) error { return w.inProcess(kind, i) })
		return sw.stop(n), err
	case bareLoop:
		return measureBare(e, w, kind, n)
	default:
		return measurePool(ctx, e, w, kind, m, n)
	}
}

// measurePool runs n jobs through a fresh pool of m.Workers workers, from
// m.Callers goroutines, and times them up to the end of the system's
// Shutdown. The pool is started, and every worker ready, before the clock
// starts.
func measurePool(ctx context.Context, e *env, w *workload, kind procpool.PayloadKind, m mode, n int) (sample, error) {
	jt := procpool.JobType{
		Name: w.jobType(kind), Command: e.bin,
		MinWorkers: m.Workers, MaxWorkers: m.Workers, IdleTimeout: -1, InFlight: m.InFlight,
	}
	if m.sdk != nil {
		jt.Command, jt.Args = m.sdk.Command, m.sdk.Args
	}
	if m.Sandboxed {
		jt.Sandbox = benchSandbox(e)
	}
	sys, r, err := startPool(ctx, e, jt)
	if err != nil {
		return sample{}, err
	}
	defer shutdown(sys)
	ctx, cancel := context.WithTimeout(ctx, watchdog)
	defer cancel()
	call := func(ctx context.Context, i int) error { return poolJob(ctx, r, w, kind, i) }
	// Warm up as the run will go, every caller at once, so that the pages
	// of the shared memory regions the run will use are already touched,
	// as in a long-lived pool.
	if err := runJobs(ctx, 2*m.Callers, m.Callers, call); err != nil {
		return sample{}, poolError(ctx, r, err)
	}
	collectGarbage()
	sw := startStopwatch()
	if err := runJobs(ctx, n, m.Callers, call); err != nil {
		return sample{}, poolError(ctx, r, err)
	}
	if err := shutdown(sys); err != nil {
		return sample{}, err
	}
	return sw.stop(n), nil
}

// poolJob runs job i through the façade and checks its result. VALUE jobs
// go through CallValue (the argument encoded, the digest decoded, per
// call); the no-load VALUE job, which answers no value, through Call with
// the argument encoded per call.
func poolJob(ctx context.Context, r *procpool.Router, w *workload, kind procpool.PayloadKind, i int) error {
	if kind == procpool.Value {
		in := sha512Value{Size: w.Size, Seed: byte(seed(i))}
		if w.Hash {
			d, err := procpool.CallValue[[]byte](ctx, r, in)
			if err != nil {
				return err
			}
			return w.checkDigest(i, d)
		}
		payload, err := msgpack.Marshal(in)
		if err != nil {
			return err
		}
		res, err := r.Call(ctx, procpool.Value, payload)
		if err != nil {
			return err
		}
		return w.check(kind, i, res)
	}
	res, err := r.Call(ctx, procpool.Blob, w.payload(kind, i))
	if err != nil {
		return err
	}
	return w.check(kind, i, res)
}

// poolError adds the router's state to a failed measurement's error, and
// reports a stuck one (the watchdog's deadline passed) as such.
func poolError(ctx context.Context, r *procpool.Router, err error) error {
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	state := "router stats unavailable"
	if st, serr := r.Stats(sctx); serr == nil {
		state = fmt.Sprintf("router: %d queued, %d running; workers %d idle, %d busy, %d starting, %d stopping; "+
			"%d accepted, %d succeeded, %d failed; %d spawns, %d crashes",
			st.Queued, st.Running, st.Idle, st.Busy, st.Starting, st.Stopping,
			st.Accepted, st.Succeeded, st.Failed, st.Spawns, st.Crashes)
	}
	err = fmt.Errorf("%w (%s)", err, state)
	if ctx.Err() != nil {
		return stuck("a pool measurement", err)
	}
	return err
}

// startPool starts a system with one job type and waits until its
// MinWorkers workers are ready. On error the system is shut down.
func startPool(ctx context.Context, e *env, t procpool.JobType) (*procpool.System, *procpool.Router, error) {
	sys := procpool.NewSystem(procpool.Config{Logger: e.cfg.Logger,
		MeterProvider: e.meterProvider, TracerProvider: e.tracerProvider})
	r, err := sys.Spawn(t)
	if err != nil {
		shutdown(sys)
		return nil, nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := r.Stats(ctx)
		if err != nil {
			shutdown(sys)
			return nil, nil, err
		}
		if st.Idle+st.Busy >= t.MinWorkers {
			return sys, r, nil
		}
		if time.Now().After(deadline) {
			shutdown(sys)
			return nil, nil, fmt.Errorf("%d of %d workers ready after 30s (%d crashes)", st.Idle+st.Busy, t.MinWorkers, st.Crashes)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// shutdown shuts a system down, waiting at most a minute; a second call is
// a no-op.
func shutdown(sys *procpool.System) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := sys.Shutdown(ctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
