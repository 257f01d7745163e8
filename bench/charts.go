package main

import "github.com/procpool/procpool"

// startupChart draws the start-up rate of each isolation level beside the
// article's, on a log scale.
func (rp *report) startupChart() {
	var ours []bar
	for _, l := range levels() {
		c := colourOurs
		if l.Key == "spawn" {
			c = colourFloor
		}
		ours = append(ours, bar{Label: shortLevel(l.Key), Value: summarize(rp.startup(l.Key)).Median, Colour: c})
	}
	article := []bar{
		{Label: "AppDomain (.NET Fx)", Value: 333.33, Colour: colourArticle},
		{Label: "process, Core host + Fx worker", Value: 31.25, Colour: colourArticle},
		{Label: "process, Core host + Core worker", Value: 23.26, Colour: colourArticle},
		{Label: "process, Fx host + Core worker", Value: 12.66, Colour: colourArticle},
		{Label: "process, Fx host + Fx worker", Value: 11.76, Colour: colourArticle},
	}
	rp.charts = append(rp.charts, chart{
		File: "benchmarks-startup.svg", Alt: "start-up rate per isolation level, log scale", After: startupTitle,
		SVG: logBarChart("Start-up rate per isolation level (start, one job, tear down)", "runs/s",
			[]barGroup{{Title: "procpool (Go, this machine)", Bars: ours}, {Title: "the article (.NET, 12 cores)", Bars: article}},
			[][2]string{{colourOurs, "procpool"}, {colourFloor, "floor: bare spawn of the same binary"}, {colourArticle, "article"}}),
	})
}

// shortLevel labels a start-up level in the chart.
func shortLevel(key string) string {
	return map[string]string{
		"inproc": "in-process call", "goroutine": "goroutine", "spawn": "bare spawn (floor)",
		"childproc": "childproc start+stop", "ready": "worker ready (handshake)", "sandboxed": "sandboxed worker ready",
		"perjob": "process per job", "pool": "pool per job (system+router)",
		"system": "actor system alone",
	}[key]
}

// throughputChart draws the BLOB throughput of every mode at 1 KiB and
// 1 MiB, with the Python peer and the article's figures, on a log scale.
func (rp *report) throughputChart() {
	var groups []barGroup
	for _, wk := range []string{"1KiB", "1MiB"} {
		var bars []bar
		for _, m := range rp.res.Modes {
			c := colourOurs
			if m.Kind == bareLoop {
				c = colourFloor
			}
			bars = append(bars, bar{Label: m.Name, Value: summarize(rp.tput(wk, procpool.Blob, m.Key)).Median, Colour: c})
		}
		if py := rp.peer(wk, procpool.Blob); len(py) > 0 {
			bars = append(bars, bar{Label: "Python ProcessPoolExecutor(2)", Value: summarize(py).Median, Colour: colourPeer})
		}
		art := map[string][]bar{
			"1KiB": {{"article: in-process (Core)", 85470, colourArticle}, {"article: one process (Core)", 25575, colourArticle},
				{"article: pool of 24 (Core)", 58824, colourArticle}},
			"1MiB": {{"article: in-process (Core)", 102.31, colourArticle}, {"article: one process (Core)", 55.13, colourArticle},
				{"article: pool of 24 (Core)", 183.90, colourArticle}},
		}[wk]
		bars = append(bars, art...)
		title := map[string]string{"1KiB": "SHA-512 over 1 KiB, BLOB", "1MiB": "SHA-512 over 1 MiB, BLOB"}[wk]
		groups = append(groups, barGroup{Title: title, Bars: bars})
	}
	rp.charts = append(rp.charts, chart{
		File: "benchmarks-throughput.svg", Alt: "throughput per mode, log scale", After: "2c.",
		SVG: logBarChart("Throughput per mode, BLOB payloads (jobs/s, median)", "jobs/s", groups,
			[][2]string{{colourOurs, "procpool"}, {colourFloor, "bare pipe loop"}, {colourPeer, "Python peer"}, {colourArticle, "article (.NET Core, 12 cores)"}}),
	})
}
