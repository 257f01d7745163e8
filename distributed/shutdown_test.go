package distributed_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/distributed"
	"github.com/procpool/procpool/distributed/embedded"
	"github.com/procpool/procpool/internal/proctest"
)

// consumerPending returns the node consumer's unacknowledged jobs and the
// job stream's messages.
func consumerPending(t *testing.T, url string, cfg distributed.Config, jobType string) (ackPending int, msgs uint64) {
	t.Helper()
	js := newJetStream(t, connect(t, url))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.Consumer(ctx, cfg.JobStream(jobType), distributed.NodeConsumer)
	if err != nil {
		t.Fatal(err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, cfg.JobStream(jobType))
	if err != nil {
		t.Fatal(err)
	}
	si, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ci.NumAckPending, si.State.Msgs
}

// TestGracefulShutdown: Shutdown stops pulling, lets the jobs the node
// holds finish, answers and acknowledges them before it returns; a job
// submitted meanwhile stays in its stream for another node.
func TestGracefulShutdown(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, embedded.Config{})
	cfg := distributed.Config{}
	ln := startLocalNode(t, srv.URL(), "n1", cfg, procpool.JobType{Name: "sleep", MinWorkers: 2, MaxWorkers: 2})
	p := newProducer(t, connect(t, srv.URL()), cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var held []*distributed.Job
	for range 2 {
		j, err := p.Submit(ctx, "sleep", procpool.Blob, []byte("1500"))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, j)
	}
	if !proctest.WaitFor(20*time.Second, func() bool { return ln.node.Stats()[0].Held == 2 }) {
		t.Fatalf("node stats %+v", ln.node.Stats()[0])
	}
	shut := make(chan error, 1)
	go func() { shut <- ln.node.Shutdown(ctx) }()
	time.Sleep(100 * time.Millisecond)
	late, err := p.Submit(ctx, "sleep", procpool.Blob, []byte("10"))
	if err != nil {
		t.Fatal(err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for i, j := range held {
		select {
		case <-j.Done():
		case <-time.After(10 * time.Second):
			t.Fatalf("held job %d not answered after Shutdown returned", i)
		}
		if res, err := j.Result(); err != nil || string(res) != "slept" || j.Deliveries() != 1 {
			t.Errorf("held job %d: %q, %v, delivery %d", i, res, err, j.Deliveries())
		}
	}
	if ack, msgs := consumerPending(t, srv.URL(), cfg, "sleep"); ack != 0 || msgs != 1 {
		t.Errorf("after Shutdown: %d jobs unacknowledged, %d in the stream; want 0 and the late one", ack, msgs)
	}
	select {
	case <-late.Done():
		t.Fatal("the job submitted during Shutdown ran on the stopping node")
	default:
	}
	if st := ln.stats(t); st.Succeeded != 2 || st.Held != 0 {
		t.Errorf("node stats %+v", st)
	}
	// The router was shut down with the node.
	if _, err := ln.sys.Call(ctx, "sleep", []byte("1")); !errors.Is(err, procpool.ErrShuttingDown) {
		t.Errorf("router after the node's Shutdown: %v, want ErrShuttingDown", err)
	}
	// Another node takes the late job.
	startLocalNode(t, srv.URL(), "n2", cfg, procpool.JobType{Name: "sleep", MaxWorkers: 1})
	if res, err := late.Wait(ctx); err != nil || string(res) != "slept" || late.Node() != "n2" {
		t.Errorf("late job: %q, %v on %q", res, err, late.Node())
	}
}

// TestHardShutdownHandsJobsBack: when Shutdown's context ends before the
// held jobs finish, they are cancelled and handed back at once, so that
// another node runs them without waiting out the ack wait (30s here).
func TestHardShutdownHandsJobsBack(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, embedded.Config{})
	cfg := distributed.Config{}
	ln := startLocalNode(t, srv.URL(), "n1", cfg, procpool.JobType{Name: "sleep", MinWorkers: 2, MaxWorkers: 2})
	p := newProducer(t, connect(t, srv.URL()), cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var jobs []*distributed.Job
	for range 2 {
		j, err := p.Submit(ctx, "sleep", procpool.Blob, []byte("3000"))
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	if !proctest.WaitFor(20*time.Second, func() bool { return ln.node.Stats()[0].Held == 2 }) {
		t.Fatalf("node stats %+v", ln.node.Stats()[0])
	}
	sctx, scancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer scancel()
	if err := ln.node.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want DeadlineExceeded", err)
	}
	if st := ln.stats(t); st.Abandoned != 2 || st.Succeeded != 0 {
		t.Errorf("node stats %+v", st)
	}
	startLocalNode(t, srv.URL(), "n2", cfg, procpool.JobType{Name: "sleep", MinWorkers: 2, MaxWorkers: 2})
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second) // well under the 30s ack wait
	defer wcancel()
	for i, j := range jobs {
		res, err := j.Wait(wctx)
		if err != nil || string(res) != "slept" || j.Node() != "n2" || j.Deliveries() != 2 {
			t.Errorf("job %d: %q, %v on %q, delivery %d", i, res, err, j.Node(), j.Deliveries())
		}
	}
}
