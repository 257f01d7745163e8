package actors

import (
	"math"
	"strconv"
	"strings"
)

// goMaxProcs is the variable by which a Go program's runtime is told how
// many threads may run Go code at once.
const goMaxProcs = "GOMAXPROCS"

// cpuShare is the rule that keeps a pool from oversubscribing the CPUs:
// each worker's share is the CPUs its job type may use (its Affinity, or
// every CPU the host may run on, bounded by the sandbox's CPU quota)
// divided by MaxWorkers, at least one. When that share is below what the
// worker could use, it is given GOMAXPROCS=share in its environment, so
// that a pool of Go workers, one per CPU, runs one thread of Go code each
// instead of as many as the machine has, all contending for the same
// CPUs (the spinning, wake-ups and hand-offs between threads cost a Go
// worker up to a quarter of its CPU time on small batch items; joblib's loky
// workers limit their threads for the same reason). A job type that sets
// GOMAXPROCS in Env, or names it in InheritEnv, is left as it is. Workers
// in other languages get the variable too, and ignore it.
type cpuShare struct {
	cpus    int // the CPUs a worker's threads may run on: Go's default GOMAXPROCS
	quota   int // the CPUs' worth of time they may use: cpus, or fewer under a quota
	workers int // MaxWorkers
}

// newCPUShare returns the share of t's workers on a host with ncpu CPUs.
func newCPUShare(t *JobType, ncpu int) cpuShare {
	cpus := ncpu
	if len(t.Affinity) > 0 {
		cpus = len(t.Affinity)
	}
	cpus = max(cpus, 1)
	quota := cpus
	if q := t.Sandbox.CPU; q > 0 {
		quota = min(cpus, int(math.Ceil(q)))
	}
	return cpuShare{cpus: cpus, quota: quota, workers: t.MaxWorkers}
}

// perWorker is the CPUs each worker's share holds.
func (s cpuShare) perWorker() int { return max(1, s.quota/max(s.workers, 1)) }

// env returns env with GOMAXPROCS set to the share when the rule applies,
// else env itself.
func (s cpuShare) env(env, inherit []string) []string {
	n := s.perWorker()
	if n >= s.cpus || setsVar(env, inherit, goMaxProcs) {
		return env
	}
	out := make([]string, 0, len(env)+1)
	return append(append(out, env...), goMaxProcs+"="+strconv.Itoa(n))
}

// setsVar reports whether env sets name or inherit names it.
func setsVar(env, inherit []string, name string) bool {
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == name {
			return true
		}
	}
	for _, k := range inherit {
		if k == name {
			return true
		}
	}
	return false
}
