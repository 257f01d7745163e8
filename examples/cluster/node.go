package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/distributed"
)

// nodeMain is a node: a procpool System with the sha512v job type, bound to
// its stream. It prints "ready" once it pulls jobs, and shuts down
// gracefully on SIGTERM: it stops pulling, finishes and acknowledges the
// jobs it holds, then stops its workers. This is all a node needs.
func nodeMain(args []string) int {
	fs := flag.NewFlagSet("node", flag.ExitOnError)
	url := fs.String("url", "", "NATS server URL")
	name := fs.String("name", "", "node name")
	worker := fs.String("worker", "", "sha512worker binary")
	ackWait := fs.Duration("ack-wait", distributed.DefaultAckWait, "ack wait of the job consumer, if this node creates it")
	_ = fs.Parse(args)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	logger := hclog.New(&hclog.LoggerOptions{Name: *name, Level: hclog.Warn, Output: os.Stderr})

	nc, err := distributed.Connect(*url)
	if err != nil {
		return fail(err)
	}
	defer nc.Close()
	sys := procpool.NewSystem(procpool.Config{Logger: logger})
	defer sys.Shutdown(context.Background())
	// Capacity: 2 workers × 4 jobs in flight each; the node pulls that many
	// jobs at most.
	r, err := sys.Spawn(procpool.JobType{Name: "sha512v", Command: *worker, MinWorkers: 2, MaxWorkers: 2, InFlight: 4})
	if err != nil {
		return fail(err)
	}
	cfg := distributed.Config{AckWait: *ackWait, Logger: logger}
	n, err := distributed.NewNode(ctx, nc, cfg, distributed.NodeOptions{Name: *name})
	if err != nil {
		return fail(err)
	}
	if err := n.Bind(ctx, r, distributed.BindOptions{}); err != nil {
		return fail(err)
	}
	fmt.Println("ready")
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.Shutdown(sctx); err != nil {
		return fail(err)
	}
	return 0
}
