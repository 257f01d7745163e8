package distributed

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/procpool/procpool"
)

// Job is a job accepted by a JetStream stream, returned by
// Producer.Submit: wait for its result with Wait, or with Done and Result.
// It resolves exactly once: with the first result any node published for
// it, or with an error (its context ended, the producer closed). Results
// that arrive later, from a redelivery, are discarded.
type Job struct {
	// ID is the job's id, unique within the de-duplication window; it is
	// the message id JetStream de-duplicates on.
	ID string
	// JobType is the job type it was submitted to.
	JobType string
	// Seq is the job's sequence number in its stream.
	Seq uint64

	p        *Producer
	done     chan struct{}
	resolved atomic.Bool
	stopMu   sync.Mutex
	stop     func() bool // detaches the context watcher

	// Set before done is closed.
	result     []byte
	err        error
	node       string
	deliveries int
}

// Done is closed when the job has resolved.
func (j *Job) Done() <-chan struct{} { return j.done }

// Result returns the job's result or error once Done is closed (nil, nil
// before).
func (j *Job) Result() ([]byte, error) {
	select {
	case <-j.done:
		return j.result, j.err
	default:
		return nil, nil
	}
}

// Wait waits for the job's result. If ctx ends first, the job is
// cancelled: Wait returns an error matching procpool.ErrCancelled and
// ctx.Err(), and a result that arrives later is discarded (the job may
// still run on a node; see the package documentation).
func (j *Job) Wait(ctx context.Context) ([]byte, error) {
	select {
	case <-j.done:
	case <-ctx.Done():
		j.Cancel(ctx.Err())
		<-j.done
	}
	return j.result, j.err
}

// Cancel resolves the job with an error matching procpool.ErrCancelled
// and cause, unless it has resolved already. The job's message stays in its
// stream: a node may still run it, and its result is discarded.
func (j *Job) Cancel(cause error) {
	j.p.forget(j)
	j.resolve(nil, cancelled(cause), "", 0)
}

// Node returns the name of the node whose result or error resolved the
// job ("" if none did).
func (j *Job) Node() string {
	<-j.done
	return j.node
}

// Deliveries returns which delivery of the job produced the result that
// resolved it (1 unless it was redelivered; 0 if no node's did). It waits
// for the job to resolve.
func (j *Job) Deliveries() int {
	<-j.done
	return j.deliveries
}

// resolve records the outcome and closes done, once: later calls are
// ignored and return false.
func (j *Job) resolve(result []byte, err error, node string, deliveries int) bool {
	if !j.resolved.CompareAndSwap(false, true) {
		return false
	}
	j.stopMu.Lock()
	stop := j.stop
	j.stopMu.Unlock()
	if stop != nil {
		stop()
	}
	j.result, j.err, j.node, j.deliveries = result, err, node, deliveries
	close(j.done)
	j.p.resolved(err)
	return true
}

// cancelled returns an error matching procpool.ErrCancelled and cause.
func cancelled(cause error) error {
	if cause == nil {
		return procpool.ErrCancelled
	}
	return &matchError{msg: procpool.ErrCancelled.Error() + ": " + cause.Error(), is: []error{procpool.ErrCancelled, cause}}
}
