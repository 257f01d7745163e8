// Command goworker serves the job types of the conformance suite (see the
// package conformance documentation) with the Go worker SDK. It is the
// contract's reference implementation.
package main

import (
	"context"
	"crypto/sha512"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/procpool/procpool/worker"
)

// Generate is the argument of sha512v.
type Generate struct {
	Size int
	Seed byte
}

// Record is the argument and result of record; msgpack matches fields by
// name, so the host's struct of the same shape decodes it.
type Record struct {
	Name  string
	Count int64
	Ratio float64
	Floor float64
	Data  []byte
	Tags  []string
	Flag  bool
	Big   uint64
	Attrs map[string]int64
}

// Info is the result of info: what the request said about the job.
type Info struct {
	ID          uint64
	JobType     string
	Attempt     int
	TraceParent string
	TraceState  string
	Streaming   bool
}

// grown returns n bytes, byte i being i mod 251.
func grown(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

func main() {
	s := &worker.Server{}
	s.Handle("echo", func(_ context.Context, p []byte) ([]byte, error) { return p, nil })
	s.Handle("sha512", func(_ context.Context, p []byte) ([]byte, error) {
		sum := sha512.Sum512(p)
		return sum[:], nil
	})
	worker.HandleValue(s, "sha512v", func(ctx context.Context, in Generate) ([]byte, error) {
		if in.Size < 0 {
			return nil, worker.Errorf("bad_size", "size %d is negative", in.Size)
		}
		h := sha512.New()
		chunk := make([]byte, 64<<10)
		for off := 0; off < in.Size; off += len(chunk) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			n := min(len(chunk), in.Size-off)
			for i := range n {
				chunk[i] = in.Seed + byte(off+i)
			}
			h.Write(chunk[:n])
		}
		return h.Sum(nil), nil
	})
	worker.HandleValue(s, "record", func(_ context.Context, r Record) (Record, error) {
		data := slices.Clone(r.Data)
		slices.Reverse(data)
		attrs := map[string]int64{}
		for k, v := range r.Attrs {
			attrs[k] = v
		}
		attrs["tags"] = int64(len(r.Tags))
		return Record{
			Name: "hello, " + r.Name, Count: r.Count + 1, Ratio: r.Ratio * 2, Floor: math.Floor(r.Ratio),
			Data: data, Tags: append(r.Tags, "seen"), Flag: !r.Flag, Big: r.Big, Attrs: attrs,
		}, nil
	})
	s.Handle("sleep", func(ctx context.Context, p []byte) ([]byte, error) {
		ms, err := strconv.Atoi(string(p))
		if err != nil {
			return nil, err
		}
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			return p, nil
		case <-ctx.Done():
			return nil, ctx.Err() // answered "cancelled" or "deadline"
		}
	})
	s.Handle("spin", func(_ context.Context, p []byte) ([]byte, error) {
		ms, err := strconv.Atoi(string(p))
		if err != nil {
			return nil, err
		}
		for end := time.Now().Add(time.Duration(ms) * time.Millisecond); time.Now().Before(end); {
		}
		return p, nil
	})
	s.Handle("fail", func(_ context.Context, p []byte) ([]byte, error) {
		code, msg, _ := strings.Cut(string(p), ":")
		return nil, &worker.Error{Code: code, Message: msg}
	})
	s.Handle("crash", func(_ context.Context, p []byte) ([]byte, error) {
		panic(errors.New(string(p)))
	})
	s.Handle("grow", func(_ context.Context, p []byte) ([]byte, error) {
		n, err := strconv.Atoi(string(p))
		if err != nil {
			return nil, err
		}
		return grown(n), nil
	})
	worker.HandleValue(s, "info", func(ctx context.Context, _ any) (Info, error) {
		info, _ := worker.Info(ctx)
		return Info{ID: info.ID, JobType: info.JobType, Attempt: info.Attempt, TraceParent: info.TraceParent,
			TraceState: info.TraceState, Streaming: info.Streaming}, nil
	})
	s.Handle("stream", func(ctx context.Context, p []byte) ([]byte, error) {
		a, b, _ := strings.Cut(string(p), ":")
		n, err := strconv.Atoi(a)
		if err != nil {
			return nil, err
		}
		size, err := strconv.Atoi(b)
		if err != nil {
			return nil, err
		}
		chunk := make([]byte, size)
		for i := range n {
			for k := range chunk {
				chunk[k] = byte(i)
			}
			if err := worker.Send(ctx, chunk); err != nil { // waits while out of credit
				return nil, err
			}
		}
		return []byte("done:" + a), nil
	})
	worker.Main(s)
}
