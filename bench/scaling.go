package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/procpool/procpool"
)

// scalingConfig is the article's auto-scaling scenario: a pool of Min to
// Max workers with an idle timeout, a burst of 1 MiB jobs, a pause, and a
// second burst; the router's Stats are sampled Every so often.
type scalingConfig struct {
	Min, Max    int
	Idle, Pause time.Duration
	Burst       int
	Every       time.Duration
}

// scalingPoint is one sample of the router's Stats.
type scalingPoint struct {
	At                                      time.Duration
	Workers, Starting, Busy, Idle, Stopping int
	Queued, Running                         int
}

// scalingMark is a moment of the scenario, for the chart.
type scalingMark struct {
	At    time.Duration
	Label string
}

// scalingResult is the timeline of the scenario and what it shows.
type scalingResult struct {
	Config scalingConfig
	Points []scalingPoint
	Marks  []scalingMark
	// Peak1 and Peak2 are the most live workers during each burst's part
	// of the timeline; AfterPause those alive just before the second
	// burst; Final those alive after the shutdown (0 by Shutdown's
	// contract, checked by the reap).
	Peak1, AfterPause, Peak2, Final int
	// PassivatedInPause is the count of idle workers retired before the
	// second burst; Spawns and Passivations are the totals.
	PassivatedInPause    uint64
	Spawns, Passivations uint64
	// Burst1 and Burst2 are the times to finish each burst.
	Burst1, Burst2 time.Duration
}

// runScaling plays the scenario once: min workers ready, burst of BLOB
// 1 MiB SHA-512 jobs submitted at once (Submit, then Wait on each), pause,
// second burst, shutdown. Every result is checked.
func runScaling(ctx context.Context, e *env) (*scalingResult, error) {
	c := e.cfg.Scaling
	w := e.workload("1MiB")
	sys, r, err := startPool(ctx, e, procpool.JobType{
		Name: "sha512", Command: e.bin, MinWorkers: c.Min, MaxWorkers: c.Max, IdleTimeout: c.Idle,
	})
	if err != nil {
		return nil, failf("scaling", err)
	}
	defer shutdown(sys)
	ctx, cancel := context.WithTimeout(ctx, watchdog+c.Pause)
	defer cancel()

	res := &scalingResult{Config: c}
	t0 := time.Now()
	var mu sync.Mutex
	var lastStats *procpool.Stats
	sample := func() {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := r.Stats(sctx)
		cancel()
		if err != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		lastStats = st
		res.Points = append(res.Points, scalingPoint{
			At: time.Since(t0), Workers: st.Workers(), Starting: st.Starting, Busy: st.Busy,
			Idle: st.Idle, Stopping: st.Stopping, Queued: st.Queued, Running: st.Running,
		})
	}
	mark := func(label string) {
		mu.Lock()
		res.Marks = append(res.Marks, scalingMark{At: time.Since(t0), Label: label})
		mu.Unlock()
	}
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(c.Every)
		defer t.Stop()
		sample()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				sample()
			}
		}
	}()
	stopSampling := func() {
		if stop != nil {
			close(stop)
			<-sampled
			stop = nil
		}
	}
	defer stopSampling()

	burst := func(n int, label string) (time.Duration, error) {
		mark(label)
		start := time.Now()
		jobs := make([]*procpool.Job, c.Burst)
		for i := range jobs {
			j, err := r.Submit(ctx, procpool.Blob, w.payload(procpool.Blob, i))
			if err != nil {
				return 0, err
			}
			jobs[i] = j
		}
		for i, j := range jobs {
			out, err := j.Wait(ctx)
			if err != nil {
				return 0, poolError(ctx, r, err)
			}
			if err := w.check(procpool.Blob, i, out); err != nil {
				return 0, err
			}
		}
		mark(fmt.Sprintf("burst %d done", n))
		return time.Since(start), nil
	}
	if res.Burst1, err = burst(1, fmt.Sprintf("%d jobs", c.Burst)); err != nil {
		return nil, failf("scaling, first burst", err)
	}
	time.Sleep(c.Pause)
	sample()
	mu.Lock()
	res.AfterPause = lastStats.Workers()
	res.PassivatedInPause = lastStats.Passivations
	mu.Unlock()
	second := time.Since(t0)
	if res.Burst2, err = burst(2, fmt.Sprintf("%d more", c.Burst)); err != nil {
		return nil, failf("scaling, second burst", err)
	}
	time.Sleep(2 * c.Every)
	sample()
	stopSampling()
	res.Spawns, res.Passivations = lastStats.Spawns, lastStats.Passivations

	mark("stop")
	if err := shutdown(sys); err != nil {
		return nil, failf("scaling", err)
	}
	end := time.Since(t0)
	res.Final = len(childProcesses())
	res.Marks = append(res.Marks, scalingMark{At: end, Label: "stopped"})
	res.Points = append(res.Points, scalingPoint{At: end, Workers: res.Final})

	for _, p := range res.Points {
		if p.At < second {
			res.Peak1 = max(res.Peak1, p.Workers)
		} else {
			res.Peak2 = max(res.Peak2, p.Workers)
		}
	}
	if res.Final != 0 {
		return nil, fmt.Errorf("scaling: %d child processes left after Shutdown: %v", res.Final, childProcesses())
	}
	for _, p := range res.Points {
		if p.Workers > c.Max {
			return nil, fmt.Errorf("scaling: %d workers at %v, more than the max %d", p.Workers, p.At, c.Max)
		}
	}
	return res, nil
}

// matchesArticle reports whether the timeline shows what the article's
// demo shows: the pool grows to max in each burst, shrinks back to min in
// the pause, and ends with no worker.
func (s *scalingResult) matchesArticle() bool {
	c := s.Config
	return s.Peak1 == c.Max && s.AfterPause == c.Min && s.PassivatedInPause == uint64(c.Max-c.Min) &&
		s.Peak2 == c.Max && s.Final == 0
}

// childProcesses returns the pids of this process's live children, from
// /proc (zombies included: a worker not reaped is a leak too).
func childProcesses() []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	self := os.Getpid()
	var pids []int
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // gone
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		fields := bytes.Fields(b[i+1:])
		if i < 0 || len(fields) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(string(fields[1])); ppid == self {
			dir := filepath.Dir(f)
			if cmd, _ := os.ReadFile(dir + "/cmdline"); string(bytes.TrimRight(cmd, "\x00")) == "procpool-init" {
				continue // a PID namespace's init (childproc's containment), not a worker
			}
			pid, _ := strconv.Atoi(filepath.Base(dir))
			pids = append(pids, pid)
		}
	}
	return pids
}
