package procpool_test

import (
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"slices"

	"github.com/procpool/procpool"
)

// Map runs a job per input and yields the results in input order. The
// items travel to the workers many to a frame (and, for a Go worker, their
// payloads through its shared memory region), yet each one keeps a job's
// guarantees: one result or one error of its own.
func ExampleRouter_Map() {
	sys := procpool.NewSystem(procpool.Config{})
	defer sys.Shutdown(context.Background())

	r, err := sys.Spawn(procpool.JobType{Name: "sha512", Command: workerBinary(), MaxWorkers: 2})
	if err != nil {
		fmt.Println(err)
		return
	}

	var inputs [][]byte
	for i := range 10000 {
		inputs = append(inputs, fmt.Appendf(nil, "item %d", i))
	}
	n, wrong := 0, 0
	for sum, err := range r.Map(context.Background(), procpool.Blob, slices.Values(inputs)) {
		if err != nil {
			fmt.Println(n, err)
			return
		}
		if want := sha512.Sum512(inputs[n]); string(sum) != string(want[:]) {
			wrong++
		}
		n++
	}
	fmt.Println(n, "results,", wrong, "wrong")
	// Output: 10000 results, 0 wrong
}

// MapValue is Map for VALUE jobs: each input is msgpack-encoded, each
// result decoded into Out.
func ExampleMapValue() {
	sys := procpool.NewSystem(procpool.Config{})
	defer sys.Shutdown(context.Background())

	r, err := sys.Spawn(procpool.JobType{Name: "sha512v", Command: workerBinary(), MaxWorkers: 1})
	if err != nil {
		fmt.Println(err)
		return
	}

	type generate struct { // the worker's argument: hash Size bytes, byte i being Seed+i
		Size int
		Seed byte
	}
	inputs := []generate{{3, 'a'}, {-1, 0}, {0, 0}}
	for sum, err := range procpool.MapValue[[]byte](context.Background(), r, slices.Values(inputs)) {
		var re *procpool.RemoteError
		if errors.As(err, &re) { // the invalid size fails alone
			fmt.Println("remote error:", re.Code)
			continue
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%x...\n", sum[:4])
	}
	// Output:
	// ddaf35a1...
	// remote error: bad_size
	// cf83e135...
}

// Stream runs a job whose handler sends partial results before its answer
// (worker.Send in the Go SDK): Chunks yields them as they arrive, Wait
// gives the final answer.
func ExampleRouter_Stream() {
	sys := procpool.NewSystem(procpool.Config{})
	defer sys.Shutdown(context.Background())

	r, err := sys.Spawn(procpool.JobType{Name: "stream", Command: workerBinary(), MaxWorkers: 1})
	if err != nil {
		fmt.Println(err)
		return
	}

	ctx := context.Background()
	s, err := r.Stream(ctx, procpool.Blob, []byte("3")) // the test worker sends 3 chunks
	if err != nil {
		fmt.Println(err)
		return
	}
	for chunk := range s.Chunks() {
		fmt.Println(string(chunk))
	}
	answer, err := s.Wait(ctx)
	fmt.Println(string(answer), err)
	// Output:
	// chunk 0
	// chunk 1
	// chunk 2
	// done <nil>
}

// CallFill lends the caller the place in the worker's shared memory region
// where the job's payload will lie: a large payload is built there, and
// never copied.
func ExampleRouter_CallFill() {
	sys := procpool.NewSystem(procpool.Config{})
	defer sys.Shutdown(context.Background())

	r, err := sys.Spawn(procpool.JobType{Name: "sha512", Command: workerBinary(), MaxWorkers: 1})
	if err != nil {
		fmt.Println(err)
		return
	}

	const size = 1 << 20
	sum, err := r.CallFill(context.Background(), procpool.Blob, size, func(p []byte) {
		for i := range p {
			p[i] = byte(i)
		}
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	want := make([]byte, size)
	for i := range want {
		want[i] = byte(i)
	}
	digest := sha512.Sum512(want)
	fmt.Println(string(sum) == string(digest[:]))
	// Output: true
}
