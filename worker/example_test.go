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

// ExampleSend streams a job's partial results to a host that asked for
// them: the request grants a window of two chunks, the host grants more as
// it takes them, and the response ends the stream.
func ExampleSend() {
	s := &worker.Server{}
	s.Handle("count", func(ctx context.Context, p []byte) ([]byte, error) {
		for i := range 3 {
			if err := worker.Send(ctx, fmt.Appendf(nil, "row %d", i)); err != nil {
				return nil, err // cancelled while waiting for credit, say
			}
		}
		return []byte("3 rows"), nil
	})
	toWorker, fromHost := io.Pipe()
	fromWorker, toHost := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- s.ServeConn(context.Background(), toWorker, toHost) }()
	w, r := codec.NewWriter(fromHost, 0), codec.NewReader(fromWorker, 0)
	var m codec.Message
	_ = w.Write(&codec.Message{Kind: codec.KindHello, Version: codec.Version, Features: codec.FeatureStream})
	_ = r.Read(&m)
	fmt.Println("ready with", m.Features)

	_ = w.Write(&codec.Message{Kind: codec.KindRequest, ID: 1, JobType: "count", Credit: 2})
	for m.Kind != codec.KindResponse {
		_ = r.Read(&m)
		fmt.Printf("%s %q\n", m.Kind, m.Payload)
		if m.Kind == codec.KindChunk {
			_ = w.Write(&codec.Message{Kind: codec.KindCredit, ID: 1, Credit: 1}) // the caller took it
		}
	}
	fromHost.Close()
	fmt.Println(<-done)
	// Output:
	// ready with stream
	// chunk "row 0"
	// chunk "row 1"
	// chunk "row 2"
	// response "3 rows"
	// <nil>
}

// ExampleInfo reads what the request says about the job: with the "meta"
// feature, its attempt number and the caller's trace context. With
// OpenTelemetry, the handler's spans join the caller's trace by
//
//	ctx = propagation.TraceContext{}.Extract(ctx, info.Carrier())
func ExampleInfo() {
	s := &worker.Server{}
	s.Handle("whoami", func(ctx context.Context, p []byte) ([]byte, error) {
		info, _ := worker.Info(ctx)
		return fmt.Appendf(nil, "job %d, attempt %d, trace %s", info.ID, info.Attempt, info.Carrier().Get("traceparent")), nil
	})
	toWorker, fromHost := io.Pipe()
	fromWorker, toHost := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- s.ServeConn(context.Background(), toWorker, toHost) }()
	w, r := codec.NewWriter(fromHost, 0), codec.NewReader(fromWorker, 0)
	var m codec.Message
	_ = w.Write(&codec.Message{Kind: codec.KindHello, Version: codec.Version, Features: codec.FeatureMeta})
	_ = r.Read(&m)
	_ = w.Write(&codec.Message{Kind: codec.KindRequest, ID: 7, JobType: "whoami", Attempt: 2,
		TraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"})
	_ = r.Read(&m)
	fmt.Printf("%s\n", m.Payload)
	fromHost.Close()
	<-done
	// Output:
	// job 7, attempt 2, trace 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
}
