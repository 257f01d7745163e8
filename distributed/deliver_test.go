package distributed_test

import (
	"bytes"
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/distributed"
	"github.com/procpool/procpool/distributed/embedded"
	"github.com/procpool/procpool/internal/proctest"
	"github.com/procpool/procpool/supervisor"
)

// deadLetters reads the dead letters of a job type.
func deadLetters(t *testing.T, js jetstream.JetStream, cfg distributed.Config, jobType string) []*distributed.DeadLetter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dls, err := distributed.ReadDeadLetters(ctx, js, cfg, jobType, 0)
	if err != nil {
		t.Fatal(err)
	}
	return dls
}

// TestPoisonJobDeadLettered: a job that kills every worker it runs on is
// quarantined by the node's pool (ErrPoisonJob), moved to the dead-letter
// subject with that error at its first delivery, and answered with it;
// the jobs around it succeed.
func TestPoisonJobDeadLettered(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, embedded.Config{})
	cfg := distributed.Config{}
	ln := startLocalNode(t, srv.URL(), "n1", cfg, procpool.JobType{
		Name: "mixed", MinWorkers: 2, MaxWorkers: 2,
		Policy: supervisor.Policy{Jobs: supervisor.JobFailure{MaxAttempts: 3, PoisonAfter: 2}},
	})
	nc := connect(t, srv.URL())
	p := newProducer(t, nc, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var jobs []*distributed.Job
	var poison *distributed.Job
	for i := range 41 {
		payload := fmt.Appendf(nil, "sha512:%d", i)
		if i == 20 {
			payload = []byte("exit:3")
		}
		j, err := p.Submit(ctx, "mixed", procpool.Blob, payload)
		if err != nil {
			t.Fatal(err)
		}
		if i == 20 {
			poison = j
		}
		jobs = append(jobs, j)
	}
	for i, j := range jobs {
		res, err := j.Wait(ctx)
		if j == poison {
			var je *distributed.JobError
			if !errors.Is(err, procpool.ErrPoisonJob) || !errors.Is(err, distributed.ErrDeadLetter) || !errors.As(err, &je) {
				t.Fatalf("poison job: %v, want ErrPoisonJob and ErrDeadLetter in a *JobError", err)
			}
			if je.Node != "n1" || je.Deliveries != 1 || !je.DeadLetter {
				t.Errorf("poison job's error: %+v", je)
			}
			continue
		}
		want := sha512.Sum512(fmt.Appendf(nil, "%d", i))
		if err != nil || !bytes.Equal(res, want[:]) {
			t.Errorf("job %d: %x, %v", i, res, err)
		}
	}
	dls := deadLetters(t, newJetStream(t, nc), cfg, "mixed")
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	dl := dls[0]
	if dl.JobID != poison.ID || dl.JobType != "mixed" || string(dl.Payload) != "exit:3" || dl.Node != "n1" ||
		dl.Deliveries != 1 || dl.Kind != procpool.Blob || !errors.Is(dl.Err, procpool.ErrPoisonJob) {
		t.Errorf("dead letter %+v", dl)
	}
	t.Logf("dead letter's error: %v", dl.Err)
	if st := ln.stats(t); st.DeadLettered != 1 || st.Succeeded != 40 || st.Retried != 0 {
		t.Errorf("node stats %+v", st)
	}
	checkDrained(t, newJetStream(t, nc), cfg, "mixed")
}

// TestRetryableFailureRedeliveredThenDeadLettered: a job whose worker dies
// (no retries in the pool) is handed back and redelivered after the job
// type's backoff delay, and dead-lettered with its last error at its last
// delivery.
func TestRetryableFailureRedeliveredThenDeadLettered(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, embedded.Config{})
	cfg := distributed.Config{MaxDeliver: 3}
	backoff := supervisor.Backoff{Initial: 200 * time.Millisecond, Max: time.Second, Multiplier: 2} // no jitter
	ln := startLocalNode(t, srv.URL(), "n1", cfg, procpool.JobType{
		Name: "mixed", MinWorkers: 1, MaxWorkers: 1, Policy: supervisor.Policy{Backoff: backoff},
	})
	nc := connect(t, srv.URL())
	p := newProducer(t, nc, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	start := time.Now()
	_, err := p.Call(ctx, "mixed", procpool.Blob, []byte("exit:7"))
	took := time.Since(start)
	var je *distributed.JobError
	if !errors.Is(err, procpool.ErrWorkerCrashed) || !errors.Is(err, distributed.ErrDeadLetter) || !errors.As(err, &je) || je.Deliveries != 3 {
		t.Fatalf("got %v, want ErrWorkerCrashed and ErrDeadLetter at delivery 3", err)
	}
	// Two hand-backs, after 200ms and 400ms: a lower bound, which load
	// cannot break.
	if took < 600*time.Millisecond {
		t.Errorf("dead-lettered %v after submission; the redeliveries should have waited 200ms and 400ms", took)
	}
	st := ln.stats(t)
	if st.Received != 3 || st.Redelivered != 2 || st.Retried != 2 || st.DeadLettered != 1 {
		t.Errorf("node stats %+v", st)
	}
	dls := deadLetters(t, newJetStream(t, nc), cfg, "mixed")
	if len(dls) != 1 || !errors.Is(dls[0].Err, procpool.ErrWorkerCrashed) || dls[0].Deliveries != 3 {
		t.Fatalf("dead letters %+v", dls)
	}
	t.Logf("after %v: %v", took, err)

	// The pool still works.
	res, err := p.Call(ctx, "mixed", procpool.Blob, []byte("echo:alive"))
	if err != nil || string(res) != "alive" {
		t.Fatalf("after the dead letter: %q, %v", res, err)
	}
}

// TestDeliveredTooOftenDeadLettered: a job whose earlier deliveries went to
// nodes that never answered (here: a raw consumer that takes it and hands
// it back) is dead-lettered with ErrNodeLost when delivered once more than
// MaxDeliver, without running.
func TestDeliveredTooOftenDeadLettered(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, embedded.Config{})
	cfg := distributed.Config{MaxDeliver: 2}
	nc := connect(t, srv.URL())
	js := newJetStream(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := distributed.Setup(ctx, js, cfg, "echo"); err != nil {
		t.Fatal(err)
	}
	p := newProducer(t, nc, cfg)
	j, err := p.Submit(ctx, "echo", procpool.Blob, []byte("never run"))
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, cfg.JobStream("echo"), distributed.NodeConsumer)
	if err != nil {
		t.Fatal(err)
	}
	for range cfg.MaxDeliver {
		m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Nak(); err != nil {
			t.Fatal(err)
		}
	}
	ln := startLocalNode(t, srv.URL(), "n1", cfg, procpool.JobType{Name: "echo", MaxWorkers: 1})
	_, err = j.Wait(ctx)
	if !errors.Is(err, distributed.ErrNodeLost) || !errors.Is(err, distributed.ErrDeadLetter) {
		t.Fatalf("got %v, want ErrNodeLost and ErrDeadLetter", err)
	}
	if st := ln.stats(t); st.Succeeded != 0 || st.DeadLettered != 1 || st.Received != 1 {
		t.Errorf("node stats %+v", st)
	}
	dls := deadLetters(t, js, cfg, "echo")
	if len(dls) != 1 || string(dls[0].Payload) != "never run" || dls[0].Deliveries != 3 || !errors.Is(dls[0].Err, distributed.ErrNodeLost) {
		t.Fatalf("dead letters %+v", dls)
	}
}

// TestLongJobKeptInProgress: a job that runs several ack waits is kept
// from redelivery by in-progress acks, although the node has a free
// worker that a redelivery would reach.
func TestLongJobKeptInProgress(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, embedded.Config{})
	cfg := distributed.Config{AckWait: time.Second}
	ln := startLocalNode(t, srv.URL(), "n1", cfg, procpool.JobType{Name: "sleep", MinWorkers: 2, MaxWorkers: 2})
	p := newProducer(t, connect(t, srv.URL()), cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	j, err := p.Submit(ctx, "sleep", procpool.Blob, []byte("3500"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := j.Wait(ctx)
	if err != nil || string(res) != "slept" {
		t.Fatalf("%q, %v", res, err)
	}
	if j.Deliveries() != 1 {
		t.Errorf("result of delivery %d, want 1", j.Deliveries())
	}
	if st := ln.stats(t); st.Received != 1 || st.Redelivered != 0 || st.Succeeded != 1 {
		t.Errorf("node stats %+v: the job was redelivered while it ran", st)
	}
}

// TestDeadlineTravels: a job whose caller's deadline passed before any node
// took it is answered as cancelled, not run.
func TestDeadlineTravels(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, embedded.Config{})
	cfg := distributed.Config{}
	nc := connect(t, srv.URL())
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	if err := distributed.Setup(sctx, newJetStream(t, nc), cfg, "sleep"); err != nil {
		t.Fatal(err)
	}
	p := newProducer(t, nc, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := p.Call(ctx, "sleep", procpool.Blob, []byte("10"))
	if !errors.Is(err, procpool.ErrCancelled) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want ErrCancelled and DeadlineExceeded", err)
	}
	ln := startLocalNode(t, srv.URL(), "n1", cfg, procpool.JobType{Name: "sleep", MaxWorkers: 1})
	if !proctest.WaitFor(30*time.Second, func() bool { return ln.node.Stats()[0].Failed == 1 }) {
		t.Fatalf("node stats %+v", ln.node.Stats()[0])
	}
	sys, err := ln.sys.Stats(context.Background(), "sleep")
	if err != nil {
		t.Fatal(err)
	}
	if sys.Accepted != 0 {
		t.Errorf("the pool accepted %d jobs; the expired one should not have run", sys.Accepted)
	}
	if !proctest.WaitFor(10*time.Second, func() bool { return p.Stats().Duplicates == 1 }) {
		t.Errorf("producer stats %+v: the late answer should have been discarded", p.Stats())
	}
}

// TestRouterStoppedUnderNode: a node whose router is shut down behind its
// back stops pulling jobs of the type and hands back what it took, so the
// other node runs everything and nothing is dead-lettered.
func TestRouterStoppedUnderNode(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, embedded.Config{})
	cfg := distributed.Config{MaxDeliver: 2}
	a := startLocalNode(t, srv.URL(), "a", cfg, procpool.JobType{Name: "sleep", MinWorkers: 2, MaxWorkers: 2})
	startLocalNode(t, srv.URL(), "b", cfg, procpool.JobType{Name: "sleep", MinWorkers: 2, MaxWorkers: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := a.sys.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	p := newProducer(t, connect(t, srv.URL()), cfg)
	out := (&jobRun{t: t, p: p, n: 60, callers: 8, jobType: "sleep",
		payload: func(int) []byte { return []byte("5") },
		check: func(_ int, res []byte) error {
			if string(res) != "slept" {
				return errors.New(string(res))
			}
			return nil
		}}).run(ctx)
	perNode, _ := checkOutcomes(t, out)
	if perNode["b"] != 60 {
		t.Errorf("jobs per node:%s; want all on b", summary(perNode))
	}
	if st := a.stats(t); st.Abandoned > uint64(st.Capacity) || st.Succeeded != 0 {
		t.Errorf("node a: %+v; it should have handed back at most what it held once", st)
	}
}

// TestUnavailableRouterPauses: a node whose pool cannot start workers
// (ErrUnavailable) stops pulling jobs while it is unavailable, instead of
// taking and handing back jobs until their deliveries run out: with
// MaxDeliver 2, no job is dead-lettered and the healthy node runs them.
func TestUnavailableRouterPauses(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, embedded.Config{})
	cfg := distributed.Config{MaxDeliver: 2}
	broken := startLocalNode(t, srv.URL(), "broken", cfg, procpool.JobType{
		Name: "sleep", MaxWorkers: 2, Env: []string{"TESTWORKER_EXIT_AT_START=3"},
		Policy: supervisor.Policy{Backoff: supervisor.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}},
	})
	startLocalNode(t, srv.URL(), "healthy", cfg, procpool.JobType{Name: "sleep", MinWorkers: 2, MaxWorkers: 2})
	p := newProducer(t, connect(t, srv.URL()), cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out := (&jobRun{t: t, p: p, n: 120, callers: 8, jobType: "sleep",
		payload: func(int) []byte { return []byte("30") },
		check: func(_ int, res []byte) error {
			if string(res) != "slept" {
				return errors.New(string(res))
			}
			return nil
		}}).run(ctx)
	perNode, _ := checkOutcomes(t, out)
	st := broken.stats(t)
	t.Logf("jobs per node:%s; broken node %+v", summary(perNode), st)
	if perNode["healthy"] != 120 || st.DeadLettered != 0 {
		t.Errorf("want every job on the healthy node and none dead-lettered")
	}
}
