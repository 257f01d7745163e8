// Command cluster shows procpool's distributed layer on one machine; `make
// demo-cluster` runs it from the repository's root.
//
// It builds the example worker (examples/sha512worker), starts an embedded
// NATS server with JetStream on 127.0.0.1 (files in a temporary
// directory), and starts three nodes, each a process of its own (this
// program again, with -node) running a local pool of two sha512v workers,
// four jobs in flight each, bound to the job type's stream. Then it
// submits a few thousand sha512v jobs from this process: each names a size
// (64 KiB to 1 MiB) and a seed, the worker hashes that many bytes it makes
// itself, and this program checks every digest against crypto/sha512.
//
// A line per node shows the jobs each has answered. A third of the way,
// node-2 is killed with SIGKILL while it holds jobs: they are redelivered
// to the other nodes once the ack wait (3s here) has passed. At the end a
// table shows the jobs each node answered, how many of those were
// redeliveries, and how many jobs were lost: 0. It exits 1 if a job was
// lost, failed or got a wrong digest, or a worker process was left behind.
//
// Flags: -jobs, -clients (submitting goroutines), -kill-at (the fraction
// of the jobs after which node-2 dies), -worker (a prebuilt sha512worker).
package main

import (
	"bufio"
	"context"
	"crypto/sha512"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/distributed"
	"github.com/procpool/procpool/distributed/embedded"
	"github.com/procpool/procpool/internal/gobuild"
)

// ackWait is how long a killed node's jobs wait before they are
// redelivered. Production keeps the default, 30s.
const ackWait = 3 * time.Second

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-node" {
		os.Exit(nodeMain(os.Args[2:]))
	}
	os.Exit(run())
}

func run() int {
	jobs := flag.Int("jobs", 3000, "number of jobs")
	clients := flag.Int("clients", 48, "goroutines submitting jobs")
	killAt := flag.Float64("kill-at", 1.0/3, "fraction of the jobs after which node-2 is killed (0: never)")
	workerBin := flag.String("worker", "", "path of a prebuilt sha512worker (default: build it)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dir, err := os.MkdirTemp("", "procpool-cluster-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	bin := *workerBin
	if bin == "" {
		fmt.Print("building examples/sha512worker ... ")
		if bin, err = gobuild.Build(dir, "sha512worker", "github.com/procpool/procpool/examples/sha512worker"); err != nil {
			fmt.Println("failed")
			return fail(err)
		}
		fmt.Println("done")
	}

	srv, err := embedded.Start(embedded.Config{Dir: filepath.Join(dir, "jetstream"), Port: embedded.RandomPort})
	if err != nil {
		return fail(err)
	}
	defer srv.Shutdown()
	fmt.Printf("NATS server with JetStream on %s (file storage in %s)\n", srv.URL(), filepath.Join(dir, "jetstream"))

	var nodes []*node
	defer func() {
		for _, n := range nodes {
			n.kill()
		}
	}()
	for i := 1; i <= 3; i++ {
		n, err := startNode(fmt.Sprintf("node-%d", i), srv.URL(), bin)
		if err != nil {
			return fail(err)
		}
		nodes = append(nodes, n)
		fmt.Printf("%s: pid %d, 2 sha512v workers, 4 jobs in flight each\n", n.name, n.cmd.Process.Pid)
	}

	nc, err := distributed.Connect(srv.URL())
	if err != nil {
		return fail(err)
	}
	defer nc.Close()
	p, err := distributed.NewProducer(ctx, nc, distributed.Config{AckWait: ackWait}, distributed.ProducerOptions{ID: "demo"})
	if err != nil {
		return fail(err)
	}
	defer p.Close(context.Background())

	fmt.Printf("\n%d sha512v jobs (SHA-512 of 64 KiB to 1 MiB) from %d goroutines; node-2 is killed after %.0f%% of them\n\n",
		*jobs, *clients, 100**killAt)
	r := newJobRun(nodes, *jobs)
	r.submit(ctx, p, *clients, int(float64(*jobs)**killAt))
	r.table(p.Stats())

	ok := r.ok()
	var stopped sync.WaitGroup
	for _, n := range nodes {
		stopped.Add(1)
		go func() { defer stopped.Done(); n.stop() }()
	}
	stopped.Wait()
	if left := workersLeft(bin); left > 0 {
		fmt.Printf("%d worker processes LEFT BEHIND\n", left)
		ok = false
	}
	switch {
	case ctx.Err() != nil:
		fmt.Println("interrupted")
		return 130
	case !ok:
		fmt.Println("FAILED")
		return 1
	}
	fmt.Println("OK: every job answered once, with the right digest; no worker left behind")
	return 0
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, "cluster:", err)
	return 1
}

// jobRun is the client-side record of the jobs.
type jobRun struct {
	nodes    []*node
	total    int
	done     atomic.Int64
	mu       sync.Mutex
	perNode  map[string]int
	redeliv  map[string]int
	bad      int
	failed   int
	firstErr error
	start    time.Time
}

func newJobRun(nodes []*node, total int) *jobRun {
	return &jobRun{nodes: nodes, total: total, perNode: map[string]int{}, redeliv: map[string]int{}}
}

// Generate is the argument of the sha512v job type: the worker hashes Size
// bytes, byte i being Seed+i.
type Generate struct {
	Size int
	Seed byte
}

// submit runs the jobs from clients goroutines, shows progress, and kills
// node-2 once killAfter jobs are done.
func (r *jobRun) submit(ctx context.Context, p *distributed.Producer, clients, killAfter int) {
	r.start = time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(c), 7))
			for i := next.Add(1); i <= int64(r.total) && ctx.Err() == nil; i = next.Add(1) {
				in := Generate{Size: 64<<10 + rnd.IntN(960<<10), Seed: byte(i)}
				arg, err := msgpack.Marshal(in)
				var j *distributed.Job
				var res []byte
				if err == nil {
					j, err = p.Submit(ctx, "sha512v", procpool.Value, arg)
				}
				if err == nil {
					res, err = j.Wait(ctx)
				}
				r.record(j, in, res, err)
			}
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	killed := killAfter <= 0
	for n := 1; ; n++ {
		select {
		case <-finished:
			r.progress()
			return
		case <-tick.C:
		}
		if n%100 == 0 {
			r.progress()
		}
		if !killed && r.done.Load() >= int64(killAfter) {
			killed = true
			n := r.nodes[1]
			n.kill()
			fmt.Printf("%5.1fs  SIGKILL %s (pid %d): the jobs it held come back after the %v ack wait\n",
				time.Since(r.start).Seconds(), n.name, n.cmd.Process.Pid, ackWait)
		}
	}
}

func (r *jobRun) record(j *distributed.Job, in Generate, res []byte, err error) {
	var sum []byte
	if err == nil {
		err = msgpack.Unmarshal(res, &sum)
	}
	want := generated(in)
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.done.Add(1)
	if err != nil {
		r.failed++
		if r.firstErr == nil {
			r.firstErr = err
		}
		return
	}
	if string(sum) != string(want) {
		r.bad++
		return
	}
	r.perNode[j.Node()]++
	if j.Deliveries() > 1 {
		r.redeliv[j.Node()]++
	}
}

// generated is the digest a sha512v job gives.
func generated(in Generate) []byte {
	h := sha512.New()
	buf := make([]byte, 64<<10)
	for off := 0; off < in.Size; off += len(buf) {
		n := min(len(buf), in.Size-off)
		for i := range n {
			buf[i] = in.Seed + byte(off+i)
		}
		h.Write(buf[:n])
	}
	return h.Sum(nil)
}

// progress prints a line per node: the jobs it answered so far.
func (r *jobRun) progress() {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "%5.1fs  %d/%d done\n", time.Since(r.start).Seconds(), r.done.Load(), r.total)
	for _, n := range r.nodes {
		bar := strings.Repeat("#", r.perNode[n.name]*40/max(1, r.total))
		fmt.Fprintf(&b, "        %-7s %5d %-40s %s\n", n.name, r.perNode[n.name], bar, n.state())
	}
	fmt.Print(b.String())
}

// table prints the final counts.
func (r *jobRun) table(st distributed.ProducerStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Printf("\n%d jobs in %v\n\n", r.total, time.Since(r.start).Round(time.Millisecond))
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "node\tjobs answered\tof which redelivered\tstate\t")
	answered, redelivered := 0, 0
	for _, n := range r.nodes {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t\n", n.name, r.perNode[n.name], r.redeliv[n.name], n.state())
		answered += r.perNode[n.name]
		redelivered += r.redeliv[n.name]
	}
	fmt.Fprintf(tw, "all\t%d\t%d\t\t\n", answered, redelivered)
	tw.Flush()
	fmt.Printf("\nlost %d, failed %d, wrong digests %d, second results discarded %d\n\n",
		r.total-answered-r.failed-r.bad, r.failed, r.bad, st.Duplicates)
	if r.firstErr != nil {
		fmt.Println("first error:", r.firstErr)
	}
}

func (r *jobRun) ok() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	answered := 0
	for _, n := range r.perNode {
		answered += n
	}
	return answered == r.total && r.failed == 0 && r.bad == 0
}

// node is a node process.
type node struct {
	name   string
	cmd    *exec.Cmd
	killed atomic.Bool
	done   chan struct{}
}

// startNode starts this program as a node and waits for it to be ready.
func startNode(name, url, worker string) (*node, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-node", "-url", url, "-name", name, "-worker", worker, "-ack-wait", ackWait.String())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := &node{name: name, cmd: cmd, done: make(chan struct{})}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ready <- sc.Scan() && sc.Text() == "ready"
		for sc.Scan() {
		}
		_ = cmd.Wait()
		close(n.done)
	}()
	select {
	case ok := <-ready:
		if ok {
			return n, nil
		}
	case <-time.After(30 * time.Second):
	}
	n.kill()
	return nil, fmt.Errorf("%s did not start", name)
}

func (n *node) state() string {
	if n.killed.Load() {
		return "killed"
	}
	return "up"
}

// kill kills the node with SIGKILL: it has no chance to hand its jobs back.
func (n *node) kill() {
	select {
	case <-n.done:
		return
	default:
	}
	n.killed.Store(true)
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
}

// stop shuts the node down gracefully (SIGTERM).
func (n *node) stop() {
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(30 * time.Second):
		n.kill()
	}
}

// workersLeft counts the live processes of the worker binary: a killed
// node's workers die with it (the parent-death signal).
func workersLeft(bin string) int {
	n := 0
	for range 50 {
		n = 0
		dirs, _ := filepath.Glob("/proc/[0-9]*")
		for _, d := range dirs {
			if exe, err := os.Readlink(d + "/exe"); err == nil && exe == bin {
				if b, err := os.ReadFile(d + "/stat"); err == nil && !strings.Contains(string(b[strings.LastIndexByte(string(b), ')'):]), ") Z") {
					n++
				}
			}
		}
		if n == 0 {
			return 0
		}
		time.Sleep(100 * time.Millisecond)
	}
	return n
}
