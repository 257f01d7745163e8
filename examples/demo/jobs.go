package main

import (
	"context"
	"crypto/sha512"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/procpool/procpool"
)

// Generate is the argument of the sha512v job type. It mirrors the
// worker's own type: msgpack matches struct fields by name.
type Generate struct {
	Size int
	Seed byte
}

// sizes are the payload sizes the jobs draw from, 64 B to 1 MiB.
var sizes = []int{64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20}

// kind is the client-side record of one job type's run.
type kind struct {
	name     string
	router   *procpool.Router
	total    int
	done     atomic.Int64 // jobs answered and checked
	bad      atomic.Int64 // wrong digests
	failed   atomic.Int64 // jobs that returned an error
	bytes    atomic.Int64 // payload bytes hashed
	firstErr atomic.Pointer[error]
	elapsed  time.Duration
}

func (k *kind) fail(err error) {
	k.failed.Add(1)
	k.firstErr.CompareAndSwap(nil, &err)
}

// runJobs runs both job types' jobs at once, shows progress, waits for the
// pools to shrink back to their minimum and prints the statistics. It
// reports whether every job succeeded with the right digest.
func runJobs(ctx context.Context, blob, value *procpool.Router, nblob, nvalue, clients int) bool {
	kinds := []*kind{
		{name: "sha512", router: blob, total: nblob},
		{name: "sha512v", router: value, total: nvalue},
	}
	p := startProgress(ctx, kinds)

	// One MiB and a bit of reproducible noise; each BLOB job hashes a
	// slice of it at its own offset.
	data := make([]byte, 1<<20+4096)
	rng := rand.New(rand.NewChaCha8([32]byte{'p', 'r', 'o', 'c', 'p', 'o', 'o', 'l'}))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}

	start := time.Now()
	var all sync.WaitGroup
	all.Add(2)
	go func() { // sha512 (BLOB): Submit a window of jobs, then Wait for each
		defer all.Done()
		k := kinds[0]
		var next atomic.Int64
		var wg sync.WaitGroup
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rnd := rand.New(rand.NewPCG(uint64(c), 1))
				type pending struct {
					job     *procpool.Job
					payload []byte
				}
				window := make([]pending, 0, 8)
				flush := func() {
					for _, pj := range window {
						sum, err := pj.job.Wait(ctx)
						k.check(sum, err, pj.payload, len(pj.payload))
					}
					window = window[:0]
				}
				for next.Add(1) <= int64(k.total) && ctx.Err() == nil {
					size := sizes[rnd.IntN(len(sizes))]
					off := rnd.IntN(4096)
					payload := data[off : off+size] // read-only while the job runs
					j, err := blob.Submit(ctx, procpool.Blob, payload)
					if err != nil {
						k.check(nil, err, nil, 0)
						continue
					}
					if window = append(window, pending{j, payload}); len(window) == cap(window) {
						flush()
					}
				}
				flush()
			}()
		}
		wg.Wait()
		k.elapsed = time.Since(start)
	}()
	go func() { // sha512v (VALUE): typed calls, one at a time per goroutine
		defer all.Done()
		k := kinds[1]
		var next atomic.Int64
		var wg sync.WaitGroup
		for c := range max(1, clients/2) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rnd := rand.New(rand.NewPCG(uint64(c), 2))
				for i := next.Add(1); i <= int64(k.total) && ctx.Err() == nil; i = next.Add(1) {
					in := Generate{Size: sizes[rnd.IntN(len(sizes))], Seed: byte(i)}
					sum, err := procpool.CallValue[[]byte](ctx, value, in)
					var want []byte
					if err == nil {
						want = generated(in)
					}
					k.checkDigest(sum, err, want, in.Size)
				}
			}()
		}
		wg.Wait()
		k.elapsed = time.Since(start)
	}()
	all.Wait()

	// Let the idle timeout shrink each pool back to its MinWorkers.
	p.setPhase("idle")
	deadline := time.Now().Add(8 * time.Second)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		b, err1 := blob.Stats(ctx)
		v, err2 := value.Stats(ctx)
		if err1 == nil && err2 == nil && b.Workers() == 1 && v.Workers() == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.stop()

	stats := make([]*procpool.Stats, len(kinds))
	for i, k := range kinds {
		s, err := k.router.Stats(context.Background())
		if err != nil {
			fmt.Fprintf(os.Stderr, "demo: stats of %s: %v\n", k.name, err)
			return false
		}
		stats[i] = s
	}
	printTable(kinds, stats)
	if ctx.Err() != nil {
		return false // interrupted: the jobs left were cancelled
	}

	ok := true
	for i, k := range kinds {
		if n := k.bad.Load(); n > 0 {
			fmt.Printf("%s: %d WRONG DIGESTS\n", k.name, n)
			ok = false
		}
		if n := k.failed.Load(); n > 0 || stats[i].Failed > 0 {
			fmt.Printf("%s: %d jobs FAILED", k.name, max(n, int64(stats[i].Failed)))
			if e := k.firstErr.Load(); e != nil {
				fmt.Printf(", first error: %v", *e)
			}
			fmt.Println()
			ok = false
		}
		if k.done.Load() != int64(k.total) {
			fmt.Printf("%s: only %d of %d jobs done\n", k.name, k.done.Load(), k.total)
			ok = false
		}
	}
	return ok
}

// check verifies a BLOB job's digest against the payload.
func (k *kind) check(sum []byte, err error, payload []byte, size int) {
	var want []byte
	if err == nil {
		d := sha512.Sum512(payload)
		want = d[:]
	}
	k.checkDigest(sum, err, want, size)
}

func (k *kind) checkDigest(sum []byte, err error, want []byte, size int) {
	switch {
	case err != nil:
		k.fail(err)
	case string(sum) != string(want):
		k.bad.Add(1)
	default:
		k.done.Add(1)
		k.bytes.Add(int64(size))
	}
}

// generated is the digest the worker computes for a sha512v job: of Size
// bytes where byte i is Seed+i.
func generated(in Generate) []byte {
	h := sha512.New()
	chunk := make([]byte, min(in.Size, 64<<10))
	for off := 0; off < in.Size; off += len(chunk) {
		n := min(len(chunk), in.Size-off)
		for i := range n {
			chunk[i] = in.Seed + byte(off+i)
		}
		h.Write(chunk[:n])
	}
	return h.Sum(nil)
}
