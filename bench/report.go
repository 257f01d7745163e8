package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/procpool/procpool"
)

// table is one table of the report, printed aligned on the terminal and
// as a markdown table in the docs.
type table struct {
	Title  string
	Intro  string // a sentence above the table (docs only)
	Header []string
	Rows   [][]string
	Notes  []string // lines below the table
}

// target is one of procpool's performance targets, judged on this run.
type target struct {
	Name string
	Want string
	Got  string
	Met  bool
	Why  []string // where the time likely goes, when missed (and context)
}

// chart is an SVG file written next to benchmarks.md.
type chart struct {
	File, Alt, SVG string
	After          string // the title of the table it follows
}

// report is everything printed and written about a run.
type report struct {
	res     *results
	tables  []*table
	targets []target
	charts  []chart
}

// buildReport turns the samples into tables, targets and charts.
func buildReport(res *results) *report {
	rp := &report{res: res}
	rp.startupTable()
	for _, w := range res.Workloads {
		rp.throughputTable(w)
	}
	rp.cpuTable()
	rp.frameworkTable()
	rp.peerTable()
	rp.sdkTable()
	rp.ratioTable()
	rp.scalingTable()
	rp.manyTables()
	rp.judge()
	rp.judgeSDK()
	rp.judgeMany()
	rp.startupChart()
	rp.throughputChart()
	rp.charts = append(rp.charts, chart{
		File: "benchmarks-scaling.svg", Alt: "auto-scaling timeline", After: scalingTitle,
		SVG: timelineChart(fmt.Sprintf("Auto-scaling: min %d, max %d, idle %v; %d x 1 MiB, pause %v, %d more",
			res.Scaling.Config.Min, res.Scaling.Config.Max, res.Scaling.Config.Idle, res.Scaling.Config.Burst,
			res.Scaling.Config.Pause, res.Scaling.Config.Burst), res.Scaling),
	})
	return rp
}

// startup returns the rates of a start-up level.
func (rp *report) startup(key string) []float64 { return rates(rp.res.Startup[key]) }

// tput returns the rates of a throughput measurement.
func (rp *report) tput(wkey string, kind procpool.PayloadKind, mode string) []float64 {
	return rates(rp.res.Throughput[wkey+"/"+kindName(kind)+"/"+mode])
}

// peer returns the rates of a peer measurement.
func (rp *report) peer(wkey string, kind procpool.PayloadKind) []float64 {
	return rates(rp.res.Peer[wkey+"/"+kindName(kind)])
}

// bigPool is the key of the largest pool (2 x cores workers).
func (rp *report) bigPool() string {
	best, n := "", 0
	for _, m := range rp.res.Modes {
		if m.Kind == pool && m.Workers > n {
			best, n = m.Key, m.Workers
		}
	}
	return best
}

// print writes the tables and the targets to the terminal.
func (rp *report) print(w io.Writer) {
	for _, t := range rp.tables {
		fmt.Fprintf(w, "\n%s\n", t.Title)
		printAligned(w, t.Header, t.Rows)
		for _, n := range t.Notes {
			fmt.Fprintf(w, "  · %s\n", n)
		}
	}
	fmt.Fprintf(w, "\nTargets\n")
	for _, tg := range rp.targets {
		verdict := "MET    "
		if !tg.Met {
			verdict = "NOT MET"
		}
		fmt.Fprintf(w, "  [%s] %s: want %s, got %s\n", verdict, tg.Name, tg.Want, tg.Got)
		for _, why := range tg.Why {
			fmt.Fprintf(w, "            - %s\n", why)
		}
	}
	fmt.Fprintf(w, "\nMedians of %d run(s) with min–max; this is a noisy shared %d-core machine (load %s at the start, %s at the end): "+
		"compare ratios within a run, not absolute figures across runs.\n",
		rp.res.Cfg.Runs, rp.res.Cores, rp.res.Machine.LoadStart, rp.res.Machine.LoadEnd)
}

// printAligned prints a table with padded columns; numeric-looking columns
// are right-aligned.
// write rewrites benchmarks.md and the charts in dir.
func (rp *report) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, c := range rp.charts {
		if err := os.WriteFile(filepath.Join(dir, c.File), []byte(c.SVG), 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(dir, "benchmarks.md"), []byte(rp.markdown()), 0o644)
}

// markdown renders docs/benchmarks.md.
