package distributed_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/distributed"
	"github.com/procpool/procpool/distributed/embedded"
)

func TestRoundTrip(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, embedded.Config{})
	startLocalNode(t, srv.URL(), "n1", distributed.Config{}, procpool.JobType{Name: "sha512", MinWorkers: 2, MaxWorkers: 2})
	p := newProducer(t, connect(t, srv.URL()), distributed.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 500
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += 32 {
				res, err := p.Call(ctx, "sha512", procpool.Blob, payloadOf(i))
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(res, digestOf(i)) {
					t.Errorf("job %d: wrong digest", i)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d jobs in %v; %+v", n, time.Since(start), p.Stats())
}

// TestNodeConsumerRecreated: a node whose consumer is deleted under it
// creates it again and goes on running jobs.
func TestNodeConsumerRecreated(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, embedded.Config{})
	cfg := distributed.Config{}
	startLocalNode(t, srv.URL(), "n1", cfg, procpool.JobType{Name: "echo", MaxWorkers: 1})
	nc := connect(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := newJetStream(t, nc).DeleteConsumer(ctx, cfg.JobStream("echo"), distributed.NodeConsumer); err != nil {
		t.Fatal(err)
	}
	p := newProducer(t, nc, cfg)
	if res, err := p.Call(ctx, "echo", procpool.Blob, []byte("again")); err != nil || string(res) != "again" {
		t.Fatalf("%q, %v", res, err)
	}
}
