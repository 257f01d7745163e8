// Command sha512worker is a small procpool worker, written with the Go
// worker SDK (package worker). Copy it as the starting point of your own.
//
// It serves three job types:
//
//	sha512     BLOB:  the payload's bytes → their 64-byte SHA-512 digest
//	sha512v    VALUE: Generate{Size, Seed} → the digest of Size bytes that the
//	           worker makes itself (byte i is Seed+i), without receiving them
//	wordcount  VALUE: a text → how often each word occurs in it
//
// A host starts it with its protocol pipes as file descriptors 3 and 4 (see
// docs/protocol.md); run by hand, it exits at once with an error.
package main

import (
	"context"
	"crypto/sha512"
	"strings"

	"github.com/procpool/procpool/worker"
)

// Generate is the argument of the sha512v job type. The host declares a
// struct with the same field names; msgpack matches fields by name.
type Generate struct {
	Size int
	Seed byte
}

// maxGenerate bounds sha512v's Size (64 GiB; the buffer is never held
// whole, so this bounds time, not memory).
const maxGenerate = 64 << 30

func main() {
	s := &worker.Server{}

	// A BLOB handler receives the caller's bytes and returns bytes. The
	// payload is only valid until the handler returns.
	s.Handle("sha512", func(ctx context.Context, payload []byte) ([]byte, error) {
		sum := sha512.Sum512(payload)
		return sum[:], nil
	})

	// A VALUE handler takes and returns Go values, msgpack-encoded on the
	// wire. It checks ctx between chunks, so a cancelled or timed-out job
	// stops early and the worker stays usable.
	worker.HandleValue(s, "sha512v", func(ctx context.Context, in Generate) ([]byte, error) {
		if in.Size < 0 || in.Size > maxGenerate {
			// An *worker.Error chooses the error code the host sees.
			return nil, worker.Errorf("bad_size", "size %d outside [0, %d]", in.Size, maxGenerate)
		}
		h := sha512.New()
		chunk := make([]byte, 64<<10)
		for off := 0; off < in.Size; off += len(chunk) {
			if err := ctx.Err(); err != nil {
				return nil, err // answered as "cancelled" or "deadline"
			}
			n := min(len(chunk), in.Size-off)
			for i := range n {
				chunk[i] = in.Seed + byte(off+i)
			}
			h.Write(chunk[:n])
		}
		return h.Sum(nil), nil
	})

	worker.HandleValue(s, "wordcount", func(ctx context.Context, text string) (map[string]int, error) {
		counts := make(map[string]int)
		for _, w := range strings.Fields(strings.ToLower(text)) {
			if w = strings.Trim(w, `.,;:!?"'()[]`); w != "" {
				counts[w]++
			}
		}
		return counts, nil
	})

	// Main serves the host until it shuts the worker down, then exits.
	worker.Main(s)
}
