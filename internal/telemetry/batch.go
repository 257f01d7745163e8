package telemetry

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
)

// Batching. Recording a value costs an SDK histogram a few hundred
// nanoseconds, and twice that when goroutines on other cores record into
// the same histogram at the same moment, as a pool's readers do: its
// counters bounce between the cores' caches. So a job type's finished jobs
// are not recorded one by one. Each lands in one of a few shards, picked
// at random (a shard another goroutine holds is passed over); a shard
// records its values into the histograms in one go once it holds
// batchSize of them, from one core, and it counts the jobs by class
// itself. Every collection flushes every shard first (the callback of the
// observed instruments runs before the SDK reads the histograms), and so
// does Close: a collection sees every job resolved before it began.
const (
	batchSize = 32
	numShards = 8 // a power of two
)

// shard is one of a job type's batches.
type shard struct {
	mu     sync.Mutex
	n      int                // values waiting in wait and run
	wait   [batchSize]float64 // seconds
	run    [batchSize]float64 // seconds; 0: never dispatched, not recorded
	counts [numOutcomes]int64 // jobs resolved, by class
	_      [64]byte           // keeps the next shard's lock off this one's cache line
}

// shards are the batches of one job type.
type shards [numShards]shard

// add takes in one resolved job, and records the batch it completes.
func (ss *shards) add(in *instruments, opts []metric.RecordOption, c outcome, wait, run time.Duration) {
	i := rand.Uint32()
	s := &ss[i%numShards]
	if !s.mu.TryLock() {
		s = &ss[(i+1)%numShards]
		s.mu.Lock()
	}
	s.counts[c]++
	s.wait[s.n], s.run[s.n] = wait.Seconds(), run.Seconds()
	s.n++
	if s.n == batchSize {
		s.flush(in, opts)
	}
	s.mu.Unlock()
}

// flush records the values waiting in s; s.mu must be held.
func (s *shard) flush(in *instruments, opts []metric.RecordOption) {
	ctx := context.Background()
	for i := range s.n {
		in.wait.Record(ctx, s.wait[i], opts...)
		if s.run[i] > 0 {
			in.run.Record(ctx, s.run[i], opts...)
		}
	}
	s.n = 0
}

// flushAll records every waiting value and returns the jobs counted, by
// class.
func (ss *shards) flushAll(in *instruments, opts []metric.RecordOption) (counts [numOutcomes]int64) {
	for i := range ss {
		s := &ss[i]
		s.mu.Lock()
		s.flush(in, opts)
		for c, n := range s.counts {
			counts[c] += n
		}
		s.mu.Unlock()
	}
	return counts
}
