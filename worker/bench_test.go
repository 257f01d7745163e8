package worker

import (
	"context"
	"crypto/sha512"
	"io"
	"os"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/procpool/procpool/codec"
)

// benchHost serves s in-process over two os.Pipe pairs, as a worker process
// is served, and plays the host with codec's Reader and Writer.
type benchHost struct {
	w    *codec.Writer
	r    *codec.Reader
	in   *os.File // the host's write end
	out  *os.File // the host's read end
	done chan error
}

func startBenchHost(b *testing.B, s *Server) *benchHost {
	b.Helper()
	return startBenchHostFeatures(b, s, 0)
}

// startBenchHostFeatures is startBenchHost announcing features in hello.
func startBenchHostFeatures(b *testing.B, s *Server, features codec.Features) *benchHost {
	b.Helper()
	wr, hw, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	hr, ww, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	h := &benchHost{w: codec.NewWriter(hw, 0), r: codec.NewReader(hr, 0), in: hw, out: hr, done: make(chan error, 1)}
	go func() {
		h.done <- s.ServeConn(context.Background(), wr, ww)
		wr.Close()
		ww.Close()
	}()
	var m codec.Message
	if err := h.w.Write(&codec.Message{Kind: codec.KindHello, Version: codec.Version, Features: features}); err != nil {
		b.Fatal(err)
	}
	if err := h.r.Read(&m); err != nil || m.Kind != codec.KindReady {
		b.Fatal(err, m.Kind)
	}
	b.Cleanup(func() {
		h.in.Close()
		if err := <-h.done; err != nil {
			b.Error(err)
		}
		h.out.Close()
	})
	return h
}

func benchServer() *Server {
	s := &Server{}
	s.Handle("echo", echo)
	s.Handle("sha512", func(ctx context.Context, p []byte) ([]byte, error) {
		d := sha512.Sum512(p)
		return d[:], nil
	})
	HandleValue(s, "sha512v", func(ctx context.Context, in struct {
		Size int
		Seed byte
	}) ([]byte, error) {
		buf := make([]byte, in.Size)
		for i := range buf {
			buf[i] = in.Seed + byte(i)
		}
		d := sha512.Sum512(buf)
		return d[:], nil
	})
	return s
}

// BenchmarkRoundTrip measures one job in flight at a time: the latency of a
// request and its response through the SDK and two pipes.
func BenchmarkRoundTrip(b *testing.B) {
	for _, bc := range []struct {
		name    string
		jobType string
		kind    codec.PayloadKind
		payload []byte
	}{
		{"echo_1KiB", "echo", codec.Blob, make([]byte, 1<<10)},
		{"sha512_1KiB", "sha512", codec.Blob, make([]byte, 1<<10)},
		{"sha512v_1KiB", "sha512v", codec.Value, mustMarshal(map[string]int{"Size": 1 << 10, "Seed": 1})},
		{"echo_empty", "echo", codec.Blob, nil},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := startBenchHost(b, benchServer())
			req := codec.Message{Kind: codec.KindRequest, JobType: bc.jobType, PayloadKind: bc.kind, Payload: bc.payload}
			var m codec.Message
			b.SetBytes(int64(len(bc.payload)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				req.ID = uint64(i)
				if err := h.w.Write(&req); err != nil {
					b.Fatal(err)
				}
				if err := h.r.Read(&m); err != nil {
					b.Fatal(err)
				}
				if m.ErrCode != "" || m.ID != uint64(i) {
					b.Fatal(m.ErrCode, m.ErrMessage)
				}
			}
		})
	}
}

// BenchmarkPipelined keeps many 1 KiB echo jobs in flight: the throughput of
// one worker, and the effect of coalescing responses.
func BenchmarkPipelined(b *testing.B) {
	const window = 64
	h := startBenchHost(b, benchServer())
	payload := make([]byte, 1<<10)
	credits := make(chan struct{}, window)
	for range window {
		credits <- struct{}{}
	}
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	errc := make(chan error, 1)
	go func() {
		var m codec.Message
		for i := 0; i < b.N; i++ {
			if err := h.r.Read(&m); err != nil {
				errc <- err
				return
			}
			credits <- struct{}{}
		}
		errc <- nil
	}()
	req := codec.Message{Kind: codec.KindRequest, JobType: "echo", Payload: payload}
	for i := 0; i < b.N; i++ {
		<-credits
		req.ID = uint64(i)
		if err := h.w.Write(&req); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-errc; err != nil && err != io.EOF {
		b.Fatal(err)
	}
}

// BenchmarkSmallJobs runs SHA-512 of 64 bytes, the job of issue 13's Map,
// 256 jobs in flight: as single requests (each its own frame and answer)
// and as batches of 128 (two in flight). ns/op is per job.
func BenchmarkSmallJobs(b *testing.B) {
	payload := make([]byte, 64)
	const inFlight = 256
	b.Run("single", func(b *testing.B) {
		h := startBenchHost(b, benchServer())
		credits := make(chan struct{}, inFlight)
		for range inFlight {
			credits <- struct{}{}
		}
		b.ReportAllocs()
		b.ResetTimer()
		errc := make(chan error, 1)
		go func() {
			var m codec.Message
			for i := 0; i < b.N; i++ {
				if err := h.r.Read(&m); err != nil {
					errc <- err
					return
				}
				credits <- struct{}{}
			}
			errc <- nil
		}()
		req := codec.Message{Kind: codec.KindRequest, JobType: "sha512", Payload: payload}
		for i := 0; i < b.N; i++ {
			<-credits
			req.ID = uint64(i)
			if err := h.w.Write(&req); err != nil {
				b.Fatal(err)
			}
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	})
	b.Run("batch128", func(b *testing.B) {
		const size = 128
		h := startBenchHostFeatures(b, benchServer(), codec.FeatureBatch)
		batch := codec.NewBatch(h.w, codec.KindBatchRequest)
		credits := make(chan struct{}, inFlight)
		for range inFlight {
			credits <- struct{}{}
		}
		b.ReportAllocs()
		b.ResetTimer()
		errc := make(chan error, 1)
		go func() {
			var m codec.Message
			for n := 0; n < b.N; {
				if err := h.r.Read(&m); err != nil {
					errc <- err
					return
				}
				k := 1
				if m.Kind == codec.KindBatchResponse {
					k = len(m.Items)
				}
				for range k {
					credits <- struct{}{}
				}
				n += k
			}
			errc <- nil
		}()
		req := codec.Message{Kind: codec.KindRequest, JobType: "sha512", Payload: payload}
		for i := 0; i < b.N; i++ {
			<-credits
			req.ID = uint64(i)
			if err := batch.Add(&req); err != nil {
				b.Fatal(err)
			}
			if batch.Len() == size || i == b.N-1 {
				if err := batch.Flush(); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	})
}

func mustMarshal(v any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
