package actors

import (
	"context"
	"sync"
	"time"
)

// feed carries a Map's inputs from the goroutine that ranges over them to
// the producer that batches them, as a buffered channel would, but at the
// cost of a lock per input rather than a channel operation, and with the
// producer taking every input at hand at once. The rule: at most limit
// inputs wait; put blocks while limit wait (until the producer takes some,
// or ctx ends); take blocks while none wait (until one is put, the feed is
// closed, or ctx ends); fill blocks while fewer than limit wait; a waiting
// side is woken only when it waits, and only once what it waits for is
// there.
type feed struct {
	limit int

	mu      sync.Mutex
	items   [][]byte
	closed  bool // the inputs ended: take returns what is left, then nothing
	hungry  bool // take or fill waits on ready, for want inputs
	want    int
	full    bool          // put waits on room
	ready   chan struct{} // an input arrived, or the feed closed, while take waited
	room    chan struct{} // inputs were taken while put waited
	scratch [][]byte      // take's previous result, reused
}

func newFeed(limit int) *feed {
	return &feed{limit: limit, items: make([][]byte, 0, limit),
		ready: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

// put adds p, waiting for room; false if ctx ended first.
func (f *feed) put(ctx context.Context, p []byte) bool {
	for {
		f.mu.Lock()
		if len(f.items) < f.limit {
			f.items = append(f.items, p)
			wake := f.hungry && len(f.items) >= f.want
			if wake {
				f.hungry = false
			}
			f.mu.Unlock()
			if wake {
				notify(f.ready)
			}
			return true
		}
		f.full = true
		f.mu.Unlock()
		select {
		case <-f.room:
		case <-ctx.Done():
			return false
		}
	}
}

// close marks the inputs ended.
func (f *feed) close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	notify(f.ready)
}

// take returns up to max of the inputs waiting, with the number still
// waiting after them; with wait, it first waits for at least one. It
// returns nil when none waits (without wait), once the feed is closed and
// empty, or when ctx ends. The slice is valid until the next take.
func (f *feed) take(ctx context.Context, max int, wait bool) (items [][]byte, left int) {
	for {
		f.mu.Lock()
		if n := min(max, len(f.items)); n > 0 {
			out := append(f.scratch[:0], f.items[:n]...)
			rest := copy(f.items, f.items[n:])
			clear(f.items[rest:])
			f.items = f.items[:rest]
			wake := f.full
			f.full = false
			f.mu.Unlock()
			if wake {
				notify(f.room)
			}
			f.scratch = out
			return out, rest
		}
		if f.closed || !wait {
			f.mu.Unlock()
			return nil, 0
		}
		f.hungry, f.want = true, 1
		f.mu.Unlock()
		select {
		case <-f.ready:
		case <-ctx.Done():
			return nil, 0
		}
	}
}

// fill waits until the feed is full (limit inputs wait), it is closed, ctx
// ends, a receive from other succeeds or timeout fires.
func (f *feed) fill(ctx context.Context, other <-chan struct{}, timeout <-chan time.Time) {
	for {
		f.mu.Lock()
		if len(f.items) >= f.limit || f.closed {
			f.hungry = false
			f.mu.Unlock()
			return
		}
		f.hungry, f.want = true, f.limit
		f.mu.Unlock()
		select {
		case <-f.ready:
			continue
		case <-other:
		case <-timeout:
		case <-ctx.Done():
		}
		f.mu.Lock()
		f.hungry = false
		f.mu.Unlock()
		return
	}
}

// len returns the number of inputs waiting.
func (f *feed) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.items)
}
