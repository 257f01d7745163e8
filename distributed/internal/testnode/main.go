// Command testnode is the helper process of package distributed's tests:
// an embedded NATS server, or a node serving one job type on a local
// procpool, each in a process of its own so that a test can kill it.
//
//	testnode server -dir DIR -port PORT [-config FILE]
//	testnode node -url URL -name NAME -worker BIN [-type sha512] [-workers 2]
//	              [-in-flight 1] [-ack-wait 2s] [-max-deliver 5]
//
// Both print "ready" on stdout once they serve, and stop gracefully on
// SIGTERM or SIGINT: the server shuts down (its files flushed), the node
// shuts down its node and pool, then prints "stats" and its counts as
// JSON. Errors go to stderr, with exit status 1.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/distributed"
	"github.com/procpool/procpool/distributed/embedded"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testnode server|node [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "server":
		err = server(os.Args[2:])
	case "node":
		err = node(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testnode:", err)
		os.Exit(1)
	}
}

func signalled() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}

func server(args []string) error {
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	dir := fs.String("dir", "", "JetStream directory")
	port := fs.Int("port", embedded.RandomPort, "client port")
	config := fs.String("config", "", "nats-server configuration file")
	_ = fs.Parse(args)
	ctx, stop := signalled()
	defer stop()
	s, err := embedded.Start(embedded.Config{Dir: *dir, Port: *port, ConfigFile: *config,
		Logger: hclog.New(&hclog.LoggerOptions{Name: "nats", Level: hclog.Warn, Output: os.Stderr})})
	if err != nil {
		return err
	}
	fmt.Println("ready", s.URL())
	<-ctx.Done()
	s.Shutdown()
	return nil
}

func node(args []string) error {
	fs := flag.NewFlagSet("node", flag.ExitOnError)
	url := fs.String("url", "", "NATS server URL")
	name := fs.String("name", "", "node name")
	worker := fs.String("worker", "", "worker binary")
	jobType := fs.String("type", "sha512", "job type")
	workers := fs.Int("workers", 2, "MaxWorkers (all started at once)")
	inFlight := fs.Int("in-flight", 1, "jobs in flight per worker")
	ackWait := fs.Duration("ack-wait", 2*time.Second, "ack wait of the consumer, if this node creates it")
	maxDeliver := fs.Int("max-deliver", distributed.DefaultMaxDeliver, "deliveries per job")
	_ = fs.Parse(args)
	ctx, stop := signalled()
	defer stop()

	logger := hclog.New(&hclog.LoggerOptions{Name: *name, Level: hclog.Warn, Output: os.Stderr})
	nc, err := distributed.Connect(*url)
	if err != nil {
		return err
	}
	defer nc.Close()
	sys := procpool.NewSystem(procpool.Config{Logger: logger})
	defer sys.Shutdown(context.Background())
	r, err := sys.Spawn(procpool.JobType{Name: *jobType, Command: *worker, MinWorkers: *workers, MaxWorkers: *workers, InFlight: *inFlight})
	if err != nil {
		return err
	}
	cfg := distributed.Config{AckWait: *ackWait, MaxDeliver: *maxDeliver, Logger: logger}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	n, err := distributed.NewNode(sctx, nc, cfg, distributed.NodeOptions{Name: *name})
	if err != nil {
		return err
	}
	if err := n.Bind(sctx, r, distributed.BindOptions{}); err != nil {
		return err
	}
	fmt.Println("ready")
	<-ctx.Done()
	dctx, dcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer dcancel()
	if err := n.Shutdown(dctx); err != nil {
		return err
	}
	b, _ := json.Marshal(n.Stats())
	fmt.Printf("stats %s\n", b)
	return nil
}
