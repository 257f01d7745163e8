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
	"crypto/sha512"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/internal/gobuild"
)

// Generate is the argument of the sha512v job type. It mirrors the
// worker's own type: msgpack matches struct fields by name.
type Generate struct {
	Size int
	Seed byte
}

// sizes are the payload sizes the jobs draw from, 64 B to 1 MiB.
var sizes = []int{64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20}

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

// kind is the client-side record of one job type's run.
type kind struct {
	name     string
	router   *procpool.Router
	total    int
	done     atomic.Int64 // jobs answered and checked
	bad      atomic.Int64 // wrong digests
	failed   atomic.Int64 // jobs that returned an error
	bytes    atomic.Int64 // payload bytes hashed
	firstErr atomic.Pointer[error]
	elapsed  time.Duration
}

func (k *kind) fail(err error) {
	k.failed.Add(1)
	k.firstErr.CompareAndSwap(nil, &err)
}

// runJobs runs both job types' jobs at once, shows progress, waits for the
// pools to shrink back to their minimum and prints the statistics. It
// reports whether every job succeeded with the right digest.
func runJobs(ctx context.Context, blob, value *procpool.Router, nblob, nvalue, clients int) bool {
	kinds := []*kind{
		{name: "sha512", router: blob, total: nblob},
		{name: "sha512v", router: value, total: nvalue},
	}
	p := startProgress(ctx, kinds)

	// One MiB and a bit of reproducible noise; each BLOB job hashes a
	// slice of it at its own offset.
	data := make([]byte, 1<<20+4096)
	rng := rand.New(rand.NewChaCha8([32]byte{'p', 'r', 'o', 'c', 'p', 'o', 'o', 'l'}))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}

	start := time.Now()
	var all sync.WaitGroup
	all.Add(2)
	go func() { // sha512 (BLOB): Submit a window of jobs, then Wait for each
		defer all.Done()
		k := kinds[0]
		var next atomic.Int64
		var wg sync.WaitGroup
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rnd := rand.New(rand.NewPCG(uint64(c), 1))
				type pending struct {
					job     *procpool.Job
					payload []byte
				}
				window := make([]pending, 0, 8)
				flush := func() {
					for _, pj := range window {
						sum, err := pj.job.Wait(ctx)
						k.check(sum, err, pj.payload, len(pj.payload))
					}
					window = window[:0]
				}
				for next.Add(1) <= int64(k.total) && ctx.Err() == nil {
					size := sizes[rnd.IntN(len(sizes))]
					off := rnd.IntN(4096)
					payload := data[off : off+size] // read-only while the job runs
					j, err := blob.Submit(ctx, procpool.Blob, payload)
					if err != nil {
						k.check(nil, err, nil, 0)
						continue
					}
					if window = append(window, pending{j, payload}); len(window) == cap(window) {
						flush()
					}
				}
				flush()
			}()
		}
		wg.Wait()
		k.elapsed = time.Since(start)
	}()
	go func() { // sha512v (VALUE): typed calls, one at a time per goroutine
		defer all.Done()
		k := kinds[1]
		var next atomic.Int64
		var wg sync.WaitGroup
		for c := range max(1, clients/2) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rnd := rand.New(rand.NewPCG(uint64(c), 2))
				for i := next.Add(1); i <= int64(k.total) && ctx.Err() == nil; i = next.Add(1) {
					in := Generate{Size: sizes[rnd.IntN(len(sizes))], Seed: byte(i)}
					sum, err := procpool.CallValue[[]byte](ctx, value, in)
					var want []byte
					if err == nil {
						want = generated(in)
					}
					k.checkDigest(sum, err, want, in.Size)
				}
			}()
		}
		wg.Wait()
		k.elapsed = time.Since(start)
	}()
	all.Wait()

	// Let the idle timeout shrink each pool back to its MinWorkers.
	p.setPhase("idle")
	deadline := time.Now().Add(8 * time.Second)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		b, err1 := blob.Stats(ctx)
		v, err2 := value.Stats(ctx)
		if err1 == nil && err2 == nil && b.Workers() == 1 && v.Workers() == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.stop()

	stats := make([]*procpool.Stats, len(kinds))
	for i, k := range kinds {
		s, err := k.router.Stats(context.Background())
		if err != nil {
			fmt.Fprintf(os.Stderr, "demo: stats of %s: %v\n", k.name, err)
			return false
		}
		stats[i] = s
	}
	printTable(kinds, stats)
	if ctx.Err() != nil {
		return false // interrupted: the jobs left were cancelled
	}

	ok := true
	for i, k := range kinds {
		if n := k.bad.Load(); n > 0 {
			fmt.Printf("%s: %d WRONG DIGESTS\n", k.name, n)
			ok = false
		}
		if n := k.failed.Load(); n > 0 || stats[i].Failed > 0 {
			fmt.Printf("%s: %d jobs FAILED", k.name, max(n, int64(stats[i].Failed)))
			if e := k.firstErr.Load(); e != nil {
				fmt.Printf(", first error: %v", *e)
			}
			fmt.Println()
			ok = false
		}
		if k.done.Load() != int64(k.total) {
			fmt.Printf("%s: only %d of %d jobs done\n", k.name, k.done.Load(), k.total)
			ok = false
		}
	}
	return ok
}

// check verifies a BLOB job's digest against the payload.
func (k *kind) check(sum []byte, err error, payload []byte, size int) {
	var want []byte
	if err == nil {
		d := sha512.Sum512(payload)
		want = d[:]
	}
	k.checkDigest(sum, err, want, size)
}

func (k *kind) checkDigest(sum []byte, err error, want []byte, size int) {
	switch {
	case err != nil:
		k.fail(err)
	case string(sum) != string(want):
		k.bad.Add(1)
	default:
		k.done.Add(1)
		k.bytes.Add(int64(size))
	}
}

// generated is the digest the worker computes for a sha512v job: of Size
// bytes where byte i is Seed+i.
func generated(in Generate) []byte {
	h := sha512.New()
	chunk := make([]byte, min(in.Size, 64<<10))
	for off := 0; off < in.Size; off += len(chunk) {
		n := min(len(chunk), in.Size-off)
		for i := range n {
			chunk[i] = in.Seed + byte(off+i)
		}
		h.Write(chunk[:n])
	}
	return h.Sum(nil)
}

func printTable(kinds []*kind, stats []*procpool.Stats) {
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(label string, f func(i int, k *kind, s *procpool.Stats) string) {
		fmt.Fprintf(tw, "%s\t", label)
		for i, k := range kinds {
			fmt.Fprintf(tw, "%s\t", f(i, k, stats[i]))
		}
		fmt.Fprintln(tw)
	}
	u := func(f func(s *procpool.Stats) uint64) func(int, *kind, *procpool.Stats) string {
		return func(_ int, _ *kind, s *procpool.Stats) string { return strconv.FormatUint(f(s), 10) }
	}
	row("", func(_ int, k *kind, _ *procpool.Stats) string { return k.name })
	row("accepted", u(func(s *procpool.Stats) uint64 { return s.Accepted }))
	row("succeeded", u(func(s *procpool.Stats) uint64 { return s.Succeeded }))
	row("failed", u(func(s *procpool.Stats) uint64 { return s.Failed }))
	row("cancelled", u(func(s *procpool.Stats) uint64 { return s.Cancelled }))
	row("digests checked", func(_ int, k *kind, _ *procpool.Stats) string { return strconv.FormatInt(k.done.Load(), 10) })
	row("worker spawns", u(func(s *procpool.Stats) uint64 { return s.Spawns }))
	row("worker exits", u(func(s *procpool.Stats) uint64 { return s.Exits }))
	row("crashes", u(func(s *procpool.Stats) uint64 { return s.Crashes }))
	row("passivations", u(func(s *procpool.Stats) uint64 { return s.Passivations }))
	row("via shared memory", u(func(s *procpool.Stats) uint64 { return s.SharedRequests }))
	row("workers now", func(_ int, _ *kind, s *procpool.Stats) string { return strconv.Itoa(s.Workers()) })
	row("latency p50", func(_ int, _ *kind, s *procpool.Stats) string { return fmtDur(s.LatencyP50) })
	row("latency p99", func(_ int, _ *kind, s *procpool.Stats) string { return fmtDur(s.LatencyP99) })
	row("MiB hashed", func(_ int, k *kind, _ *procpool.Stats) string {
		return fmt.Sprintf("%.1f", float64(k.bytes.Load())/(1<<20))
	})
	row("elapsed", func(_ int, k *kind, _ *procpool.Stats) string { return k.elapsed.Round(time.Millisecond).String() })
	row("throughput", func(_ int, k *kind, _ *procpool.Stats) string {
		if k.elapsed <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f jobs/s", float64(k.done.Load())/k.elapsed.Seconds())
	})
	tw.Flush()
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(time.Microsecond).String()
	}
}

// failures shows what a few failed jobs look like to the caller, and
// reports whether each failed as expected.
func failures(ctx context.Context, value *procpool.Router) bool {
	if ctx.Err() != nil {
		return false
	}
	fmt.Println("\nfailure paths (sha512v):")
	ok := true
	expect := func(what string, took time.Duration, err error, target error) {
		what = fmt.Sprintf("%s (%s):", what, fmtDur(took))
		if errors.Is(err, target) {
			fmt.Printf("  %-39s errors.Is(err, %v): yes\n      %v\n", what, targetName(target), err)
			return
		}
		fmt.Printf("  %-39s errors.Is(err, %v): NO, got %v\n", what, targetName(target), err)
		ok = false
	}

	// A job whose context is cancelled: the caller gets ErrCancelled (and
	// the context's own error) at once; the worker's handler sees its ctx
	// end and stops, and the worker lives on.
	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := procpool.CallValue[[]byte](cctx, value, Generate{Size: 32 << 30})
	cancel()
	expect("32 GiB, cancel after 100ms", time.Since(start), err, procpool.ErrCancelled)
	if !errors.Is(err, context.Canceled) {
		fmt.Println("      (expected it to match context.Canceled too)")
		ok = false
	}

	// A job that overruns the job type's JobTimeout.
	start = time.Now()
	_, err = procpool.CallValue[[]byte](ctx, value, Generate{Size: 32 << 30})
	expect("32 GiB, JobTimeout 2s", time.Since(start), err, procpool.ErrJobTimeout)

	// An error returned by the worker's handler, with its code.
	start = time.Now()
	_, err = procpool.CallValue[[]byte](ctx, value, Generate{Size: -1})
	expect("size -1, refused by the worker", time.Since(start), err, procpool.ErrRemote)
	var re *procpool.RemoteError
	if errors.As(err, &re) {
		fmt.Printf("      errors.As(err, *RemoteError): code %q\n", re.Code)
	}

	if s, err := value.Stats(ctx); err == nil {
		fmt.Printf("  sha512v now: failed %d (timed out %d), cancelled %d, spawns %d, crashes %d\n",
			s.Failed, s.TimedOut, s.Cancelled, s.Spawns, s.Crashes)
	}
	return ok
}

func targetName(err error) string {
	switch err {
	case procpool.ErrCancelled:
		return "ErrCancelled"
	case procpool.ErrJobTimeout:
		return "ErrJobTimeout"
	case procpool.ErrRemote:
		return "ErrRemote"
	}
	return err.Error()
}

// progress refreshes one status line every 200 ms on a terminal (with \r),
// or prints a line a second otherwise.
type progress struct {
	kinds []*kind
	start time.Time
	tty   bool
	width int // terminal columns, 0 if unknown
	phase atomic.Pointer[string]
	quit  chan struct{}
	done  chan struct{}
}

func startProgress(ctx context.Context, kinds []*kind) *progress {
	p := &progress{kinds: kinds, start: time.Now(), tty: isTerminal(os.Stdout),
		quit: make(chan struct{}), done: make(chan struct{})}
	if ws, err := unix.IoctlGetWinsize(int(os.Stdout.Fd()), unix.TIOCGWINSZ); err == nil {
		p.width = int(ws.Col)
	}
	p.setPhase("running")
	fmt.Println("progress: jobs done/total, q = jobs queued, w = workers busy/idle/starting")
	go func() {
		defer close(p.done)
		every := 1 // ticks between lines
		if !p.tty {
			every = 5
		}
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for n := 1; ; n++ {
			select {
			case <-p.quit:
				p.print(ctx, true)
				return
			case <-t.C:
				if n%every == 0 {
					p.print(ctx, false)
				}
			}
		}
	}()
	return p
}

func (p *progress) setPhase(s string) { p.phase.Store(&s) }

func (p *progress) stop() {
	close(p.quit)
	<-p.done
}

func (p *progress) print(ctx context.Context, last bool) {
	var b strings.Builder
	fmt.Fprintf(&b, "%5.1fs %-7s", time.Since(p.start).Seconds(), *p.phase.Load())
	for _, k := range p.kinds {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		s, err := k.router.Stats(sctx)
		cancel()
		if err != nil {
			fmt.Fprintf(&b, " | %s: %v", k.name, err)
			continue
		}
		fmt.Fprintf(&b, " | %s %*d/%d q %3d w %d/%d/%d",
			k.name, len(strconv.Itoa(k.total)), k.done.Load(), k.total, s.Queued, s.Busy, s.Idle, s.Starting)
	}
	line := b.String()
	switch {
	case !p.tty:
		fmt.Println(line)
		return
	case p.width > 0 && len(line) >= p.width:
		line = line[:p.width-1] // a wrapped line cannot be redrawn with \r
	}
	fmt.Print("\r\x1b[K", line)
	if last {
		fmt.Println()
	}
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
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
