package main

import (
	"fmt"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/procpool/procpool"
)

func printTable(kinds []*kind, stats []*procpool.Stats) {
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(label string, f func(i int, k *kind, s *procpool.Stats) string) {
		fmt.Fprintf(tw, "%s\t", label)
		for i, k := range kinds {
			fmt.Fprintf(tw, "%s\t", f(i, k, stats[i]))
		}
		fmt.Fprintln(tw)
	}
	u := func(f func(s *procpool.Stats) uint64) func(int, *kind, *procpool.Stats) string {
		return func(_ int, _ *kind, s *procpool.Stats) string { return strconv.FormatUint(f(s), 10) }
	}
	row("", func(_ int, k *kind, _ *procpool.Stats) string { return k.name })
	row("accepted", u(func(s *procpool.Stats) uint64 { return s.Accepted }))
	row("succeeded", u(func(s *procpool.Stats) uint64 { return s.Succeeded }))
	row("failed", u(func(s *procpool.Stats) uint64 { return s.Failed }))
	row("cancelled", u(func(s *procpool.Stats) uint64 { return s.Cancelled }))
	row("digests checked", func(_ int, k *kind, _ *procpool.Stats) string { return strconv.FormatInt(k.done.Load(), 10) })
	row("worker spawns", u(func(s *procpool.Stats) uint64 { return s.Spawns }))
	row("worker exits", u(func(s *procpool.Stats) uint64 { return s.Exits }))
	row("crashes", u(func(s *procpool.Stats) uint64 { return s.Crashes }))
	row("passivations", u(func(s *procpool.Stats) uint64 { return s.Passivations }))
	row("via shared memory", u(func(s *procpool.Stats) uint64 { return s.SharedRequests }))
	row("workers now", func(_ int, _ *kind, s *procpool.Stats) string { return strconv.Itoa(s.Workers()) })
	row("latency p50", func(_ int, _ *kind, s *procpool.Stats) string { return fmtDur(s.LatencyP50) })
	row("latency p99", func(_ int, _ *kind, s *procpool.Stats) string { return fmtDur(s.LatencyP99) })
	row("MiB hashed", func(_ int, k *kind, _ *procpool.Stats) string {
		return fmt.Sprintf("%.1f", float64(k.bytes.Load())/(1<<20))
	})
	row("elapsed", func(_ int, k *kind, _ *procpool.Stats) string { return k.elapsed.Round(time.Millisecond).String() })
	row("throughput", func(_ int, k *kind, _ *procpool.Stats) string {
		if k.elapsed <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f jobs/s", float64(k.done.Load())/k.elapsed.Seconds())
	})
	tw.Flush()
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	default:
		return d.Round(time.Microsecond).String()
	}
}
