package procpool_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/procpool/procpool"
	"github.com/procpool/procpool/internal/testbin"
)

// workerBinary returns the path of a worker program. These examples use
// the project's test worker; in a program of your own it is the path of
// your worker, such as one built from examples/sha512worker.
func workerBinary() string {
	path, err := testbin.Build()
	if err != nil {
		panic(err)
	}
	return path
}

// A System with one job type: each "sha512" job runs in a worker process
// and returns the SHA-512 digest of its payload.
func ExampleSystem() {
	sys := procpool.NewSystem(procpool.Config{})
	defer sys.Shutdown(context.Background()) // waits for running jobs, stops every worker

	_, err := sys.Spawn(procpool.JobType{
		Name:       "sha512",
		Command:    workerBinary(),
		MaxWorkers: 2,
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	sum, err := sys.Call(context.Background(), "sha512", []byte("hello"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%d bytes, %x...\n", len(sum), sum[:8])
	// Output: 64 bytes, 9b71d224bd62f378...
}

// A VALUE job sends a Go value, msgpack-encoded, and decodes the worker's
// typed result. The test worker's "sha512v" handler takes {Size, Seed} and
// hashes Size bytes it generates itself, byte i being Seed+i: here "abc".
func ExampleCallValue() {
	sys := procpool.NewSystem(procpool.Config{})
	defer sys.Shutdown(context.Background())

	r, err := sys.Spawn(procpool.JobType{Name: "sha512v", Command: workerBinary(), MaxWorkers: 1})
	if err != nil {
		fmt.Println(err)
		return
	}

	type generate struct { // field names must match the worker's type
		Size int
		Seed byte
	}
	sum, err := procpool.CallValue[[]byte](context.Background(), r, generate{Size: 3, Seed: 'a'})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%x...\n", sum[:8])

	// A worker's error comes back typed, with the worker's code.
	_, err = procpool.CallValue[[]byte](context.Background(), r, generate{Size: -1})
	var re *procpool.RemoteError
	if errors.As(err, &re) {
		fmt.Println("remote error:", re.Code)
	}
	// Output:
	// ddaf35a193617aba...
	// remote error: bad_size
}

// Submit accepts a job and returns at once; Wait collects its result. A
// job whose context ends first is cancelled, and fails with ErrCancelled.
func ExampleRouter_Submit() {
	sys := procpool.NewSystem(procpool.Config{})
	defer sys.Shutdown(context.Background())

	r, err := sys.Spawn(procpool.JobType{Name: "sha512", Command: workerBinary(), MaxWorkers: 2})
	if err != nil {
		fmt.Println(err)
		return
	}

	ctx := context.Background()
	var jobs []*procpool.Job
	for _, word := range []string{"one", "two", "three"} {
		j, err := r.Submit(ctx, procpool.Blob, []byte(word))
		if err != nil {
			fmt.Println(err)
			return
		}
		jobs = append(jobs, j)
	}
	for _, j := range jobs {
		sum, err := j.Wait(ctx)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%x...\n", sum[:8])
	}

	// A deadline that has already passed: the job is refused as cancelled.
	dctx, cancel := context.WithTimeout(ctx, -time.Second)
	defer cancel()
	_, err = r.Submit(dctx, procpool.Blob, []byte("late"))
	fmt.Println(errors.Is(err, procpool.ErrCancelled), errors.Is(err, context.DeadlineExceeded))
	// Output:
	// 05f70341078acf6a...
	// 928d50d1e24dab7c...
	// 62758e4a57b76feb...
	// true true
}
