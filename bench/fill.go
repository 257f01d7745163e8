package main

import (
	"context"
	"crypto/sha512"
	"fmt"

	"github.com/procpool/procpool"
)

// The no-copy payload experiment (issue 13): SHA-512 over 1 MiB BLOBs
// whose payload each job builds before it is hashed, so that every mode
// pays for making its payload once:
//
//	inproc    one goroutine per core: copy the job's 1 MiB into a buffer of
//	          the goroutine's own, then hash it
//	callfill  a pool of 2, 16 callers: Router.CallFill builds the payload
//	          (the same copy) straight in the worker's shared memory region,
//	          and the worker hashes it there
//	call      the same pool: the caller builds the payload in a buffer of
//	          its own, then Router.Call copies it into the region
//	prebuilt  the same pool: Router.Call with a payload built before the
//	          clock started (the throughput tables' 1 MiB BLOB row), which
//	          builds nothing per job
//
// Building is a copy from the job's template, the cheapest way to make a
// payload: a slower one would dilute the difference between the modes.

// fillModes are the no-copy experiment's modes, in table order.
var fillModes = []struct{ Key, Name string }{
	{"inproc", "in-process, 1 goroutine per core: build in a buffer, hash"},
	{"callfill", "pool of 2, CallFill: build in the worker's region, worker hashes"},
	{"call", "pool of 2, Call: build in the caller's buffer, Call copies it to the region"},
	{"prebuilt", "pool of 2, Call with a payload built once, before the clock (builds nothing)"},
}

// fillKey names a no-copy measurement.
func fillKey(mode string) string { return "fill/" + mode }

// runFill measures every mode of the no-copy experiment once and appends
// the samples to res.Map.
func runFill(ctx context.Context, e *env, res *results) error {
	w := e.workload("1MiB")
	n := e.cfg.JobsMiB
	for _, m := range fillModes {
		var s sample
		var err error
		if m.Key == "inproc" {
			s, err = measureFillInProcess(ctx, e, w, n)
		} else {
			s, err = measureFillPool(ctx, e, w, m.Key, n)
		}
		if err != nil {
			return failf("no-copy payload, "+m.Name, err)
		}
		res.Map[fillKey(m.Key)] = append(res.Map[fillKey(m.Key)], s)
	}
	return nil
}

// buffers is a free list of payload buffers, one per caller.
type buffers chan []byte

func newBuffers(n, size int) buffers {
	b := make(buffers, n)
	for range n {
		b <- make([]byte, size)
	}
	return b
}

// measureFillInProcess builds and hashes n payloads on one goroutine per
// core.
func measureFillInProcess(ctx context.Context, e *env, w *workload, n int) (sample, error) {
	bufs := newBuffers(e.cores, w.Size)
	collectGarbage()
	sw := startStopwatch()
	err := runJobs(ctx, n, e.cores, func(_ context.Context, i int) error {
		buf := <-bufs
		defer func() { bufs <- buf }()
		copy(buf, w.bufs[seed(i)])
		d := sha512.Sum512(buf)
		return w.checkDigest(i, d[:])
	})
	return sw.stop(n), err
}

// measureFillPool runs n jobs of w through a fresh pool of 2, InFlight 8,
// 16 callers, building each payload as mode says (see the file's comment).
func measureFillPool(ctx context.Context, e *env, w *workload, mode string, n int) (sample, error) {
	const workers = 2
	jt := procpool.JobType{Name: "sha512", Command: e.bin,
		MinWorkers: workers, MaxWorkers: workers, IdleTimeout: -1, InFlight: pipeline}
	sys, r, err := startPool(ctx, e, jt)
	if err != nil {
		return sample{}, err
	}
	defer shutdown(sys)
	ctx, cancel := context.WithTimeout(ctx, watchdog)
	defer cancel()
	callers := pipeline * workers
	bufs := newBuffers(callers, w.Size)
	job := func(ctx context.Context, i int) error {
		var d []byte
		var err error
		switch mode {
		case "callfill":
			d, err = r.CallFill(ctx, procpool.Blob, w.Size, func(p []byte) { copy(p, w.bufs[seed(i)]) })
		case "call":
			buf := <-bufs
			copy(buf, w.bufs[seed(i)])
			d, err = r.Call(ctx, procpool.Blob, buf)
			bufs <- buf
		case "prebuilt":
			d, err = r.Call(ctx, procpool.Blob, w.bufs[seed(i)])
		default:
			return fmt.Errorf("no-copy experiment: no mode %q", mode)
		}
		if err != nil {
			return err
		}
		return w.checkDigest(i, d)
	}
	if err := runJobs(ctx, 2*callers, callers, job); err != nil { // warm up, as measurePool does
		return sample{}, poolError(ctx, r, err)
	}
	collectGarbage()
	sw := startStopwatch()
	if err := runJobs(ctx, n, callers, job); err != nil {
		return sample{}, poolError(ctx, r, err)
	}
	if err := shutdown(sys); err != nil {
		return sample{}, err
	}
	return sw.stop(n), nil
}
