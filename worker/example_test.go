package worker_test

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/worker"
)

// ExampleServer runs a worker over in-memory pipes and plays the host by
// hand: handshake, one BLOB job, one VALUE job, shutdown.
func ExampleServer() {
	s := &worker.Server{}
	s.Handle("upper", func(ctx context.Context, p []byte) ([]byte, error) {
		return bytes.ToUpper(p), nil
	})
	worker.HandleValue(s, "add", func(ctx context.Context, in [2]int) (int, error) {
		return in[0] + in[1], nil
	})

	// Two pipes: host → worker and worker → host.
	toWorker, fromHost := io.Pipe()
	fromWorker, toHost := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- s.ServeConn(context.Background(), toWorker, toHost) }()

	w := codec.NewWriter(fromHost, 0)
	r := codec.NewReader(fromWorker, 0)
	var m codec.Message

	w.Write(&codec.Message{Kind: codec.KindHello, Version: codec.Version, MaxFrame: 1 << 20})
	r.Read(&m)
	fmt.Println(m.Kind, m.Version, m.JobTypes)

	w.Write(&codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "upper", Payload: []byte("hello")})
	r.Read(&m)
	fmt.Printf("%s %d %q\n", m.Kind, m.ID, m.Payload)

	args, _ := msgpack.Marshal([2]int{2, 3})
	w.Write(&codec.Message{Kind: codec.KindRequest, ID: 2, JobType: "add", PayloadKind: codec.Value, Payload: args})
	r.Read(&m)
	var sum int
	msgpack.Unmarshal(m.Payload, &sum)
	fmt.Println(m.Kind, m.ID, m.PayloadKind, sum)

	w.Write(&codec.Message{Kind: codec.KindRequest, ID: 3, JobType: "nope"})
	r.Read(&m)
	fmt.Println(m.Kind, m.ID, m.ErrCode)

	w.Write(&codec.Message{Kind: codec.KindShutdown})
	fmt.Println("serve returned", <-done)
	// Output:
	// ready 1 [add upper]
	// response 1 "HELLO"
	// response 2 value 5
	// response 3 unknown_job_type
	// serve returned <nil>
}
