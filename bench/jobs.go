package main

import (
	"bytes"
	"crypto/sha512"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/procpool/procpool"
)

// nSeeds is how many distinct buffers a workload cycles through: job i
// hashes the buffer of seed i % nSeeds, so that a worker returning a stale
// or a neighbour's digest is caught.
const nSeeds = 16

// sha512Value is the VALUE argument of the test worker's sha512v job type:
// the worker makes Size bytes itself, byte i being Seed+byte(i).
type sha512Value struct {
	Size int
	Seed byte
}

// workload is one of the article's jobs: SHA-512 over Size bytes, or the
// no-load job (Hash false), which returns at once.
type workload struct {
	Key  string // short name: "noop", "1KiB", "1MiB"
	Name string // for tables
	Size int    // bytes hashed (noop: bytes a BLOB carries)
	Hash bool

	bufs    [nSeeds][]byte            // seed s: byte i = s+byte(i)
	digests [nSeeds][sha512.Size]byte // SHA-512 of bufs[s]
	values  [nSeeds][]byte            // msgpack of sha512Value{Size, s}
}

// newWorkload builds the buffers, the expected digests and the encoded
// VALUE arguments of a workload.
func newWorkload(key, name string, size int, hash bool) *workload {
	w := &workload{Key: key, Name: name, Size: size, Hash: hash}
	for s := range nSeeds {
		w.bufs[s] = makeBuffer(size, byte(s))
		w.digests[s] = sha512.Sum512(w.bufs[s])
		v, err := msgpack.Marshal(sha512Value{Size: size, Seed: byte(s)})
		if err != nil {
			panic(err) // a plain struct always encodes
		}
		w.values[s] = v
	}
	return w
}

// workloads returns the article's three jobs: no-load, 1 KiB and 1 MiB.
func workloads() []*workload {
	return []*workload{
		newWorkload("noop", "no-load", 1<<10, false),
		newWorkload("1KiB", "SHA-512 1 KiB", 1<<10, true),
		newWorkload("1MiB", "SHA-512 1 MiB", 1<<20, true),
	}
}

// makeBuffer returns the buffer the test worker's sha512v job makes for
// (size, seed).
func makeBuffer(size int, seed byte) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = seed + byte(i)
	}
	return b
}

// seed is the seed of job i.
func seed(i int) int { return i % nSeeds }

// jobType is the test worker's job type that serves a workload with a
// payload kind. The no-load jobs ignore their payload and answer nothing
// (a BLOB) or nil (a VALUE).
func (w *workload) jobType(kind procpool.PayloadKind) string {
	switch {
	case !w.Hash && kind == procpool.Value:
		return "noopv"
	case !w.Hash:
		return "noop"
	case kind == procpool.Value:
		return "sha512v"
	default:
		return "sha512"
	}
}

// payload is what job i sends: the encoded value or the whole buffer.
func (w *workload) payload(kind procpool.PayloadKind, i int) []byte {
	if kind == procpool.Value {
		return w.values[seed(i)]
	}
	return w.bufs[seed(i)]
}

// check verifies the result of job i. VALUE results are a msgpack bin
// holding the digest; BLOB results are the digest itself; the no-load job
// returns nothing.
func (w *workload) check(kind procpool.PayloadKind, i int, res []byte) error {
	if !w.Hash {
		if len(res) != 0 && !(kind == procpool.Value && bytes.Equal(res, []byte{0xc0})) {
			return fmt.Errorf("%s job %d: want an empty result, got %d bytes", w.Name, i, len(res))
		}
		return nil
	}
	digest := res
	if kind == procpool.Value {
		if err := msgpack.Unmarshal(res, &digest); err != nil {
			return fmt.Errorf("%s VALUE job %d: result is not a msgpack bin: %v", w.Name, i, err)
		}
	}
	return w.checkDigest(i, digest)
}

// checkDigest verifies a raw digest for job i.
func (w *workload) checkDigest(i int, digest []byte) error {
	if want := &w.digests[seed(i)]; !bytes.Equal(digest, want[:]) {
		return fmt.Errorf("%s job %d: wrong digest %x, want %x", w.Name, i, head(digest), want[:8])
	}
	return nil
}

// inProcess runs job i in the calling goroutine, as the worker would: a
// VALUE job makes its buffer, a BLOB job hashes the caller's.
func (w *workload) inProcess(kind procpool.PayloadKind, i int) error {
	if !w.Hash {
		noop()
		return nil
	}
	var d [sha512.Size]byte
	if kind == procpool.Value {
		d = sha512.Sum512(makeBuffer(w.Size, byte(seed(i))))
	} else {
		d = sha512.Sum512(w.bufs[seed(i)])
	}
	return w.checkDigest(i, d[:])
}

// noop is the in-process no-load job, a variable so that it is a real call.
var noop = func() {}

// head returns at most the first 8 bytes of b, for error messages.
func head(b []byte) []byte { return b[:min(len(b), 8)] }

// kindName names a payload kind as the article does.
func kindName(k procpool.PayloadKind) string {
	if k == procpool.Value {
		return "VALUE"
	}
	return "BLOB"
}

// kinds are the two payload kinds, in the article's order.
var kinds = []procpool.PayloadKind{procpool.Value, procpool.Blob}
