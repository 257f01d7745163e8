package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"time"

	"github.com/procpool/procpool"
)

// level is one isolation level of the start-up experiment: one cycle
// starts the environment, runs the 1 KiB SHA-512 job in it once (unless
// said otherwise) and tears it down.
type level struct {
	Key     string
	Name    string
	Process bool // starts a process (cycled StartupCycles times, else FastCycles)
	cycle   func(ctx context.Context, e *env, w *workload) error
}

// levels returns the isolation levels, cheapest first.
func levels() []level {
	return []level{
		{Key: "inproc", Name: "in-process call", cycle: func(_ context.Context, _ *env, w *workload) error {
			return w.inProcess(procpool.Blob, 0)
		}},
		{Key: "goroutine", Name: "goroutine (start, call, join)", cycle: func(_ context.Context, _ *env, w *workload) error {
			done := make(chan error, 1)
			go func() { done <- w.inProcess(procpool.Blob, 0) }()
			return <-done
		}},
		{Key: "spawn", Name: "bare spawn (os/exec Start+Wait, exits at once; no job)", Process: true, cycle: bareSpawn},
		{Key: "childproc", Name: "childproc Start+Stop (no handshake, no job)", Process: true, cycle: childprocCycle},
		{Key: "ready", Name: "worker ready: childproc + handshake + Stop (no job)", Process: true, cycle: readyCycle(false)},
		{Key: "sandboxed", Name: "sandboxed worker ready: every Sandbox control + handshake + Stop (no job)", Process: true, cycle: sandboxedCycle},
		{Key: "perjob", Name: "process per job: start, handshake, 1 job, stop", Process: true, cycle: readyCycle(true)},
		{Key: "pool", Name: "pool per job: NewSystem, Spawn(min 1), Call, Shutdown", Process: true, cycle: poolCycle},
		{Key: "system", Name: "actor system alone: NewSystem, Shutdown (no worker, no job)", Process: true, cycle: systemCycle},
	}
}

// bareSpawn starts the test worker with TESTWORKER_EXIT_AT_START=0, which
// makes it exit before it reads anything, and waits for it: the floor of
// any process start-up with this binary.
func bareSpawn(_ context.Context, e *env, _ *workload) error {
	cmd := exec.Command(e.bin)
	cmd.Env = []string{"TESTWORKER_EXIT_AT_START=0"}
	return cmd.Run()
}

// childprocCycle starts the worker through childproc and stops it at once:
// it reads end of input before any hello and exits.
func childprocCycle(_ context.Context, e *env, _ *workload) error {
	b, err := startBare(e)
	if err != nil {
		return err
	}
	defer b.close()
	b.proc.Stop(context.Background(), 2*time.Second)
	return nil
}

// readyCycle starts a worker, shakes hands, runs one job if withJob, and
// stops it.
func readyCycle(withJob bool) func(context.Context, *env, *workload) error {
	return func(_ context.Context, e *env, w *workload) error {
		b, err := startBare(e)
		if err != nil {
			return err
		}
		defer b.close()
		if err := b.handshake(); err != nil {
			return err
		}
		if withJob {
			if err := b.job(w, procpool.Blob, 0); err != nil {
				return err
			}
		}
		return b.stop()
	}
}

// poolCycle is the whole façade for one job: a system, a router with one
// worker, one call, and the system's shutdown.
func poolCycle(ctx context.Context, e *env, w *workload) error {
	ctx, cancel := context.WithTimeout(ctx, watchdog)
	defer cancel()
	sys := procpool.NewSystem(procpool.Config{Logger: e.cfg.Logger})
	defer shutdown(sys)
	r, err := sys.Spawn(procpool.JobType{Name: "sha512", Command: e.bin, MinWorkers: 1, MaxWorkers: 1})
	if err != nil {
		return err
	}
	if err := poolJob(ctx, r, w, procpool.Blob, 0); err != nil {
		return poolError(ctx, r, err)
	}
	return shutdown(sys)
}

// systemCycle starts and stops an empty System: the share of the actor
// system in the pool-per-job level.
func systemCycle(context.Context, *env, *workload) error {
	return shutdown(procpool.NewSystem(procpool.Config{}))
}

// runStartup measures every level once. The process levels are
// interleaved cycle by cycle, so that a noisy spell of the machine hits
// them alike: their ratios are what the targets judge.
func runStartup(ctx context.Context, e *env, res *results) error {
	return runStartupLevels(ctx, e, res, levels())
}

// runStartupLevels measures the levels ls once, as runStartup does.
func runStartupLevels(ctx context.Context, e *env, res *results, ls []level) error {
	w := e.workload("1KiB")
	var procs []level
	for _, l := range ls {
		if l.Process {
			procs = append(procs, l)
			continue
		}
		sw := startStopwatch()
		for range e.cfg.FastCycles {
			if err := l.cycle(ctx, e, w); err != nil {
				return failf("start-up "+l.Name, err)
			}
		}
		res.Startup[l.Key] = append(res.Startup[l.Key], sw.stop(e.cfg.FastCycles))
	}
	acc := make([]sample, len(procs))
	skipped := make([]bool, len(procs))
	for range e.cfg.StartupCycles {
		for i, l := range procs {
			if skipped[i] {
				continue
			}
			sw := startStopwatch()
			if err := l.cycle(ctx, e, w); err != nil {
				if errors.Is(err, errSkipped) {
					skipped[i] = true
					continue
				}
				return failf("start-up "+l.Name, err)
			}
			s := sw.stop(1)
			acc[i].N++
			acc[i].Elapsed += s.Elapsed
			acc[i].HostCPU += s.HostCPU
			acc[i].WorkerCPU += s.WorkerCPU
		}
	}
	for i, l := range procs {
		if !skipped[i] {
			res.Startup[l.Key] = append(res.Startup[l.Key], acc[i])
		}
	}
	return nil
}

// workload returns the workload with the given key.
func (e *env) workload(key string) *workload {
	for _, w := range e.allWorkloads {
		if w.Key == key {
			return w
		}
	}
	panic(fmt.Sprintf("bench: no workload %q", key))
}
