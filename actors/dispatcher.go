package actors

import (
	"runtime"
	"sync"
)

// Dispatcher runs actor mailboxes on a fixed set of long-lived goroutines.
//
// protoactor's default dispatcher starts a fresh goroutine each time an idle
// mailbox wakes; most of a request/reply's cost is then spent growing that
// goroutine's stack. A pool of goroutines that keep their stacks makes an
// actor hop several times cheaper. Actors run on it must not block: the
// actors of this package never wait on I/O, processes or other actors.
type Dispatcher struct {
	work       chan func()
	throughput int
	wg         sync.WaitGroup
	closeOnce  sync.Once
	mu         sync.RWMutex
	closed     bool
}

// NewDispatcher starts a dispatcher with the given number of goroutines
// (0: 2 x GOMAXPROCS, at least 4). Close stops them.
func NewDispatcher(goroutines int) *Dispatcher {
	if goroutines <= 0 {
		goroutines = max(4, 2*runtime.GOMAXPROCS(0))
	}
	d := &Dispatcher{work: make(chan func(), 1024), throughput: 300}
	d.wg.Add(goroutines)
	for range goroutines {
		go d.loop()
	}
	return d
}

func (d *Dispatcher) loop() {
	defer d.wg.Done()
	for fn := range d.work {
		fn()
	}
}

// Schedule implements actor.Dispatcher. When every goroutine is busy and the
// backlog is full, or after Close, fn runs on a goroutine of its own, so a
// mailbox is never lost.
func (d *Dispatcher) Schedule(fn func()) {
	d.mu.RLock()
	if !d.closed {
		select {
		case d.work <- fn:
			d.mu.RUnlock()
			return
		default:
		}
	}
	d.mu.RUnlock()
	go fn()
}

// Throughput implements actor.Dispatcher: how many messages a mailbox
// processes before yielding its goroutine.
func (d *Dispatcher) Throughput() int { return d.throughput }

// Close stops the goroutines once the work already scheduled has run.
func (d *Dispatcher) Close() {
	d.closeOnce.Do(func() {
		d.mu.Lock()
		d.closed = true
		close(d.work)
		d.mu.Unlock()
		d.wg.Wait()
	})
}
