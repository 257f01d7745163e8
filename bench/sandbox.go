package main

import (
	"context"
	"fmt"
	"path/filepath"
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

// sandboxNote is why the sandboxed figures are missing, or "".
func (e *env) sandboxNote() string {
	sb := benchSandbox(e)
	if err := sb.Check(); err != nil {
		return "not measured: " + err.Error()
	}
	return ""
}

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
		"(made ahead, while the previous worker starts), its network, mount, IPC, UTS and user namespaces, a cgroup in three v1 "+
		"hierarchies (or one v2), and a dozen system calls injected before its first instruction", us("sandboxed")-us("ready")))
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
const sandboxDescription = "uid and gid 65534 in a user namespace of their own; PID, network, mount, IPC and UTS namespaces; " +
	"a cgroup with memory (1 GiB), CPU (every core) and tasks (256) limits; no_new_privs; the default seccomp profile; " +
	"Landlock reads of the worker's directory only"
