// Command bench reproduces, on procpool, the experiments of the article the
// project grows from (a .NET process pool running SHA-512 jobs), and checks
// procpool's own targets. It prints one table per experiment, with the
// article's figures beside ours, and (in full mode) rewrites
// docs/benchmarks.md and its SVG charts.
//
// Usage:
//
//	go run ./bench          # full run, about 5 minutes on 2 cores
//	go run ./bench -quick   # every experiment briefly; checks results, not speed
//	go run ./bench -distributed [-quick]  # the distributed experiment only
//	go run ./bench -otel    # only what OpenTelemetry metrics cost (telemetry.go)
//	go run ./bench -sdk [-workloads 1KiB]  # only the SDK workers' table (5b) and targets
//
// The experiments, one file each:
//
//	startup.go     start-up rate of each isolation level (in-process call,
//	               goroutine, process per job, bare spawn of the same binary)
//	throughput.go  jobs/s in-process, with goroutines, through one long-lived
//	               worker and through pools of 1, 2 and 2 x cores workers
//	bare.go        the hand-written loop over one worker's pipes (no actors),
//	               against which the framework's cost is measured
//	scaling.go     the article's auto-scaling scenario, as a timeline
//	peer.go        Python's ProcessPoolExecutor on the same jobs
//	distributed.go the price of durability: a local pool against JetStream
//	               with 1 and 3 nodes (-distributed; its own report)
//
// report.go prints the tables and the targets and writes the markdown;
// svg.go draws the charts.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/procpool/procpool/internal/testbin"
)

// config is what a run of the bench does.
type config struct {
	Quick bool
	// Runs is how many times every measurement is repeated; tables show
	// the median and the range.
	Runs int
	// Jobs is the number of jobs per throughput run of the no-load and
	// 1 KiB workloads; JobsMiB that of the 1 MiB workload.
	Jobs, JobsMiB int
	// MapItems is the number of items per run of the fast modes of the
	// Map experiment (Map, in-process, Python's map) at 64 B and 1 KiB.
	MapItems int
	// StartupCycles is how many times each process isolation level is
	// started per run; FastCycles how many times the in-process ones are.
	StartupCycles, FastCycles int
	// Scaling is the auto-scaling scenario.
	Scaling scalingConfig
	// Peer runs Python's ProcessPoolExecutor when Python is found; Python
	// is the interpreter's name or path.
	Peer   bool
	Python string
	// Write rewrites docs/benchmarks.md and the charts in Docs (a
	// directory; empty: the module's docs directory).
	Write bool
	Docs  string
	// Out receives the tables and the progress lines.
	Out io.Writer
	// Logger receives the pools' log lines (nil: none).
	Logger hclog.Logger
	// OTel runs only the OpenTelemetry experiment (telemetry.go): the
	// 1 KiB pool of 2 with metrics off and on, Runs times.
	OTel bool
	// MapOnly runs only the Map, no-copy payload and latency experiments
	// (mapping.go, fill.go, latency.go).
	MapOnly bool
	// SDK runs only the other languages' SDK workers, the Go pool of 2
	// and the peers they are judged against (table 5b and its targets):
	// no start-up, other throughput modes or scaling; nothing written.
	SDK bool
	// SandboxOnly runs only the sandbox's experiments (runSandboxOnly);
	// nothing written.
	SandboxOnly bool
	// Workloads keeps only the workloads with these keys (noop, 1KiB,
	// 1MiB); empty: all of them.
	Workloads []string
}

// fullConfig is `go run ./bench`: the article's 10,000 jobs per run.
func fullConfig() config {
	return config{
		Runs:          5,
		Jobs:          10000,
		JobsMiB:       1000, // the pool's stop, timed too, weighs 3% of a run, not 10%
		MapItems:      200000,
		StartupCycles: 100,
		FastCycles:    20000,
		Scaling: scalingConfig{
			Min: 2, Max: 5, Idle: 3 * time.Second, Pause: 10 * time.Second,
			Burst: 100, Every: 50 * time.Millisecond,
		},
		Peer:   true,
		Python: "python3",
		Write:  true,
		Out:    os.Stdout,
	}
}

// quickConfig is `go run ./bench -quick`: every experiment, a few hundred
// jobs, one run, shorter idle timeout and pause.
func quickConfig() config {
	c := fullConfig()
	c.Quick = true
	c.Runs = 1
	c.Jobs = 300
	c.JobsMiB = 20
	c.MapItems = 3000
	c.StartupCycles = 8
	c.FastCycles = 1000
	c.Scaling.Idle = 400 * time.Millisecond
	c.Scaling.Pause = 1500 * time.Millisecond
	c.Scaling.Burst = 40
	c.Write = false
	return c
}

func main() {
	quick := flag.Bool("quick", false, "run every experiment briefly (one run, a few hundred jobs) and check the results, not the speed")
	runs := flag.Int("runs", 0, "repeat every measurement this many times (default 5, -quick 1)")
	jobs := flag.Int("jobs", 0, "jobs per throughput run for the no-load and 1 KiB jobs (default 10000, -quick 300)")
	jobsMiB := flag.Int("jobs-mib", 0, "jobs per throughput run for the 1 MiB job (default 1000, -quick 20)")
	write := flag.Bool("write", false, "rewrite docs/benchmarks.md and its charts even in -quick mode")
	noWrite := flag.Bool("no-write", false, "do not rewrite docs/benchmarks.md")
	docs := flag.String("docs", "", "directory of benchmarks.md and the charts (default: the module's docs)")
	noPeer := flag.Bool("no-peer", false, "skip the Python ProcessPoolExecutor peer")
	python := flag.String("python", "python3", "Python interpreter for the peer")
	verbose := flag.Bool("v", false, "log the pools' warnings to stderr")
	otelOnly := flag.Bool("otel", false, "run only the OpenTelemetry experiment: the 1 KiB pool of 2 with metrics off, on, and with traces (docs/metrics.md)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of this process (the host side: callers, actors, links) to this file")
	mapOnly := flag.Bool("map", false, "run only the experiments of many small jobs (Map), the no-copy payload (CallFill) and one call's latency")
	sdkOnly := flag.Bool("sdk", false, "run only the SDK workers' table (5b: Python and Node.js SDK workers, the Go pool of 2, ProcessPoolExecutor, piscina) and their targets; writes nothing")
	only := flag.String("workloads", "", "comma-separated workload keys to run (noop, 1KiB, 1MiB; default all)")
	sandboxOnly := flag.Bool("sandbox", false, "run only the sandbox's experiments: the start-up of a bare spawn, a worker and a sandboxed worker, and the 1 KiB BLOB pool of 2 with and without the sandbox, with their targets; writes nothing")
	dist := flag.Bool("distributed", false, "run only the distributed experiment (local pool against JetStream with 1 and 3 nodes); writes docs/benchmarks-distributed.md")
	flag.Parse()

	cfg := fullConfig()
	if *quick {
		cfg = quickConfig()
	}
	if *runs > 0 {
		cfg.Runs = *runs
	}
	if *jobs > 0 {
		cfg.Jobs = *jobs
	}
	if *jobsMiB > 0 {
		cfg.JobsMiB = *jobsMiB
	}
	cfg.Write = (cfg.Write || *write) && !*noWrite
	cfg.Docs = *docs
	cfg.Peer = !*noPeer
	cfg.Python = *python
	cfg.OTel = *otelOnly
	cfg.MapOnly = *mapOnly
	cfg.SDK = *sdkOnly
	cfg.SandboxOnly = *sandboxOnly
	if *sdkOnly || *sandboxOnly {
		cfg.Write = false
	}
	if *only != "" {
		cfg.Workloads = strings.Split(*only, ",")
	}
	if *verbose {
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "bench", Level: hclog.Warn, Output: os.Stderr})
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: -cpuprofile:", err)
			os.Exit(1)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	do := run
	if *dist {
		do = runDistributed
	}
	if err := do(cfg); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// env is what the experiments share during a run.
type env struct {
	cfg config
	bin string // the test worker binary
	// workloads are the throughput tables' (-workloads filters them);
	// allWorkloads every one, which the other experiments take theirs
	// from (workload).
	workloads, allWorkloads []*workload
	// mapWorkloads are the Map experiment's (mapping.go).
	mapWorkloads []*workload
	cores        int
	root         string       // the module's root directory, "" if unknown
	sdks         []*sdkWorker // the other languages' SDK workers found
	otelProviders
}

// newEnv returns the env of a run of cfg with the test worker bin: the
// throughput tables' workloads are those cfg.Workloads names (all if
// none); the other experiments keep theirs.
func newEnv(cfg config, bin string) (*env, error) {
	all := workloads()
	e := &env{cfg: cfg, bin: bin, workloads: all, allWorkloads: all, mapWorkloads: mapWorkloads(), cores: runtime.NumCPU()}
	if len(cfg.Workloads) > 0 {
		e.workloads = slices.DeleteFunc(slices.Clone(all), func(w *workload) bool { return !slices.Contains(cfg.Workloads, w.Key) })
		if len(e.workloads) == 0 {
			return nil, fmt.Errorf("no workload among %q (there are noop, 1KiB, 1MiB)", cfg.Workloads)
		}
	}
	return e, nil
}

// progress prints a progress line.
func (e *env) progress(format string, args ...any) {
	fmt.Fprintf(e.cfg.Out, format, args...)
}

// run runs every experiment, prints the report and, if asked, writes the
// docs. It fails on the first wrong digest or failed job.
func run(cfg config) error {
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Runs < 1 || cfg.Jobs < 1 || cfg.JobsMiB < 1 || cfg.MapItems < 1 || cfg.StartupCycles < 1 || cfg.FastCycles < 1 {
		return errors.New("runs, jobs and cycles must be positive")
	}
	began := time.Now()
	bin, err := testbin.Build()
	if err != nil {
		return err
	}
	defer testbin.Cleanup()
	e, err := newEnv(cfg, bin)
	if err != nil {
		return err
	}
	if cfg.OTel {
		e.progress("procpool bench: OpenTelemetry experiment, %d run(s) of %d jobs, %d cores\n", cfg.Runs, cfg.Jobs, e.cores)
		_, err := runTelemetry(context.Background(), e)
		return err
	}
	var sdkNotes []string
	if docs, err := docsDir(); err == nil {
		e.root = filepath.Dir(docs)
		e.sdks, sdkNotes = findSDKWorkers(e.root)
	} else {
		sdkNotes = []string{"SDK workers skipped: " + err.Error()}
	}
	res := newResults(e, began)
	for _, w := range e.sdks {
		res.SDKNotes = append(res.SDKNotes, fmt.Sprintf("%s: %s %s", w.Name, w.Command, w.Version))
	}
	res.SDKNotes = append(res.SDKNotes, sdkNotes...)
	res.SandboxNote = e.sandboxNote()
	if cfg.SDK {
		return runSDKOnly(context.Background(), e, res)
	}
	if cfg.SandboxOnly {
		return runSandboxOnly(context.Background(), e, res)
	}

	ctx := context.Background()
	mode := "full"
	if cfg.Quick {
		mode = "quick"
	}
	e.progress("procpool bench (%s): %d run(s), %d jobs per throughput run (%d for 1 MiB), %d cores\n",
		mode, cfg.Runs, cfg.Jobs, cfg.JobsMiB, e.cores)
	python, peerNote := findPython(cfg)
	res.PeerNote = peerNote
	res.MapModes = mapModes(e.cores, python != "", e.sdks)
	if cfg.MapOnly {
		return runMapOnly(ctx, e, python, res)
	}
	for r := range cfg.Runs {
		e.progress("run %d/%d: start-up", r+1, cfg.Runs)
		if err := runStartup(ctx, e, res); err != nil {
			return err
		}
		e.progress(", throughput")
		if err := runThroughput(ctx, e, res); err != nil {
			return err
		}
		if err := runPythonPeer(ctx, e, python, res); err != nil {
			return err
		}
		e.progress(", map")
		if err := runMany(ctx, e, python, res); err != nil {
			return err
		}
		if err := runPiscinaPeer(ctx, e, res); err != nil {
			return err
		}
		e.progress("\n")
	}
	e.progress("scaling scenario (%v idle timeout, %v pause)\n", cfg.Scaling.Idle, cfg.Scaling.Pause)
	sc, err := runScaling(ctx, e)
	if err != nil {
		return err
	}
	res.Scaling = sc
	res.Took = time.Since(began)
	res.Machine.LoadEnd = loadAvg()

	rep := buildReport(res)
	rep.print(cfg.Out)
	if cfg.Write {
		dir := cfg.Docs
		if dir == "" {
			if dir, err = docsDir(); err != nil {
				return err
			}
		}
		if err := rep.write(dir); err != nil {
			return err
		}
		fmt.Fprintf(cfg.Out, "\nwrote %s\n", dir)
	}
	fmt.Fprintf(cfg.Out, "\nbench took %v\n", res.Took.Round(time.Second))
	return nil
}
