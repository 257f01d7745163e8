package main

import (
	"fmt"
	"strings"

	"github.com/procpool/procpool/codec"
)

// mapTitle and fillTitle tie the issue 13 tables together.
const (
	mapTitle  = "8. Many small jobs: Map, batch frames"
	fillTitle = "9. 1 MiB payloads built by the caller: the no-copy payload (CallFill)"
)

// mapRates returns the rates of a Map measurement.
func (rp *report) mapRates(size, mode string) []float64 { return rates(rp.res.Map[mapKey(size, mode)]) }

// mapTable is the Map experiment: items/s per mode and size, and the CPU
// per item of ours.
func (rp *report) mapTable() {
	t := &table{
		Title: mapTitle,
		Intro: fmt.Sprintf("SHA-512 over BLOB payloads of 64 B, 1 KiB and 1 MiB (items/s): Router.Map over a pool of %d "+
			"(one caller ranging over the results in input order; items travel %d (or 1 MiB of payload) at most to a batch frame, answers likewise; "+
			"to the Go workers, a batch's payloads lie in the worker's shared memory region, the protocol's shareditems), "+
			"beside the same items one job per Router.Call (pool of %d, InFlight %d, %d callers), in-process on %d goroutines, "+
			"and Python's ProcessPoolExecutor(%d) with map(chunksize=256; 4 at 1 MiB) and with one submit per item, in the "+
			"same run. %s items per run for Map, in-process and Python's map at 64 B and 1 KiB, %s for one job per call and "+
			"submit, %s at 1 MiB. Elapsed times include the pools' Shutdown and the executor's shutdown. Every result is checked, "+
			"in input order.",
			mapWorkers, codec.MaxBatch, mapWorkers, pipeline, pipeline*mapWorkers, rp.res.Cores, peerWorkers,
			thousands(int64(rp.res.Cfg.MapItems)), thousands(int64(rp.res.Cfg.Jobs)), thousands(int64(rp.res.Cfg.JobsMiB))),
		Header: []string{"mode"},
	}
	for _, s := range mapSizes {
		t.Header = append(t.Header, s.Key+" items/s", "min–max")
	}
	for _, m := range rp.res.MapModes {
		row := []string{m.Name}
		for _, s := range mapSizes {
			xs := rp.mapRates(s.Key, m.Key)
			row = append(row, med(xs), span(xs))
		}
		t.Rows = append(t.Rows, row)
	}
	ratio := func(name, a, b string) {
		row := []string{name}
		for _, s := range mapSizes {
			row = append(row, ratioOf(ratios(rp.mapRates(s.Key, a), rp.mapRates(s.Key, b))), "")
		}
		t.Rows = append(t.Rows, row)
	}
	ratio("Map / Python map(chunksize)", "map", "pymap")
	ratio("Map / in-process", "map", "inproc")
	ratio("Map / one job per Call", "map", "call")
	for _, s := range mapSizes {
		var parts []string
		for _, m := range rp.res.MapModes {
			if strings.HasPrefix(m.Key, "py") && m.sdk == nil {
				continue // the Python peer reports no CPU
			}
			h, w := medianCPU(rp.res.Map[mapKey(s.Key, m.Key)])
			parts = append(parts, fmt.Sprintf("%s host %s + workers %s", m.Key, cpu(h), cpu(w)))
		}
		t.Notes = append(t.Notes, fmt.Sprintf("CPU µs per item at %s (median): %s", s.Key, strings.Join(parts, "; ")))
	}
	t.Notes = append(t.Notes, fmt.Sprintf("Map's pools are those of one job per call (InFlight %d per worker; a Map job holds a slot per batch, "+
		"and Map spreads the items at hand over two batches per worker); the SDK workers' Map rows use the same pool", mapInFlight))
	rp.tables = append(rp.tables, t)
}

// fillTable is the no-copy experiment.
func (rp *report) fillTable() {
	t := &table{
		Title: fillTitle,
		Intro: fmt.Sprintf("SHA-512 over 1 MiB BLOBs, %s jobs per run, where every job builds its payload first (a copy "+
			"from the job's template, the cheapest way to build one, so that building does not dilute the comparison): "+
			"in-process, each of %d goroutines builds into a buffer of its own and hashes it; through a pool of 2 "+
			"(InFlight %d, %d callers), CallFill lends the caller the payload's place in the worker's shared memory "+
			"region, where the caller builds it and the worker hashes it; Call has the caller build it in a buffer of its "+
			"own, which the host then copies into the region. The last row builds nothing per job (the throughput "+
			"table's 1 MiB BLOB). Every result is checked.",
			thousands(int64(rp.res.Cfg.JobsMiB)), rp.res.Cores, pipeline, 2*pipeline),
		Header: []string{"mode", "jobs/s", "min–max", "vs in-process", "host CPU µs/job", "worker CPU µs/job"},
	}
	in := rates(rp.res.Map[fillKey("inproc")])
	for _, m := range fillModes {
		ss := rp.res.Map[fillKey(m.Key)]
		xs := rates(ss)
		h, w := medianCPU(ss)
		vs := "—"
		if m.Key != "inproc" {
			vs = pctOf(ratios(xs, in))
		}
		t.Rows = append(t.Rows, []string{m.Name, med(xs), span(xs), vs, cpu(h), cpu(w)})
	}
	rp.tables = append(rp.tables, t)
}

// judgeMap decides issue 13's throughput targets.
func (rp *report) judgeMap() {
	vsPython := func(size string, want float64) target {
		tg := target{Name: fmt.Sprintf("%s SHA-512 through Map, pool of %d, vs Python ProcessPoolExecutor(%d).map(chunksize=256)",
			size, mapWorkers, peerWorkers), Want: fmt.Sprintf("≥ %.1fx", want)}
		py := rp.mapRates(size, "pymap")
		if len(py) == 0 {
			tg.Got = "not measured: Python peer " + rp.res.PeerNote
			return tg
		}
		mp := rp.mapRates(size, "map")
		r := summarize(ratios(mp, py))
		tg.Got = fmt.Sprintf("%.2fx (%s vs %s items/s)", r.Median, med(mp), med(py))
		tg.Met = r.Runs > 0 && r.Median >= want
		if !tg.Met {
			tg.Why = rp.whyMap(size, want*summarize(py).Median)
		}
		return tg
	}
	rp.targets = append(rp.targets, vsPython("1KiB", 1.5))
	{
		mp, in := rp.mapRates("1KiB", "map"), rp.mapRates("1KiB", "inproc")
		r := summarize(ratios(mp, in))
		tg := target{Name: fmt.Sprintf("1KiB SHA-512 through Map, pool of %d, vs in-process on %d goroutines", mapWorkers, rp.res.Cores),
			Want: "≥ 60%", Got: fmt.Sprintf("%.0f%% (%s vs %s items/s)", 100*r.Median, med(mp), med(in)),
			Met: r.Runs > 0 && r.Median >= 0.6}
		if !tg.Met {
			tg.Why = rp.whyMap("1KiB", 0.6*summarize(in).Median)
		}
		rp.targets = append(rp.targets, tg)
	}
	rp.targets = append(rp.targets, vsPython("64B", 1.5))
	{
		mp, call := rp.mapRates("1MiB", "map"), rp.mapRates("1MiB", "call")
		r := summarize(ratios(mp, call))
		tg := target{Name: "1MiB SHA-512 through Map vs one job per Call (pool of 2 each)", Want: "≥ 1x (no worse)",
			Got: fmt.Sprintf("%.2fx (%s vs %s items/s)", r.Median, med(mp), med(call)),
			Met: r.Runs > 0 && r.Median >= 1}
		if !tg.Met {
			mh, mw := medianCPU(rp.res.Map[mapKey("1MiB", "map")])
			ch, cw := medianCPU(rp.res.Map[mapKey("1MiB", "call")])
			tg.Why = append(tg.Why, fmt.Sprintf("CPU µs per item: Map host %s + workers %s, Call host %s + workers %s",
				cpu(mh), cpu(mw), cpu(ch), cpu(cw)))
		}
		rp.targets = append(rp.targets, tg)
	}
	{
		fill, in := rates(rp.res.Map[fillKey("callfill")]), rates(rp.res.Map[fillKey("inproc")])
		r := summarize(ratios(fill, in))
		call := summarize(ratios(rates(rp.res.Map[fillKey("call")]), in))
		tg := target{Name: fmt.Sprintf("1 MiB BLOB built per job, pool of 2 with CallFill, vs in-process on %d goroutines (building it too)", rp.res.Cores),
			Want: "≥ 95%", Got: fmt.Sprintf("%.0f%% (runs %.0f–%.0f%%; %s vs %s jobs/s; Call %.0f%%)", 100*r.Median, 100*r.Min, 100*r.Max,
				med(fill), med(in), 100*call.Median),
			Met: r.Runs > 0 && r.Median >= 0.95}
		gh, _ := medianCPU(rp.res.Map[fillKey("inproc")])
		fh, fw := medianCPU(rp.res.Map[fillKey("callfill")])
		tg.Why = append(tg.Why, fmt.Sprintf("CPU µs per job: in-process %s (build and hash); CallFill host %s (the build, the actors, "+
			"the callers) + workers %s (the hash); at best %s / %s = %.0f%% with every core busy", cpu(gh), cpu(fh), cpu(fw),
			cpu(gh), cpu(fh+fw), 100*gh/max(fh+fw, 1)))
		rp.targets = append(rp.targets, tg)
	}
}

// whyMap explains where the CPU of an item through Map goes, against the
// budget that a rate of want items/s leaves on this machine.
func (rp *report) whyMap(size string, want float64) []string {
	cores := float64(rp.res.Cores)
	mh, mw := medianCPU(rp.res.Map[mapKey(size, "map")])
	ih, _ := medianCPU(rp.res.Map[mapKey(size, "inproc")])
	rate := summarize(rp.mapRates(size, "map")).Median
	budget := cores * 1e6 / want
	why := []string{
		fmt.Sprintf("%s items/s leaves %.2f µs of CPU per item on %d cores; Map spends %.2f (host %.2f, workers %.2f), "+
			"where in-process an item costs %.2f (the hash)", num(want), budget, rp.res.Cores, mh+mw, mh, mw, ih),
		fmt.Sprintf("at %s items/s Map keeps %.2f of the %d cores busy", num(rate), rate*(mh+mw)/1e6, rp.res.Cores),
	}
	return why
}

// manyTables adds the tables of issue 13's experiments.
func (rp *report) manyTables() {
	rp.mapTable()
	rp.fillTable()
	rp.latencyTable()
}

// judgeMany decides issue 13's targets.
func (rp *report) judgeMany() {
	rp.judgeMap()
	rp.judgeLatency()
}
