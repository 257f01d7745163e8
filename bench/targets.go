package main

import (
	"fmt"

	"github.com/procpool/procpool"
)

// judge decides each of procpool's targets on this run's figures and, for
// those missed, says where the time likely goes.
func (rp *report) judge() {
	// 1a. 1 KiB, 2 workers, one job per call: ≥ 2x the bare loop.
	{
		p2, bare := rp.tput("1KiB", procpool.Blob, "pool2"), rp.tput("1KiB", procpool.Blob, "bare")
		r := summarize(ratios(p2, bare))
		rv := summarize(ratios(rp.tput("1KiB", procpool.Value, "pool2"), rp.tput("1KiB", procpool.Value, "bare")))
		tg := target{
			Name: "1 KiB BLOB, pool of 2, one job per call, vs the bare pipe loop",
			Want: "≥ 2x",
			Got:  fmt.Sprintf("%.2fx (%s vs %s jobs/s; VALUE %.2fx)", r.Median, med(p2), med(bare), rv.Median),
			Met:  r.Runs > 0 && r.Median >= 2,
		}
		if !tg.Met {
			tg.Why = rp.whyPoolVsBare()
		}
		rp.targets = append(rp.targets, tg)
	}
	// 1b. ... and ≥ 10x Python.
	{
		tg := target{Name: "1 KiB BLOB, pool of 2, vs Python ProcessPoolExecutor(2) submit", Want: "≥ 10x"}
		if len(rp.res.Peer) == 0 {
			tg.Got = "not measured: Python peer " + rp.res.PeerNote
		} else {
			p2, py := rp.tput("1KiB", procpool.Blob, "pool2"), rp.peer("1KiB", procpool.Blob)
			r := summarize(ratios(p2, py))
			rv := summarize(ratios(rp.tput("1KiB", procpool.Value, "pool2"), rp.peer("1KiB", procpool.Value)))
			tg.Got = fmt.Sprintf("%.1fx (%s vs %s jobs/s; VALUE %.1fx)", r.Median, med(p2), med(py), rv.Median)
			tg.Met = r.Median >= 10
			if !tg.Met {
				ten := 10 * summarize(py).Median
				ph, pw := medianCPU(rp.res.Throughput["1KiB/BLOB/pool2"])
				line := fmt.Sprintf("10x Python is %s jobs/s: on %d cores that leaves %.1f µs of CPU per job; the pool spends %.1f (host %.1f, workers %.1f), "+
					"most of it in the pipe system calls on both sides, so closing the gap means fewer system calls per job (larger coalesced writes and reads)",
					num(ten), rp.res.Cores, float64(rp.res.Cores)*1e6/ten, ph+pw, ph, pw)
				tg.Why = append(tg.Why, line, "Python pays pickling and its executor's queue-management thread per submit, and still reaches this rate")
			}
		}
		rp.targets = append(rp.targets, tg)
	}
	// 2. 1 MiB, 2 workers: ≥ 90% of in-process with one goroutine per core.
	{
		p2, g := rp.tput("1MiB", procpool.Blob, "pool2"), rp.tput("1MiB", procpool.Blob, "goroutines")
		r := summarize(ratios(p2, g))
		rv := summarize(ratios(rp.tput("1MiB", procpool.Value, "pool2"), rp.tput("1MiB", procpool.Value, "goroutines")))
		tg := target{
			Name: fmt.Sprintf("1 MiB BLOB, pool of 2, vs in-process with %d goroutines", rp.res.Cores),
			Want: "≥ 90%",
			Got: fmt.Sprintf("%.0f%% (runs %.0f–%.0f%%; %s vs %s jobs/s; VALUE %.0f%%)", 100*r.Median, 100*r.Min, 100*r.Max,
				med(p2), med(g), 100*rv.Median),
			Met: r.Runs > 0 && r.Median >= 0.9,
		}
		tg.Why = rp.whyPoolVsInProcess() // met or not: where the rest goes
		rp.targets = append(rp.targets, tg)
	}
	// 3. A worker ready at ≥ 80% of the bare spawn rate.
	{
		ready, spawn := rp.startup("ready"), rp.startup("spawn")
		r := summarize(ratios(ready, spawn))
		tg := target{
			Name: "start-up: worker ready (handshake done, then stopped) vs bare spawn of the same binary",
			Want: "≥ 80%",
			Got:  fmt.Sprintf("%.0f%% (%s vs %s runs/s)", 100*r.Median, med(ready), med(spawn)),
			Met:  r.Runs > 0 && r.Median >= 0.8,
		}
		if !tg.Met {
			us := func(k string) float64 { return 1e6 / summarize(rp.startup(k)).Median }
			tg.Why = append(tg.Why,
				fmt.Sprintf("bare spawn %.0f µs; childproc Start+Stop without handshake %.0f µs (+%.0f µs: four pipes, pipe sizing, "+
					"the fork thread, stdout/stderr readers, the reap and drain); handshake %.0f µs more (the worker SDK's start, "+
					"hello/ready, exit on end of input)", us("spawn"), us("childproc"), us("childproc")-us("spawn"), us("ready")-us("childproc")))
		}
		rp.targets = append(rp.targets, tg)
	}
	rp.judgeSandbox()
}

// whyPoolVsBare explains, from the CPU figures, where the time of a 1 KiB
// job goes through the pool of 2 and through the bare loop.
func (rp *report) whyPoolVsBare() []string {
	cores := float64(rp.res.Cores)
	bareRate := summarize(rp.tput("1KiB", procpool.Blob, "bare")).Median
	poolRate := summarize(rp.tput("1KiB", procpool.Blob, "pool2")).Median
	ph, pw := medianCPU(rp.res.Throughput["1KiB/BLOB/pool2"])
	bh, bw := medianCPU(rp.res.Throughput["1KiB/BLOB/bare"])
	budget := cores * 1e6 / (2 * bareRate)
	busy := poolRate * (ph + pw) / 1e6   // cores kept busy
	saturated := cores * 1e6 / (ph + pw) // the rate with every core busy at this cost
	why := []string{
		fmt.Sprintf("2x the bare loop is %s jobs/s: on %d cores that leaves %.1f µs of CPU per job, host and workers together",
			num(2*bareRate), rp.res.Cores, budget),
		fmt.Sprintf("the pool of 2 costs %.1f µs of CPU per job (host %.1f, workers %.1f); the bare loop %.1f (host %.1f, worker %.1f)",
			ph+pw, ph, pw, bh+bw, bh, bw),
		fmt.Sprintf("at %s jobs/s the pool keeps %.2f of the %d cores busy; saturated at this cost it would reach %s jobs/s, %.2fx the bare loop",
			num(poolRate), busy, rp.res.Cores, num(saturated), saturated/bareRate),
	}
	if busy < 0.9*cores {
		why = append(why, fmt.Sprintf("the other %.2f cores are idle time: a worker waits from its answer to its next "+
			"request (answer read → caller woken → next Call written to the pipe); more jobs in flight per worker fill it", cores-busy))
	}
	if ph+pw > budget {
		why = append(why, fmt.Sprintf("even with the cores saturated, 2x needs the CPU per job to fall by %.1f µs", ph+pw-budget))
	}
	if ph > bh {
		why = append(why, fmt.Sprintf("the host spends %.1f µs per job more than the bare loop's: the framework's path "+
			"(router, worker link, futures, wake-ups)", ph-bh))
	}
	if pw > bw {
		why = append(why, fmt.Sprintf("the workers spend %.1f µs per job more than the bare loop's worker: two runtimes "+
			"contending for two cores, heartbeats, their start-up spread over the jobs", pw-bw))
	}
	return why
}

// whyPoolVsInProcess explains the CPU cost of a 1 MiB BLOB job through the
// pool against the same job in-process.
func (rp *report) whyPoolVsInProcess() []string {
	gh, _ := medianCPU(rp.res.Throughput["1MiB/BLOB/goroutines"])
	ph, pw := medianCPU(rp.res.Throughput["1MiB/BLOB/pool2"])
	ps := medianSys(rp.res.Throughput["1MiB/BLOB/pool2"])
	vh, vw := medianCPU(rp.res.Throughput["1MiB/VALUE/pool2"])
	return []string{
		fmt.Sprintf("in-process a job costs %.0f µs of CPU (the hash); through the pool %.0f µs: workers %.0f (hashing the "+
			"payload in place in the shared memory region) and host %.0f, of which %.0f user (copying 1 MiB into the region, "+
			"about 50 µs, then the actors and the callers) and %.0f system (pipe reads and writes, and the kernel's side of "+
			"waking caller goroutines' threads: futex, epoll, the idle runtime's short sleeps)", gh, ph+pw, pw, ph, ph-ps, ps),
		fmt.Sprintf("with every core busy the rates are bounded by the CPU per job: %.0f / %.0f = %.0f%% at best",
			gh, ph+pw, 100*gh/(ph+pw)),
		fmt.Sprintf("VALUE, where no buffer crosses the pipe, costs %.0f µs (host %.0f, workers %.0f, making the buffer included)", vh+vw, vh, vw),
		"what would take the rest: callers writing their payload straight into the region (no copy), and fewer " +
			"goroutine hand-offs per result on the host",
	}
}
