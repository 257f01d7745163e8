package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/childproc"
	"github.com/procpool/procpool/codec"
)

// bareWorker is one worker process driven by hand: childproc for the
// process, codec for the frames, one job in flight, no actors. It is the
// floor the framework's per-job cost is measured against, and the
// process-per-job level of the start-up experiment.
type bareWorker struct {
	proc *childproc.Process
	w    *codec.Writer
	r    *codec.Reader
	req  codec.Message
	resp codec.Message
	id   uint64
}

// startBare starts the worker process; it does not shake hands.
func startBare(e *env) (*bareWorker, error) {
	p, err := childproc.Start(childproc.Spec{Path: e.bin, Name: "bare", Logger: e.cfg.Logger})
	if err != nil {
		return nil, err
	}
	// The watchdog: a worker that stops answering fails the reads and
	// writes instead of hanging the bench.
	return bareFor(p), nil
}

// newBare wraps a started worker process.
func newBare(p *childproc.Process) *bareWorker {
	return &bareWorker{
		proc: p,
		w:    codec.NewWriter(p.Input(), 0),
		r:    codec.NewReader(p.Output(), 0),
	}
}

// handshake sends hello and waits for ready.
func (b *bareWorker) handshake() error {
	if err := b.w.Write(&codec.Message{Kind: codec.KindHello, Version: codec.Version, MaxFrame: codec.DefaultMaxFrame}); err != nil {
		return fmt.Errorf("bare worker: hello: %w", err)
	}
	if err := b.r.Read(&b.resp); err != nil {
		return fmt.Errorf("bare worker: ready: %w", err)
	}
	if b.resp.Kind != codec.KindReady {
		return fmt.Errorf("bare worker: want ready, got %s", b.resp.Kind)
	}
	b.w.SetMaxFrame(int(b.resp.MaxFrame))
	return nil
}

// call runs one job and returns its result, which aliases the reader's
// buffer until the next call.
func (b *bareWorker) call(jobType string, kind procpool.PayloadKind, payload []byte) ([]byte, error) {
	b.id++
	b.req = codec.Message{Kind: codec.KindRequest, ID: b.id, JobType: jobType, PayloadKind: kind, Payload: payload}
	if err := b.w.Write(&b.req); err != nil {
		return nil, fmt.Errorf("bare worker: request: %w", err)
	}
	if err := b.r.Read(&b.resp); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, stuck("the bare loop", fmt.Errorf("no response to job %d", b.id))
		}
		return nil, fmt.Errorf("bare worker: response: %w", err)
	}
	switch {
	case b.resp.Kind != codec.KindResponse:
		return nil, fmt.Errorf("bare worker: want a response, got %s", b.resp.Kind)
	case b.resp.ID != b.id:
		return nil, fmt.Errorf("bare worker: response to job %d, want %d", b.resp.ID, b.id)
	case b.resp.ErrCode != "":
		return nil, fmt.Errorf("bare worker: job failed: %s: %s", b.resp.ErrCode, b.resp.ErrMessage)
	}
	return b.resp.Payload, nil
}

// job runs job i of a workload the way the façade does: a VALUE argument
// is encoded per call and its result decoded.
func (b *bareWorker) job(w *workload, kind procpool.PayloadKind, i int) error {
	payload := w.bufs[seed(i)]
	if kind == procpool.Value {
		var err error
		if payload, err = msgpack.Marshal(sha512Value{Size: w.Size, Seed: byte(seed(i))}); err != nil {
			return err
		}
	}
	res, err := b.call(w.jobType(kind), kind, payload)
	if err != nil {
		return err
	}
	return w.check(kind, i, res)
}

// stop closes the worker's input (it exits on end of input) and waits for
// the process to be reaped; it fails unless the worker exited cleanly.
func (b *bareWorker) stop() error {
	info := b.proc.Stop(context.Background(), 2*time.Second)
	if !info.Success() {
		return fmt.Errorf("bare worker: %s", info)
	}
	return nil
}

// close kills the worker if it is still running and waits for the reap; a
// no-op after stop.
func (b *bareWorker) close() {
	_ = b.proc.Kill()
	<-b.proc.Done()
}

// measureBare runs n jobs through a bare worker, one in flight; the
// elapsed time includes the worker's stop, as the pools' includes theirs.
func measureBare(e *env, w *workload, kind procpool.PayloadKind, n int) (sample, error) {
	b, err := startBare(e)
	if err != nil {
		return sample{}, err
	}
	defer b.close()
	if err := b.handshake(); err != nil {
		return sample{}, err
	}
	for i := range 4 { // warm up
		if err := b.job(w, kind, i); err != nil {
			return sample{}, err
		}
	}
	collectGarbage()
	sw := startStopwatch()
	for i := range n {
		if err := b.job(w, kind, i); err != nil {
			return sample{}, err
		}
	}
	if err := b.stop(); err != nil {
		return sample{}, err
	}
	return sw.stop(n), nil
}
