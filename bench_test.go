package procpool_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/childproc"
	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/testbin"
)

var benchSizes = []struct {
	name string
	n    int
}{{"64B", 64}, {"1KiB", 1 << 10}, {"1MiB", 1 << 20}}

// BenchmarkBareRoundTrip is the floor: a hand-written loop over one worker
// process's pipes, one echo job in flight, no actors.
func BenchmarkBareRoundTrip(b *testing.B) {
	for _, kind := range []codec.PayloadKind{codec.Blob, codec.Value} {
		for _, sz := range benchSizes {
			b.Run(kind.String()+"/"+sz.name, func(b *testing.B) {
				p, err := childproc.Start(childproc.Spec{Path: testbin.Path(b), Name: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				defer p.Stop(context.Background(), time.Second)
				w := codec.NewWriter(p.Input(), 0)
				r := codec.NewReader(p.Output(), 0)
				var m codec.Message
				if err := w.Write(&codec.Message{Kind: codec.KindHello, Version: codec.Version, MaxFrame: codec.DefaultMaxFrame}); err != nil {
					b.Fatal(err)
				}
				if err := r.Read(&m); err != nil || m.Kind != codec.KindReady {
					b.Fatalf("handshake: %v %v", err, m.Kind)
				}
				payload := make([]byte, sz.n)
				req := codec.Message{Kind: codec.KindRequest, JobType: "echo", Payload: payload}
				if kind == codec.Value {
					payload, _ = msgpack.Marshal(echoValue{Data: payload})
					req = codec.Message{Kind: codec.KindRequest, JobType: "echov", PayloadKind: codec.Value, Payload: payload}
				}
				b.SetBytes(int64(sz.n))
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					req.ID = uint64(i + 1)
					if err := w.Write(&req); err != nil {
						b.Fatal(err)
					}
					if err := r.Read(&m); err != nil || m.ErrCode != "" || len(m.Payload) != len(payload) {
						b.Fatalf("response: %v %q", err, m.ErrCode)
					}
				}
			})
		}
	}
}

// BenchmarkCall is the full path: Router.Call through the router actor to
// its workers, from as many goroutines as there are workers, one job in
// flight per worker.
func BenchmarkCall(b *testing.B) {
	for _, sz := range benchSizes {
		for _, workers := range []int{1, 2} {
			b.Run(fmt.Sprintf("%s/workers=%d", sz.name, workers), func(b *testing.B) {
				sys := procpool.NewSystem(procpool.Config{})
				defer sys.Shutdown(context.Background())
				r, err := sys.Spawn(procpool.JobType{
					Name: "echo", Command: testbin.Path(b),
					MinWorkers: workers, MaxWorkers: workers,
				})
				if err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				payload := make([]byte, sz.n)
				for range workers * 4 { // warm up: every worker ready
					if _, err := r.Call(ctx, procpool.Blob, payload); err != nil {
						b.Fatal(err)
					}
				}
				b.SetBytes(int64(sz.n))
				b.ReportAllocs()
				b.ResetTimer()
				callConcurrently(b, r, workers, payload)
			})
		}
	}
}

// BenchmarkFrameworkRatio alternates rounds of the bare loop and of
// Router.Call over one worker each (1 KiB echo, one job in flight), so that
// both see the same machine load, and reports full/bare as "ratio".
func BenchmarkFrameworkRatio(b *testing.B) {
	const round = 200
	payload := make([]byte, 1<<10)
	p, err := childproc.Start(childproc.Spec{Path: testbin.Path(b), Name: "bare"})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Stop(context.Background(), time.Second)
	w, rd := codec.NewWriter(p.Input(), 0), codec.NewReader(p.Output(), 0)
	var m codec.Message
	if err := w.Write(&codec.Message{Kind: codec.KindHello, Version: codec.Version, MaxFrame: codec.DefaultMaxFrame}); err != nil {
		b.Fatal(err)
	}
	if err := rd.Read(&m); err != nil {
		b.Fatal(err)
	}
	req := codec.Message{Kind: codec.KindRequest, JobType: "echo", Payload: payload}

	sys := procpool.NewSystem(procpool.Config{})
	defer sys.Shutdown(context.Background())
	r, err := sys.Spawn(procpool.JobType{Name: "echo", Command: testbin.Path(b), MinWorkers: 1, MaxWorkers: 1})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var bare, full time.Duration
	b.ResetTimer()
	for done := 0; done < b.N; done += round {
		t0 := time.Now()
		for range round {
			req.ID++
			if err := w.Write(&req); err != nil {
				b.Fatal(err)
			}
			if err := rd.Read(&m); err != nil {
				b.Fatal(err)
			}
		}
		t1 := time.Now()
		for range round {
			if _, err := r.Call(ctx, procpool.Blob, payload); err != nil {
				b.Fatal(err)
			}
		}
		bare += t1.Sub(t0)
		full += time.Since(t1)
	}
	b.ReportMetric(float64(full)/float64(bare), "ratio")
	b.ReportMetric(float64(bare.Nanoseconds())/float64(b.N), "bare-ns/op")
	b.ReportMetric(float64(full.Nanoseconds())/float64(b.N), "full-ns/op")
}

// BenchmarkCallPipelined: two workers with two jobs in flight each, from
// four callers: the next job already waits in a worker's pipe when it
// answers the last one.
func BenchmarkCallPipelined(b *testing.B) {
	for _, inflight := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("1KiB/workers=2/inflight=%d", inflight), func(b *testing.B) {
			sys := procpool.NewSystem(procpool.Config{})
			defer sys.Shutdown(context.Background())
			r, err := sys.Spawn(procpool.JobType{
				Name: "sha512", Command: testbin.Path(b),
				MinWorkers: 2, MaxWorkers: 2, InFlight: inflight,
			})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			payload := make([]byte, 1<<10)
			callers := 2 * inflight
			for range callers {
				if _, err := r.Call(ctx, procpool.Blob, payload); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			callConcurrently(b, r, callers, payload)
		})
	}
}

// callConcurrently makes b.N calls of payload, shared among callers
// goroutines, each one call at a time.
func callConcurrently(b *testing.B, r *procpool.Router, callers int, payload []byte) {
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range callers {
		n := b.N / callers
		if g == 0 {
			n += b.N % callers
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				if _, err := r.Call(ctx, procpool.Blob, payload); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
