// Command demo is procpool embedded in a small but realistic program; `make
// demo` runs it from the repository's root.
//
// It builds the example worker (examples/sha512worker) into a temporary
// directory, starts a procpool.System with two job types served by it, and
// runs a few thousand SHA-512 jobs of mixed sizes (64 B to 1 MiB) from
// several goroutines at once, checking every digest against crypto/sha512
// in this process:
//
//	sha512   BLOB:  the caller's bytes cross the pipe; 1 to 4 workers
//	sha512v  VALUE: only {Size, Seed} crosses; the worker makes the bytes;
//	         0 to 2 workers, with a per-job timeout
//
// While it runs, one line shows each job type's progress, queue and workers
// (from Router.Stats). When every job is done it waits for idle workers to
// be passivated, prints a table of the final statistics, shows how a few
// failures look to the caller (cancellation, timeout, a worker's error),
// prints a snapshot of the pool's OpenTelemetry metrics (through otel's
// Prometheus exporter, into a registry of the demo's own; see metrics.go
// and docs/metrics.md) and shuts the system down. It exits 1 if any digest
// is wrong or any job of the main run failed.
//
// Flags: -jobs and -vjobs set the number of jobs of each type, -clients the
// number of submitting goroutines, -worker a prebuilt worker binary,
// -metrics-addr a loopback address (such as 127.0.0.1:9464) to serve the
// metrics on while the demo runs (default: no server).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/internal/gobuild"
)

func main() { os.Exit(run()) }

func run() int {
	blobJobs := flag.Int("jobs", 3000, "number of sha512 (BLOB) jobs")
	valueJobs := flag.Int("vjobs", 1000, "number of sha512v (VALUE) jobs")
	clients := flag.Int("clients", 6, "goroutines submitting sha512 jobs (sha512v gets half as many)")
	workerBin := flag.String("worker", "", "path of a prebuilt sha512worker (default: build it)")
	metricsAddr := flag.String("metrics-addr", "", "serve the metrics at http://`host:port`/metrics while the demo runs; the host must be a loopback address (default: no server)")
	flag.Parse()

	// Ctrl-C cancels the jobs in flight; the system still shuts down
	// cleanly and leaves no worker behind.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	bin := *workerBin
	if bin == "" {
		dir, err := os.MkdirTemp("", "procpool-demo-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "demo:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		fmt.Print("building examples/sha512worker ... ")
		start := time.Now()
		if bin, err = buildWorker(dir); err != nil {
			fmt.Println("failed")
			fmt.Fprintln(os.Stderr, "demo:", err)
			return 1
		}
		fmt.Printf("done in %v\n", time.Since(start).Round(time.Millisecond))
	}

	// The pool's own log lines, and the workers' stdout and stderr, go to
	// this logger. Warn keeps a healthy run quiet.
	logger := hclog.New(&hclog.LoggerOptions{Name: "demo", Level: hclog.Warn, Output: os.Stderr})
	m, err := newMetrics(*metricsAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo: metrics:", err)
		return 1
	}
	defer m.close()
	sys := procpool.NewSystem(procpool.Config{Logger: logger, MeterProvider: m.provider})

	blob, err := sys.Spawn(procpool.JobType{
		Name:        "sha512",
		Command:     bin,
		MinWorkers:  1,
		MaxWorkers:  4,
		IdleTimeout: 2 * time.Second,
		InFlight:    1,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	value, err := sys.Spawn(procpool.JobType{
		Name:        "sha512v",
		Command:     bin,
		MinWorkers:  0,
		MaxWorkers:  2,
		IdleTimeout: 2 * time.Second,
		JobTimeout:  2 * time.Second,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	fmt.Printf("sha512: BLOB, %d jobs, workers 1..4 | sha512v: VALUE, %d jobs, workers 0..2, job timeout 2s | %d CPUs\n",
		*blobJobs, *valueJobs, runtime.NumCPU())

	ok := runJobs(ctx, blob, value, *blobJobs, *valueJobs, max(1, *clients))
	ok = failures(ctx, value) && ok

	fmt.Println("\nmetrics snapshot (OpenTelemetry, through its Prometheus exporter):")
	if err := m.print(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo: metrics:", err)
		ok = false
	}

	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if err := sys.Shutdown(sctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo: shutdown:", err)
		ok = false
	}
	left := workerProcesses()
	fmt.Printf("\nshutdown took %v; worker processes left: %d\n", time.Since(start).Round(time.Millisecond), left)
	if left > 0 {
		ok = false
	}
	if ctx.Err() != nil {
		fmt.Println("interrupted")
		return 130
	}
	if !ok {
		fmt.Println("FAILED")
		return 1
	}
	fmt.Println("OK: every digest matched")
	return 0
}

// buildWorker builds examples/sha512worker into dir with the go command of
// the toolchain that built this program (or the one on PATH).
func buildWorker(dir string) (string, error) {
	return gobuild.Build(dir, "sha512worker", "github.com/procpool/procpool/examples/sha512worker")
}

// workerProcesses counts this process's live children (Linux: /proc).
func workerProcesses() int {
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	me := os.Getpid()
	n := 0
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		// Fields after the parenthesised command name: state, ppid, ...
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(me) && f[0] != "Z" {
			n++
		}
	}
	return n
}
