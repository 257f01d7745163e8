package distributed_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/distributed"
	"github.com/procpool/procpool/distributed/embedded"
)

// TestPayloadTooLargeAtSubmission: a job over its stream's message limit
// fails at Submit with ErrPayloadTooLarge, before the server sees it; the
// largest payload that fits is accepted by the server, so the producer's
// reckoning of the message's size is exact.
func TestPayloadTooLargeAtSubmission(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, embedded.Config{})
	cfg := distributed.Config{MaxMsgSize: 4096}
	nc := connect(t, srv.URL())
	p := newProducer(t, nc, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	fits := -1
	for size := 4096; size > 3000; size-- {
		_, err := p.Submit(ctx, "echo", procpool.Blob, make([]byte, size))
		if err == nil {
			fits = size
			break
		}
		var apiErr *jetstream.APIError
		if !errors.Is(err, procpool.ErrPayloadTooLarge) || errors.As(err, &apiErr) || errors.Is(err, nats.ErrMaxPayload) {
			t.Fatalf("payload of %d bytes: %v; want ErrPayloadTooLarge from the producer itself", size, err)
		}
	}
	if fits < 0 {
		t.Fatal("no payload fits")
	}
	t.Logf("largest payload in a 4096-byte message: %d bytes", fits)
	js := newJetStream(t, nc)
	s, err := js.Stream(ctx, cfg.JobStream("echo"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages, want only the one that fit", info.State.Msgs)
	}
	// The server's own verdict on the same headers (a new message id of
	// the same length): one byte more than the producer allowed is
	// refused, what it allowed is stored.
	stored, err := s.GetMsg(ctx, info.State.LastSeq)
	if err != nil {
		t.Fatal(err)
	}
	id := stored.Header.Get(jetstream.MsgIDHeader)
	for _, tt := range []struct {
		size int
		ok   bool
	}{{fits + 1, false}, {fits, true}} {
		m := &nats.Msg{Subject: stored.Subject, Header: nats.Header{}, Data: make([]byte, tt.size)}
		for k, v := range stored.Header {
			m.Header[k] = v
		}
		id = "Z" + id[1:]
		m.Header.Set(jetstream.MsgIDHeader, id)
		_, err := js.PublishMsg(ctx, m, jetstream.WithExpectStream(cfg.JobStream("echo")))
		if tt.ok && err != nil || !tt.ok && !errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum) {
			t.Errorf("the server, given %d bytes: %v", tt.size, err)
		}
		id = "Y" + id[1:]
	}
}

// TestMaxPayloadLeavesRoomForDeadLetters: without a stream limit, the
// server's max_payload bounds a job, less the room its dead letter needs;
// a result too large for the result stream comes back as an error.
func TestMaxPayloadLeavesRoomForDeadLetters(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, embedded.Config{MaxPayload: 64 << 10})
	cfg := distributed.Config{}
	startLocalNode(t, srv.URL(), "n1", cfg, procpool.JobType{Name: "repeat", MaxWorkers: 1})
	p := newProducer(t, connect(t, srv.URL()), cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := p.Submit(ctx, "repeat", procpool.Blob, make([]byte, 63<<10))
	if !errors.Is(err, procpool.ErrPayloadTooLarge) {
		t.Fatalf("63 KiB job under a 64 KiB max_payload: %v, want ErrPayloadTooLarge", err)
	}
	res, err := p.Call(ctx, "repeat", procpool.Blob, []byte("1000"))
	if err != nil || len(res) != 1000 {
		t.Fatalf("small result: %d bytes, %v", len(res), err)
	}
	_, err = p.Call(ctx, "repeat", procpool.Blob, []byte("70000"))
	var je *distributed.JobError
	if !errors.Is(err, procpool.ErrPayloadTooLarge) || !errors.As(err, &je) || je.Node != "n1" {
		t.Fatalf("70,000-byte result: %v, want ErrPayloadTooLarge from node n1", err)
	}
}

// TestErrorsCrossTheWire: a worker's error reaches the caller as a
// *procpool.RemoteError with its code; a malformed VALUE payload as
// ErrBadPayload; neither is dead-lettered. VALUE jobs round-trip.
func TestErrorsCrossTheWire(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, embedded.Config{})
	cfg := distributed.Config{}
	startLocalNode(t, srv.URL(), "n1", cfg, procpool.JobType{Name: "mixed", MaxWorkers: 1})
	startLocalNode(t, srv.URL(), "n2", cfg, procpool.JobType{Name: "echov", MaxWorkers: 1})
	p := newProducer(t, connect(t, srv.URL()), cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	_, err := p.Call(ctx, "mixed", procpool.Blob, []byte("nosuch:x"))
	var re *procpool.RemoteError
	if !errors.As(err, &re) || re.Code != "bad_payload" || !strings.Contains(re.Message, "nosuch") ||
		!errors.Is(err, procpool.ErrRemote) || errors.Is(err, distributed.ErrDeadLetter) {
		t.Fatalf("got %v, want a RemoteError with code bad_payload", err)
	}
	_, err = p.Call(ctx, "mixed", procpool.Blob, []byte("sleep:abc"))
	if !errors.As(err, &re) || re.Code != "bad_payload" {
		t.Fatalf("got %v", err)
	}

	type echo struct {
		Data []byte
		N    int
	}
	in, _ := msgpack.Marshal(echo{Data: []byte("hi"), N: 42})
	res, err := p.Call(ctx, "echov", procpool.Value, in)
	var out echo
	if err != nil || msgpack.Unmarshal(res, &out) != nil || out.N != 42 || !bytes.Equal(out.Data, []byte("hi")) {
		t.Fatalf("VALUE round trip: %x, %v", res, err)
	}
	typed, err := distributed.CallValue[echo](ctx, p, "echov", echo{Data: []byte("typed"), N: 7})
	if err != nil || typed.N != 7 || string(typed.Data) != "typed" {
		t.Fatalf("CallValue: %+v, %v", typed, err)
	}
	if _, err := distributed.CallValue[int](ctx, p, "echov", echo{N: 1}); !errors.Is(err, procpool.ErrBadResult) {
		t.Fatalf("CallValue into the wrong type: %v, want ErrBadResult", err)
	}
	_, err = p.Call(ctx, "echov", procpool.Value, []byte{0xc1})
	if !errors.Is(err, procpool.ErrBadPayload) || errors.Is(err, distributed.ErrDeadLetter) {
		t.Fatalf("malformed VALUE: %v, want ErrBadPayload", err)
	}
}

// TestDuplicateJobIDs: a job id is an idempotency key: a second submission
// while the first is pending, after it resolved (within the
// de-duplication window), or from another producer, fails with
// ErrDuplicateJob and is not run again.
func TestDuplicateJobIDs(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, embedded.Config{})
	cfg := distributed.Config{}
	nc := connect(t, srv.URL())
	p := newProducer(t, nc, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j, err := p.SubmitWithID(ctx, "order-42", "echo", procpool.Blob, []byte("once"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.SubmitWithID(ctx, "order-42", "echo", procpool.Blob, []byte("twice")); !errors.Is(err, distributed.ErrDuplicateJob) {
		t.Fatalf("while pending: %v, want ErrDuplicateJob", err)
	}
	ln := startLocalNode(t, srv.URL(), "n1", cfg, procpool.JobType{Name: "echo", MaxWorkers: 1})
	if res, err := j.Wait(ctx); err != nil || string(res) != "once" {
		t.Fatalf("%q, %v", res, err)
	}
	if _, err := p.SubmitWithID(ctx, "order-42", "echo", procpool.Blob, []byte("again")); !errors.Is(err, distributed.ErrDuplicateJob) {
		t.Fatalf("after it resolved: %v, want ErrDuplicateJob", err)
	}
	other := newProducer(t, nc, cfg)
	if _, err := other.SubmitWithID(ctx, "order-42", "echo", procpool.Blob, []byte("elsewhere")); !errors.Is(err, distributed.ErrDuplicateJob) {
		t.Fatalf("from another producer: %v, want ErrDuplicateJob", err)
	}
	for _, bad := range []string{"", "has space", strings.Repeat("x", 129), "tab\t"} {
		if _, err := p.SubmitWithID(ctx, bad, "echo", procpool.Blob, nil); !errors.Is(err, distributed.ErrInvalidConfig) {
			t.Errorf("id %q: %v, want ErrInvalidConfig", bad, err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if st := ln.stats(t); st.Received != 1 {
		t.Errorf("node received %d jobs, want 1", st.Received)
	}
}

// TestProducerClose: Close waits for pending jobs while its context
// allows, then fails them with ErrShuttingDown and deletes the result
// consumer; Submit after Close fails.
func TestProducerClose(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, embedded.Config{})
	cfg := distributed.Config{}
	nc := connect(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := distributed.NewProducer(ctx, nc, cfg, distributed.ProducerOptions{ID: "web-1"})
	if err != nil {
		t.Fatal(err)
	}
	j, err := p.Submit(ctx, "echo", procpool.Blob, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer ccancel()
	if err := p.Close(cctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close: %v, want DeadlineExceeded", err)
	}
	if _, err := j.Result(); !errors.Is(err, procpool.ErrShuttingDown) {
		t.Errorf("pending job after Close: %v, want ErrShuttingDown", err)
	}
	if _, err := p.Submit(ctx, "echo", procpool.Blob, []byte("x")); !errors.Is(err, procpool.ErrShuttingDown) {
		t.Errorf("Submit after Close: %v, want ErrShuttingDown", err)
	}
	if _, err := newJetStream(t, nc).Consumer(ctx, cfg.ResultStream(), "results_web-1"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Errorf("result consumer after Close: %v, want it deleted", err)
	}
	if err := p.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestInvalidNames: names that cannot be subject tokens are refused with
// ErrInvalidConfig.
func TestInvalidNames(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, embedded.Config{})
	nc := connect(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, cfg := range []distributed.Config{
		{Prefix: "a.b"}, {Prefix: "x>"}, {MaxDeliver: -1}, {AckWait: time.Millisecond}, {Replicas: 9},
		{ResultTTL: time.Second, Duplicates: time.Minute},
	} {
		if _, err := distributed.NewProducer(ctx, nc, cfg, distributed.ProducerOptions{}); !errors.Is(err, distributed.ErrInvalidConfig) {
			t.Errorf("config %+v: %v, want ErrInvalidConfig", cfg, err)
		}
	}
	if _, err := distributed.NewProducer(ctx, nc, distributed.Config{}, distributed.ProducerOptions{ID: "a b"}); !errors.Is(err, distributed.ErrInvalidConfig) {
		t.Errorf("producer id with a space: %v", err)
	}
	p := newProducer(t, nc, distributed.Config{})
	for _, name := range []string{"a.b", "*", ">", "with space", ""} {
		if _, err := p.Submit(ctx, name, procpool.Blob, nil); !errors.Is(err, distributed.ErrInvalidConfig) {
			t.Errorf("job type %q: %v, want ErrInvalidConfig", name, err)
		}
	}
}

// TestResultConsumerRecreated: if a producer's result consumer is deleted
// under it, the producer creates it again, and the results published
// meanwhile still reach their jobs.
func TestResultConsumerRecreated(t *testing.T) {
	checkLeaks(t)
	srv := startServer(t, embedded.Config{})
	cfg := distributed.Config{}
	nc := connect(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := distributed.NewProducer(ctx, nc, cfg, distributed.ProducerOptions{ID: "web-2"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	j, err := p.Submit(ctx, "echo", procpool.Blob, []byte("still here"))
	if err != nil {
		t.Fatal(err)
	}
	if err := newJetStream(t, nc).DeleteConsumer(ctx, cfg.ResultStream(), "results_web-2"); err != nil {
		t.Fatal(err)
	}
	startLocalNode(t, srv.URL(), "n1", cfg, procpool.JobType{Name: "echo", MaxWorkers: 1})
	if res, err := j.Wait(ctx); err != nil || string(res) != "still here" {
		t.Fatalf("%q, %v", res, err)
	}
}
