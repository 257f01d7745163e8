package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/distributed"
	"github.com/procpool/procpool/distributed/embedded"
	"github.com/procpool/procpool/internal/testbin"
)

// The distributed experiment (`go run ./bench -distributed`): the price of
// durability. The same SHA-512 BLOB jobs run through a local pool, and
// through JetStream (an embedded server with file storage) to 1 and to 3
// nodes, each node a procpool System of its own with a pool of the same
// size, on its own connection, in this process. Each run measures jobs/s
// and the latency of every job (submission to result) with distCallers
// callers, then the latency of a lone caller.

// distWorkers is the size of every pool: the local one and each node's.
// Every pool runs pipeline jobs in flight per worker, as in the throughput
// experiment; a node's capacity is then distWorkers × pipeline jobs, which
// it pulls from JetStream ahead of its workers.
const distWorkers = 2

// distCallers is the number of goroutines calling in the throughput runs.
const distCallers = 16

// distMode is one column of the experiment.
type distMode struct {
	Key, Name string
	Nodes     int // 0: the local pool
}

var distModes = []distMode{
	{"local", fmt.Sprintf("local pool of %d", distWorkers), 0},
	{"js1", fmt.Sprintf("JetStream, 1 node of %d", distWorkers), 1},
	{"js3", fmt.Sprintf("JetStream, 3 nodes of %d", distWorkers), 3},
}

// distSample is one run of one mode and workload.
type distSample struct {
	Rate     float64       // jobs/s with distCallers callers
	P50, P99 time.Duration // latency under that load
	L50, L99 time.Duration // latency of a lone caller
}

// distResults are the samples by workload key and mode key, in run order.
type distResults struct {
	Cfg       config
	Machine   machine
	Began     time.Time
	Took      time.Duration
	Workloads []*workload
	Samples   map[string]map[string][]distSample
}

// caller runs one job and returns its result.
type caller func(ctx context.Context, payload []byte) ([]byte, error)

// runDistributed runs the experiment and prints (and, if cfg.Write,
// writes) its report.
func runDistributed(cfg config) error {
	res := &distResults{Cfg: cfg, Began: time.Now(), Machine: readMachine(), Samples: map[string]map[string][]distSample{}}
	bin, err := testbin.Build()
	if err != nil {
		return err
	}
	defer testbin.Cleanup()
	for _, w := range workloads() {
		if w.Hash {
			res.Workloads = append(res.Workloads, w)
			res.Samples[w.Key] = map[string][]distSample{}
		}
	}
	fmt.Fprintf(cfg.Out, "procpool bench, distributed: %d run(s), %d jobs per run (%d for 1 MiB), %d callers\n",
		cfg.Runs, cfg.Jobs, cfg.JobsMiB, distCallers)
	ctx := context.Background()
	for r := range cfg.Runs {
		fmt.Fprintf(cfg.Out, "run %d/%d:", r+1, cfg.Runs)
		for _, w := range res.Workloads {
			for _, m := range distModes {
				fmt.Fprintf(cfg.Out, " %s/%s", w.Key, m.Key)
				s, err := measureDistributed(ctx, cfg, bin, w, m)
				if err != nil {
					return failf(fmt.Sprintf("distributed %s, %s", w.Name, m.Name), err)
				}
				res.Samples[w.Key][m.Key] = append(res.Samples[w.Key][m.Key], s)
			}
		}
		fmt.Fprintln(cfg.Out)
	}
	res.Took = time.Since(res.Began)
	res.Machine.LoadEnd = loadAvg()
	res.print(cfg.Out)
	if cfg.Write {
		dir := cfg.Docs
		if dir == "" {
			if dir, err = docsDir(); err != nil {
				return err
			}
		}
		if err := res.write(dir); err != nil {
			return err
		}
		fmt.Fprintf(cfg.Out, "\nwrote %s\n", dir)
	}
	return nil
}

// measureDistributed sets a mode up, warms it up, and measures it: n jobs
// from distCallers callers, then n/10 (at least 20) from one.
func measureDistributed(ctx context.Context, cfg config, bin string, w *workload, m distMode) (distSample, error) {
	ctx, cancel := context.WithTimeout(ctx, watchdog)
	defer cancel()
	call, stop, err := setUp(ctx, cfg, bin, w, m)
	if err != nil {
		return distSample{}, err
	}
	defer stop()
	n := cfg.Jobs
	if w.Size >= 1<<20 {
		n = cfg.JobsMiB
	}
	job := func(lat []time.Duration) func(ctx context.Context, i int) error {
		return func(ctx context.Context, i int) error {
			start := time.Now()
			res, err := call(ctx, w.payload(procpool.Blob, i))
			lat[i] = time.Since(start)
			if err != nil {
				return err
			}
			return w.check(procpool.Blob, i, res)
		}
	}
	if err := runJobs(ctx, 2*distCallers, distCallers, job(make([]time.Duration, 2*distCallers))); err != nil {
		return distSample{}, err
	}
	collectGarbage()
	loaded := make([]time.Duration, n)
	start := time.Now()
	if err := runJobs(ctx, n, distCallers, job(loaded)); err != nil {
		return distSample{}, err
	}
	elapsed := time.Since(start)
	lone := make([]time.Duration, max(20, n/10))
	if err := runJobs(ctx, len(lone), 1, job(lone)); err != nil {
		return distSample{}, err
	}
	s := distSample{Rate: float64(n) / elapsed.Seconds()}
	s.P50, s.P99 = quantiles(loaded)
	s.L50, s.L99 = quantiles(lone)
	return s, nil
}

// quantiles returns the median and the 99th percentile of ds.
func quantiles(ds []time.Duration) (p50, p99 time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2], s[min(len(s)-1, len(s)*99/100)]
}

// setUp starts a mode: a local pool, or an embedded server, its nodes and
// a producer. stop undoes it.
func setUp(ctx context.Context, cfg config, bin string, w *workload, m distMode) (caller, func(), error) {
	spec := procpool.JobType{Name: w.jobType(procpool.Blob), Command: bin,
		MinWorkers: distWorkers, MaxWorkers: distWorkers, IdleTimeout: -1, InFlight: pipeline}
	var undo []func()
	stop := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	fail := func(err error) (caller, func(), error) { stop(); return nil, nil, err }
	startSystem := func() (*procpool.Router, error) {
		sys := procpool.NewSystem(procpool.Config{Logger: cfg.Logger})
		undo = append(undo, func() { _ = shutdown(sys) })
		return sys.Spawn(spec)
	}
	if m.Nodes == 0 {
		r, err := startSystem()
		if err != nil {
			return fail(err)
		}
		return func(ctx context.Context, p []byte) ([]byte, error) { return r.Call(ctx, procpool.Blob, p) }, stop, nil
	}

	dir, err := os.MkdirTemp("", "procpool-bench-js-")
	if err != nil {
		return fail(err)
	}
	undo = append(undo, func() { os.RemoveAll(dir) })
	srv, err := embedded.Start(embedded.Config{Dir: dir, Port: embedded.RandomPort})
	if err != nil {
		return fail(err)
	}
	undo = append(undo, srv.Shutdown)
	connect := func() (*nats.Conn, error) {
		nc, err := distributed.Connect(srv.URL())
		if err == nil {
			undo = append(undo, nc.Close)
		}
		return nc, err
	}
	var nodes []*distributed.Node
	for i := range m.Nodes {
		nc, err := connect()
		if err != nil {
			return fail(err)
		}
		r, err := startSystem()
		if err != nil {
			return fail(err)
		}
		n, err := distributed.NewNode(ctx, nc, distributed.Config{}, distributed.NodeOptions{Name: fmt.Sprintf("node-%d", i+1)})
		if err == nil {
			err = n.Bind(ctx, r, distributed.BindOptions{})
		}
		if err != nil {
			return fail(err)
		}
		nodes = append(nodes, n)
	}
	undo = append(undo, func() {
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Go(func() {
				sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				_ = n.Shutdown(sctx)
			})
		}
		wg.Wait()
	})
	nc, err := connect()
	if err != nil {
		return fail(err)
	}
	p, err := distributed.NewProducer(ctx, nc, distributed.Config{}, distributed.ProducerOptions{})
	if err != nil {
		return fail(err)
	}
	undo = append(undo, func() { _ = p.Close(context.Background()) })
	return func(ctx context.Context, payload []byte) ([]byte, error) {
		return p.Call(ctx, w.jobType(procpool.Blob), procpool.Blob, payload)
	}, stop, nil
}
