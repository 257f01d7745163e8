package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/childproc"
	"github.com/procpool/procpool/sandbox"
)

// The sandboxed measurements: a worker under every control of
// procpool.Sandbox at once, in the start-up table (sandboxedCycle) and as
// a pool of 2 in the throughput tables (the pool2sb mode), so that their
// cost is measured in the same runs as the unsandboxed figures.

// benchSandbox is every control at once: another user in a user namespace
// of its own, all the namespaces, cgroup limits (memory, a CPU quota of
// every core, tasks), no_new_privs, the default seccomp profile, and
// Landlock allowing reads of the worker's directory only.
func benchSandbox(e *env) procpool.Sandbox {
	return procpool.Sandbox{
		Credential: &sandbox.Credential{UID: 65534, GID: 65534},
		Memory:     1 << 30,
		CPU:        float64(e.cores),
		Pids:       256,
		Namespaces: sandbox.Namespaces{User: true, Network: true, PID: true, Mount: true, IPC: true, UTS: true},
		NoNewPrivs: true,
		Seccomp:    &sandbox.Seccomp{},
		Landlock:   &sandbox.Landlock{ReadOnly: []string{filepath.Dir(e.bin)}},
	}
}

// sandboxNote is why the sandboxed figures are missing, or "": checked
// once (a start-up cycle must not pay for it).
func (e *env) sandboxNote() string {
	sandboxChecked.Do(func() {
		sb := benchSandbox(e)
		if err := sb.Check(); err != nil {
			sandboxCheck = "not measured: " + err.Error()
		}
	})
	return sandboxCheck
}

var (
	sandboxChecked sync.Once
	sandboxCheck   string
)

// sandboxedCycle is the worker-ready cycle with the whole sandbox: start,
// handshake, stop.
func sandboxedCycle(_ context.Context, e *env, _ *workload) error {
	if note := e.sandboxNote(); note != "" {
		return errSkipped
	}
	p, err := childproc.Start(childproc.Spec{Path: e.bin, Name: "sandboxed", Logger: e.cfg.Logger, Sandbox: benchSandbox(e)})
	if err != nil {
		return err
	}
	b := bareFor(p)
	defer b.close()
	if err := b.handshake(); err != nil {
		return fmt.Errorf("%w (stderr %q)", err, p.StderrTail())
	}
	return b.stop()
}

// errSkipped marks a level that cannot run on this machine.
var errSkipped = fmt.Errorf("skipped")

// judgeSandbox decides the sandbox's targets: start-up at 60% of the bare
// spawn rate or more, and the 1 KiB pool of 2 about as fast with it as
// without.
func (rp *report) judgeSandbox() {
	tg := target{Name: "start-up: fully sandboxed worker ready vs bare spawn of the same binary", Want: "≥ 60%"}
	sb, spawn := rp.startup("sandboxed"), rp.startup("spawn")
	if len(sb) == 0 {
		tg.Got = rp.res.SandboxNote
		rp.targets = append(rp.targets, tg)
		return
	}
	r := summarize(ratios(sb, spawn))
	tg.Got = fmt.Sprintf("%.0f%% (%s vs %s runs/s; unsandboxed ready %s)", 100*r.Median, med(sb), med(spawn), med(rp.startup("ready")))
	tg.Met = r.Runs > 0 && r.Median >= 0.6
	us := func(k string) float64 { return 1e6 / summarize(rp.startup(k)).Median }
	tg.Why = append(tg.Why, fmt.Sprintf("a sandboxed start costs %.0f µs more than an unsandboxed one: its own PID namespace's init "+
		"(made ahead on the init thread, torn down before Done) with its mount namespace and /proc, the move into a cgroup in three "+
		"v1 hierarchies (or one v2), and a dozen system calls injected before its first instruction; and a worker ready "+
		"without a sandbox is itself at %s of the bare spawn (docs/isolation.md, Costs)", us("sandboxed")-us("ready"),
		pctOf(ratios(rp.startup("ready"), spawn))))
	rp.targets = append(rp.targets, tg)

	p2, p2sb := rp.tput("1KiB", procpool.Blob, "pool2"), rp.tput("1KiB", procpool.Blob, "pool2sb")
	t2 := target{Name: "1 KiB BLOB, pool of 2, sandboxed vs not (same run)", Want: "unchanged (≥ 95%)"}
	if len(p2sb) == 0 {
		t2.Got = rp.res.SandboxNote
	} else {
		r := summarize(ratios(p2sb, p2))
		t2.Got = fmt.Sprintf("%.0f%% (%s vs %s jobs/s)", 100*r.Median, med(p2sb), med(p2))
		t2.Met = r.Runs > 0 && r.Median >= 0.95
	}
	rp.targets = append(rp.targets, t2)
}

// bareFor wraps a started process as a bare worker, with the bench's
// watchdog deadlines.
func bareFor(p *childproc.Process) *bareWorker {
	deadline := time.Now().Add(watchdog)
	_ = p.Input().SetWriteDeadline(deadline)
	_ = p.Output().SetReadDeadline(deadline)
	return newBare(p)
}

// sandboxDescription says what benchSandbox applies, for the notes.
const sandboxDescription = "uid and gid 65534 in a user namespace; PID and mount namespaces of its own, network, IPC and UTS " +
	"namespaces (with the user one, shared by the job type's workers); " +
	"a cgroup with memory (1 GiB), CPU (every core) and tasks (256) limits; no_new_privs; the default seccomp profile; " +
	"Landlock reads of the worker's directory only"

// runSandboxOnly is `go run ./bench -sandbox`: every run measures the
// start-up levels the sandbox's start-up target is judged on (bare spawn,
// worker ready, sandboxed worker ready), interleaved, then the 1 KiB BLOB
// pool of 2 without and with the sandbox, one after the other; then it
// prints the start-up figures and the sandbox's targets. It writes
// nothing.
func runSandboxOnly(ctx context.Context, e *env, res *results) error {
	if res.SandboxNote != "" {
		return fmt.Errorf("the sandbox cannot run here: %s", res.SandboxNote)
	}
	ls := slices.DeleteFunc(levels(), func(l level) bool {
		return !slices.Contains([]string{"spawn", "ready", "sandboxed"}, l.Key)
	})
	ms := slices.DeleteFunc(slices.Clone(res.Modes), func(m mode) bool { return m.Key != "pool2" && m.Key != "pool2sb" })
	w := e.workload("1KiB")
	e.progress("procpool bench (sandbox only): %d run(s) of %d start-ups per level and %d jobs per pool, %d cores, load %s\n",
		e.cfg.Runs, e.cfg.StartupCycles, e.cfg.Jobs, e.cores, loadAvg())
	for r := range e.cfg.Runs {
		e.progress("run %d/%d: start-up", r+1, e.cfg.Runs)
		if err := runStartupLevels(ctx, e, res, ls); err != nil {
			return err
		}
		e.progress(", throughput")
		for _, m := range ms {
			s, err := measureThroughput(ctx, e, w, procpool.Blob, m, e.jobsFor(w))
			if err != nil {
				return failf("throughput "+w.Name+", "+m.Name, err)
			}
			k := throughputKey(w, procpool.Blob, m.Key)
			res.Throughput[k] = append(res.Throughput[k], s)
		}
		e.progress(" (load %s)\n", loadAvg())
	}
	res.Took = time.Since(res.Began)
	res.Machine.LoadEnd = loadAvg()
	rp := &report{res: res}
	t := &table{Title: "Sandbox: start-up (runs/s) and 1 KiB BLOB pool of 2 (jobs/s), per run",
		Header: []string{"run", "bare spawn", "worker ready", "sandboxed ready", "sandboxed / spawn", "pool of 2", "sandboxed pool of 2", "sandboxed / not"}}
	sp, rd, sb := rp.startup("spawn"), rp.startup("ready"), rp.startup("sandboxed")
	p2, p2sb := rp.tput("1KiB", procpool.Blob, "pool2"), rp.tput("1KiB", procpool.Blob, "pool2sb")
	for i := range sp {
		t.Rows = append(t.Rows, []string{fmt.Sprint(i + 1), num(sp[i]), num(rd[i]), num(sb[i]), fmt.Sprintf("%.0f%%", 100*sb[i]/sp[i]),
			num(p2[i]), num(p2sb[i]), fmt.Sprintf("%.0f%%", 100*p2sb[i]/p2[i])})
	}
	t.Notes = append(t.Notes, "the sandbox: "+sandboxDescription, "CPU per start-up (median): "+rp.startupCPU())
	rp.tables = append(rp.tables, t)
	rp.judgeSandbox()
	rp.print(e.cfg.Out)
	fmt.Fprintf(e.cfg.Out, "\nbench took %v\n", res.Took.Round(time.Second))
	return nil
}
