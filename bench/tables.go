package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/procpool/procpool"
)

// startupTitle and the other titles tie charts to tables.
const (
	startupTitle = "1. Start-up rate of each isolation level"
	scalingTitle = "7. Auto-scaling timeline (the article's demo)"
)

// startupTable is experiment 1: start-up rate per isolation level.
func (rp *report) startupTable() {
	t := &table{
		Title: startupTitle,
		Intro: "Runs per second of: start the environment, run one SHA-512 job over 1 KiB in it, tear it down " +
			"(the article's start-up experiment). The process levels are interleaved cycle by cycle; the bare spawn " +
			"is the floor for this binary: the same test worker, made to exit before reading anything.",
		Header: []string{"isolation level", "runs/s", "min–max", "µs/run", "article .NET Fx host", "article .NET Core host"},
	}
	article := map[string][2]string{
		"inproc":    {"∞", "∞"},
		"goroutine": {"∞ (thread)", "∞ (thread)"},
		"perjob":    {"11.76 (Fx worker), 12.66 (Core worker)", "31.25 (Fx worker), 23.26 (Core worker)"},
	}
	for _, l := range levels() {
		xs := rp.startup(l.Key)
		a := article[l.Key]
		t.Rows = append(t.Rows, []string{l.Name, med(xs), span(xs), micros(summarize(xs).Median), a[0], a[1]})
		if l.Key == "goroutine" {
			t.Rows = append(t.Rows, []string{"AppDomain (no Go equivalent)", "n/a", "", "", "333.33", "n/a"})
		}
	}
	ready, spawn := rp.startup("ready"), rp.startup("spawn")
	sbNote := "sandboxed worker " + rp.res.SandboxNote
	if sb := rp.startup("sandboxed"); len(sb) > 0 {
		sbNote = fmt.Sprintf("sandboxed worker ready vs bare spawn: %s of the floor's rate (target ≥ 60%%); the sandbox: %s",
			pctOf(ratios(sb, spawn)), sandboxDescription)
	}
	t.Notes = append(t.Notes,
		fmt.Sprintf("worker ready vs bare spawn: %s of the floor's rate (target ≥ 80%%)", pctOf(ratios(ready, spawn))),
		sbNote,
		fmt.Sprintf("process per job vs one job in a live process (1 KiB BLOB, one process): start-up costs %s a job (article: ~1,600x)",
			ratioOf(ratios(rp.tput("1KiB", procpool.Blob, "one"), rp.startup("perjob")))),
		fmt.Sprintf("of the pool-per-job cycle's %s µs, the actor system alone (NewSystem + Shutdown, no worker) takes %s µs",
			micros(summarize(rp.startup("pool")).Median), micros(summarize(rp.startup("system")).Median)),
		fmt.Sprintf("%d process start-ups per level per run, %d in-process ones; CPU per start-up (median): %s",
			rp.res.Cfg.StartupCycles, rp.res.Cfg.FastCycles, rp.startupCPU()),
	)
	rp.tables = append(rp.tables, t)
}

// startupCPU describes the CPU per start-up of the process levels.
func (rp *report) startupCPU() string {
	var parts []string
	for _, k := range []string{"spawn", "ready", "sandboxed", "perjob"} {
		if len(rp.res.Startup[k]) == 0 {
			continue
		}
		h, w := medianCPU(rp.res.Startup[k])
		parts = append(parts, fmt.Sprintf("%s host %.0f µs + child %.0f µs", k, h, w))
	}
	return strings.Join(parts, "; ")
}

// articleThroughput holds the article's jobs/s by workload, mode and kind.
var articleThroughput = map[string]string{
	"noop/one/VALUE":    "43,668–57,471",
	"noop/one/BLOB":     "19,194–37,037",
	"1KiB/inproc/VALUE": "19,011 (Fx)–84,746 (Core)",
	"1KiB/inproc/BLOB":  "19,121 (Fx)–85,470 (Core)",
	"1KiB/one/VALUE":    "12,920–29,240",
	"1KiB/one/BLOB":     "9,285–25,575",
	"1KiB/pool/BLOB":    "51,282–58,824 (24 workers)",
	"1MiB/inproc/BLOB":  "20.93 (Fx)–102.31 (Core)",
	"1MiB/one/BLOB":     "40.98–55.13",
	"1MiB/pool/BLOB":    "168.88–183.90 (24 workers)",
}

// throughputTable is experiment 2 for one workload: jobs/s per mode and payload kind.
func (rp *report) throughputTable(w *workload) {
	n := rp.res.Cfg.Jobs
	if w.Hash && w.Size >= 1<<20 {
		n = rp.res.Cfg.JobsMiB
	}
	t := &table{
		Title:  fmt.Sprintf("%d. Throughput, %s (jobs/s, %s jobs per run)", 2, w.Name, thousands(int64(n))),
		Header: []string{"mode", "VALUE", "min–max", "BLOB", "min–max", "article VALUE", "article BLOB"},
	}
	switch w.Key {
	case "noop":
		t.Title = fmt.Sprintf("2a. Throughput, no-load job (jobs/s, %s jobs per run)", thousands(int64(n)))
		t.Intro = "The no-load job returns at once: pure dispatch and IPC cost. VALUE sends a small msgpack value, " +
			"BLOB a 1 KiB buffer."
	case "1KiB":
		t.Title = fmt.Sprintf("2b. Throughput, SHA-512 over 1 KiB (jobs/s, %s jobs per run)", thousands(int64(n)))
		t.Intro = "VALUE sends {Size, Seed} and the worker makes the buffer; BLOB sends the caller's buffer as raw msgpack bin."
	case "1MiB":
		t.Title = fmt.Sprintf("2c. Throughput, SHA-512 over 1 MiB (jobs/s, %s jobs per run)", thousands(int64(n)))
		t.Intro = fmt.Sprintf("%s jobs per run instead of the article's 10,000, to fit the 5-minute budget on 2 cores "+
			"(10,000 would take about 10 s per mode and run).", thousands(int64(n)))
	}
	big := rp.bigPool()
	for _, m := range rp.res.Modes {
		v, b := rp.tput(w.Key, procpool.Value, m.Key), rp.tput(w.Key, procpool.Blob, m.Key)
		akey := m.Key
		if m.Kind == pool && m.Key != "one" {
			akey = "pool"
			if m.Key != big {
				akey = "-" // the article's 24-worker pool goes on the largest pool's row
			}
		}
		t.Rows = append(t.Rows, []string{m.Name, med(v), span(v), med(b), span(b),
			articleThroughput[w.Key+"/"+akey+"/VALUE"], articleThroughput[w.Key+"/"+akey+"/BLOB"]})
	}
	t.Notes = append(t.Notes, "elapsed time includes the stop of the worker processes (pool: System.Shutdown; bare loop: childproc Stop); "+
		"pools are started and their workers ready before the clock starts",
		fmt.Sprintf("pools: InFlight %d per worker, %d caller goroutines per worker, each calling Router.Call (CallValue for VALUE) one job at a time; ", pipeline, pipeline)+
			"'one process' is a pool of 1 called from 1 goroutine, as the article's serial calls")
	rp.tables = append(rp.tables, t)
}

// cpuTable shows the host and worker CPU per job: where the time goes.
func (rp *report) cpuTable() {
	t := &table{
		Title: "3. Where the time goes: CPU per job (µs, median)",
		Intro: "CPU time of this process (router, actors, pipes, callers) and of the worker processes (from the " +
			"reaped children's rusage, their start-up included), per job, beside the wall time per job.",
		Header: []string{"workload", "mode", "wall µs/job", "host CPU µs/job", "worker CPU µs/job", "CPU µs/job total"},
	}
	for _, wk := range []string{"1KiB", "1MiB"} {
		for _, kind := range kinds {
			for _, m := range rp.res.Modes {
				ss := rp.res.Throughput[wk+"/"+kindName(kind)+"/"+m.Key]
				h, w := medianCPU(ss)
				t.Rows = append(t.Rows, []string{wk + " " + kindName(kind), m.Name, micros(summarize(rates(ss)).Median),
					cpu(h), cpu(w), cpu(h + w)})
			}
		}
	}
	t.Notes = append(t.Notes, fmt.Sprintf("on %d cores, a rate R needs total CPU per job ≤ %d/R s; the host's share "+
		"is the framework's cost plus the copying of BLOB payloads (into the pipes; from 64 KiB up, into the worker's shared memory region)", rp.res.Cores, rp.res.Cores),
		"CPU per job grows when the machine is busy (shared cores and caches, runtimes spinning before they sleep): "+
			"compare the rows of one run, not these figures across machines")
	for _, kind := range kinds {
		g, _ := medianCPU(rp.res.Throughput["1MiB/"+kindName(kind)+"/goroutines"])
		h, w := medianCPU(rp.res.Throughput["1MiB/"+kindName(kind)+"/pool2"])
		if g > 0 && w > 1.1*g {
			t.Notes = append(t.Notes, fmt.Sprintf("1 MiB %s: the workers spend %.0f µs of CPU per job where the same job "+
				"in-process takes %.0f µs (%.2fx), the host only %.0f µs: the gap is on the worker side (making the VALUE "+
				"job's buffer, or reading a BLOB from its pipe or shared memory; the worker's runtime), worth a profile of the worker", kindName(kind), w, g, w/g, h))
		}
	}
	rp.tables = append(rp.tables, t)
}

// frameworkTable is experiment 3: the framework against the bare loop.
func (rp *report) frameworkTable() {
	t := &table{
		Title: "4. The framework against a bare loop over the same pipes",
		Intro: "The bare loop is childproc + codec Writer/Reader by hand, one job in flight, no actors, the same worker " +
			"binary. Ratios are taken within each run, then the median (min–max) over the runs.",
		Header: []string{"job", "bare loop jobs/s", "one process jobs/s", "one process / bare", "framework µs/job", "pool of 2 jobs/s", "pool of 2 / bare"},
	}
	for _, w := range rp.res.Workloads {
		for _, kind := range kinds {
			bare, one, p2 := rp.tput(w.Key, kind, "bare"), rp.tput(w.Key, kind, "one"), rp.tput(w.Key, kind, "pool2")
			cost := "—"
			if b, o := summarize(bare).Median, summarize(one).Median; b > 0 && o > 0 {
				cost = fmt.Sprintf("%.1f", 1e6/o-1e6/b)
			}
			t.Rows = append(t.Rows, []string{w.Name + " " + kindName(kind), med(bare), med(one),
				ratioOf(ratios(one, bare)), cost, med(p2), ratioOf(ratios(p2, bare))})
		}
	}
	t.Notes = append(t.Notes, "framework µs/job = 1/(one process) − 1/(bare loop), from the medians: what the actors, the "+
		"futures and the reader goroutine add to a job when one job is in flight; a negative figure means the difference "+
		"is within the machine's noise")
	rp.tables = append(rp.tables, t)
}

// peerTable is experiment 5: Python ProcessPoolExecutor beside our pool of 2.
func (rp *report) peerTable() {
	t := &table{
		Title: "5. Peer: Python concurrent.futures.ProcessPoolExecutor, side by side",
		Intro: fmt.Sprintf("The same jobs through ProcessPoolExecutor(max_workers=%d) (hashlib.sha512; one submit per job, "+
			"results collected in order, shutdown included; workers started before the clock), in the same run, "+
			"against our pool of %d. Every result is checked.", peerWorkers, peerWorkers),
		Header: []string{"job", "Python jobs/s", "min–max", "procpool pool of 2 jobs/s", "procpool / Python"},
	}
	if len(rp.res.Peer) == 0 {
		t.Notes = append(t.Notes, "Python peer "+rp.res.PeerNote)
		rp.tables = append(rp.tables, t)
		return
	}
	for _, w := range rp.res.Workloads {
		for _, kind := range kinds {
			py, p2 := rp.peer(w.Key, kind), rp.tput(w.Key, kind, "pool2")
			t.Rows = append(t.Rows, []string{w.Name + " " + kindName(kind), med(py), span(py), med(p2), ratioOf(ratios(p2, py))})
		}
	}
	t.Notes = append(t.Notes, "peer: "+rp.res.PeerNote,
		"VALUE: Python makes its buffer by repeating a 256-byte pattern (memcpy speed), the Go worker byte by byte, "+
			"so at 1 MiB the VALUE row compares buffer making as much as dispatch; the BLOB rows compare like with like")
	rp.tables = append(rp.tables, t)
}

// ratioTable gathers the ratios the article and the targets care about.
func (rp *report) ratioTable() {
	t := &table{
		Title:  "6. The ratios that matter",
		Intro:  "Each ratio is computed within a run, then the median (min–max) over the runs is shown.",
		Header: []string{"ratio", "procpool", "article"},
	}
	big := rp.bigPool()
	add := func(name string, xs []float64, article string, pct bool) {
		v := ratioOf(xs)
		if pct {
			v = pctOf(xs)
		}
		t.Rows = append(t.Rows, []string{name, v, article})
	}
	for _, wk := range []string{"1KiB", "1MiB"} {
		art := map[string]string{"1KiB": "2.2–2.4x (24 workers)", "1MiB": "3.3–4.1x (24 workers)"}[wk]
		add(fmt.Sprintf("pool of 2 vs one process, %s BLOB", wk), ratios(rp.tput(wk, procpool.Blob, "pool2"), rp.tput(wk, procpool.Blob, "one")), art, false)
		if big != "pool2" {
			add(fmt.Sprintf("pool of %s vs one process, %s BLOB", strings.TrimPrefix(big, "pool"), wk),
				ratios(rp.tput(wk, procpool.Blob, big), rp.tput(wk, procpool.Blob, "one")), art, false)
		}
	}
	add("pool of 2 vs in-process (1 goroutine), 1 KiB BLOB", ratios(rp.tput("1KiB", procpool.Blob, "pool2"), rp.tput("1KiB", procpool.Blob, "inproc")),
		"69% (Core), 268% (Fx)", true)
	add(fmt.Sprintf("pool of 2 vs in-process (%d goroutines), 1 MiB BLOB", rp.res.Cores),
		ratios(rp.tput("1MiB", procpool.Blob, "pool2"), rp.tput("1MiB", procpool.Blob, "goroutines")), "— (target ≥ 90%)", true)
	add(fmt.Sprintf("pool of 2 vs in-process (%d goroutines), 1 MiB VALUE", rp.res.Cores),
		ratios(rp.tput("1MiB", procpool.Value, "pool2"), rp.tput("1MiB", procpool.Value, "goroutines")), "—", true)
	add("one process (framework) vs bare loop, 1 KiB BLOB", ratios(rp.tput("1KiB", procpool.Blob, "one"), rp.tput("1KiB", procpool.Blob, "bare")), "—", true)
	add("pool of 2 vs bare loop, 1 KiB BLOB", ratios(rp.tput("1KiB", procpool.Blob, "pool2"), rp.tput("1KiB", procpool.Blob, "bare")), "— (target ≥ 2x)", false)
	if len(rp.res.Peer) > 0 {
		add("pool of 2 vs Python ProcessPoolExecutor(2), 1 KiB BLOB", ratios(rp.tput("1KiB", procpool.Blob, "pool2"), rp.peer("1KiB", procpool.Blob)), "— (target ≥ 10x)", false)
		add("pool of 2 vs Python ProcessPoolExecutor(2), 1 MiB BLOB", ratios(rp.tput("1MiB", procpool.Blob, "pool2"), rp.peer("1MiB", procpool.Blob)), "—", false)
	}
	add("start-up (process per job) vs a job in a live process, 1 KiB BLOB", ratios(rp.tput("1KiB", procpool.Blob, "one"), rp.startup("perjob")), "~1,600x", false)
	add("worker ready vs bare spawn of the same binary", ratios(rp.startup("ready"), rp.startup("spawn")), "— (target ≥ 80%)", true)
	rp.tables = append(rp.tables, t)
}

// scalingTable is experiment 4: the auto-scaling scenario against the article's demo.
func (rp *report) scalingTable() {
	s := rp.res.Scaling
	c := s.Config
	t := &table{
		Title: scalingTitle,
		Intro: fmt.Sprintf("A pool of min %d, max %d workers, idle timeout %v; %d SHA-512 jobs over 1 MiB (BLOB) submitted at once "+
			"(Router.Submit, then Wait on each; queue capacity 1024, where the article's producer blocks on a queue of 5), "+
			"a pause of %v, %d more, then Shutdown. Router.Stats sampled every %v.",
			c.Min, c.Max, c.Idle, c.Burst, c.Pause, c.Burst, c.Every),
		Header: []string{"moment", "article", "procpool"},
	}
	t.Rows = [][]string{
		{"live workers at the peak of the first burst", fmt.Sprint(c.Max), fmt.Sprint(s.Peak1)},
		{"workers retired (passivated) during the pause", fmt.Sprint(c.Max - c.Min), fmt.Sprint(s.PassivatedInPause)},
		{"live workers at the end of the pause", fmt.Sprint(c.Min), fmt.Sprint(s.AfterPause)},
		{"live workers at the peak of the second burst", fmt.Sprintf("%d (%d new)", c.Max, c.Max-c.Min), fmt.Sprintf("%d (%d new)", s.Peak2, max(0, int(s.Spawns)-c.Max))},
		{"worker processes left after stop", "0", fmt.Sprint(s.Final)},
		{"worker processes started in all", fmt.Sprint(c.Max + c.Max - c.Min), fmt.Sprint(s.Spawns)},
		{"time to finish burst 1 / burst 2", "—", fmt.Sprintf("%v / %v", s.Burst1.Round(time.Millisecond), s.Burst2.Round(time.Millisecond))},
	}
	verdict := "yes"
	if !s.matchesArticle() {
		verdict = "no"
	}
	t.Notes = append(t.Notes, "same shape as the article's demo: "+verdict,
		fmt.Sprintf("%d samples; the chart shows live and busy workers and the queue depth over time", len(s.Points)))
	rp.tables = append(rp.tables, t)
}
