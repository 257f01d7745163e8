package main

import (
	"testing"

	"github.com/procpool/procpool/codec"
)

// BenchmarkProcessRoundTrip measures one 1 KiB echo job in flight at a time
// through a testworker process: the latency of the whole IPC path.
func BenchmarkProcessRoundTrip(b *testing.B) {
	for _, jt := range []string{"echo", "sha512"} {
		b.Run(jt, func(b *testing.B) {
			c := startChild(b)
			c.handshake()
			req := codec.Message{Kind: codec.KindRequest, JobType: jt, Payload: make([]byte, 1<<10)}
			var m codec.Message
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				req.ID = uint64(i)
				if err := c.w.Write(&req); err != nil {
					b.Fatal(err)
				}
				if err := c.r.Read(&m); err != nil || m.ErrCode != "" {
					b.Fatal(err, m.ErrMessage)
				}
			}
		})
	}
}

// BenchmarkProcessPipelined keeps 64 1 KiB echo jobs in flight through a
// testworker process: the throughput of one worker.
func BenchmarkProcessPipelined(b *testing.B) {
	const window = 64
	c := startChild(b)
	c.handshake()
	credits := make(chan struct{}, window)
	for range window {
		credits <- struct{}{}
	}
	errc := make(chan error, 1)
	b.ReportAllocs()
	b.ResetTimer()
	go func() {
		var m codec.Message
		for i := 0; i < b.N; i++ {
			if err := c.r.Read(&m); err != nil {
				errc <- err
				return
			}
			credits <- struct{}{}
		}
		errc <- nil
	}()
	req := codec.Message{Kind: codec.KindRequest, JobType: "echo", Payload: make([]byte, 1<<10)}
	for i := 0; i < b.N; i++ {
		<-credits
		req.ID = uint64(i)
		if err := c.w.Write(&req); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}
