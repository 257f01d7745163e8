package distributed_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/distributed"
	"github.com/procpool/procpool/distributed/embedded"
)

// A single machine: an embedded NATS server on 127.0.0.1, a node serving
// the sha512 job type with a local pool, and a producer calling it. On
// many machines, each runs the node part against a real NATS cluster, and
// the producers run wherever jobs are submitted.
func Example() {
	ctx := context.Background()

	srv, err := embedded.Start(embedded.Config{Dir: "/var/lib/myapp/jetstream"})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown()

	// The node: a local pool, bound to the job type's stream.
	nodeConn, err := distributed.Connect(srv.URL(), nats.Name("node-1"))
	if err != nil {
		log.Fatal(err)
	}
	defer nodeConn.Close()
	sys := procpool.NewSystem(procpool.Config{})
	defer sys.Shutdown(ctx)
	r, err := sys.Spawn(procpool.JobType{Name: "sha512", Command: "./sha512worker", MaxWorkers: 4})
	if err != nil {
		log.Fatal(err)
	}
	node, err := distributed.NewNode(ctx, nodeConn, distributed.Config{}, distributed.NodeOptions{Name: "node-1"})
	if err != nil {
		log.Fatal(err)
	}
	if err := node.Bind(ctx, r, distributed.BindOptions{}); err != nil {
		log.Fatal(err)
	}
	defer node.Shutdown(ctx) // finishes and acknowledges what it holds, then stops the pool

	// The producer: anywhere that can reach the server.
	conn, err := distributed.Connect(srv.URL())
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	p, err := distributed.NewProducer(ctx, conn, distributed.Config{}, distributed.ProducerOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close(ctx)

	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sum, err := p.Call(cctx, "sha512", procpool.Blob, []byte("hello"))
	var re *procpool.RemoteError
	switch {
	case errors.As(err, &re):
		log.Printf("the worker said %s: %s", re.Code, re.Message)
	case errors.Is(err, distributed.ErrDeadLetter):
		log.Printf("given up: %v", err)
	case err != nil:
		log.Fatal(err)
	}
	fmt.Printf("%x\n", sum[:8])
}

// A future: Submit returns once the job is stored in its stream.
func ExampleProducer_Submit() {
	var p *distributed.Producer // from NewProducer
	ctx := context.Background()
	job, err := p.Submit(ctx, "sha512", procpool.Blob, []byte("hello"))
	if err != nil {
		log.Fatal(err) // e.g. procpool.ErrPayloadTooLarge
	}
	sum, err := job.Wait(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("job %s ran on %s (delivery %d): %x\n", job.ID, job.Node(), job.Deliveries(), sum[:8])
}

// An operator's look at what was given up.
func ExampleReadDeadLetters() {
	nc, err := distributed.Connect("tls://nats.internal:4222", nats.UserCredentials("ops.creds"))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	dls, err := distributed.ReadDeadLetters(context.Background(), js, distributed.Config{}, "sha512", 100)
	if err != nil {
		log.Fatal(err)
	}
	for _, dl := range dls {
		fmt.Printf("%s job %s on %s after %d deliveries: %v\n", dl.Stored.Format(time.RFC3339), dl.JobID, dl.Node, dl.Deliveries, dl.Err)
	}
}
