package childproc

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// MaxLineLength is the longest line of stdout or stderr logged as one
// record; a longer line is split into records of this many bytes.
const MaxLineLength = 64 << 10

// MaxQueuedLines and maxQueuedBytes bound the lines of one stream read
// from the child but not yet logged: past either, lines are dropped (and
// counted) rather than slowing the child down to the speed of the logger,
// or letting it grow the host's memory. Empty lines count as lines.
const (
	MaxQueuedLines = 8192
	maxQueuedBytes = 1 << 20
)

// LogDrainAfterEnd bounds how long, after a process has ended, its queued
// lines are still logged; what is left then is dropped and counted. The
// end of a process (Done) never waits for the logger.
const LogDrainAfterEnd = time.Second

// Reading stdout and stderr after the reap. Normally both hit EOF at once:
// the process group was killed, so no one holds the write ends any more.
// A process that left the group may hold them open: the readers then stop
// once no data has come for stdioDrain, or stdioDrainMax after the reap.
const (
	stdioDrain    = 500 * time.Millisecond
	stdioDrainMax = 10 * time.Second
)

// ring keeps the last n lines written to it.
type ring struct {
	mu    sync.Mutex
	lines []string
	next  int
	full  bool
}

func newRing(n int) *ring { return &ring{lines: make([]string, n)} }

func (r *ring) add(line string) {
	r.mu.Lock()
	r.lines[r.next] = line
	r.next++
	if r.next == len(r.lines) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
}

// snapshot returns the kept lines, oldest first.
func (r *ring) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		return append([]string(nil), r.lines[:r.next]...)
	}
	out := make([]string, 0, len(r.lines))
	out = append(out, r.lines[r.next:]...)
	return append(out, r.lines[:r.next]...)
}

// stream carries one of the child's stdout and stderr to the logger: a
// reader goroutine that never waits for the logger (it keeps the child's
// writes flowing, and the reap waits only for it) and an emitter
// goroutine that logs what was read, dropping what the bounds refuse.
type stream struct {
	name    string // "stdout" or "stderr"
	level   hclog.Level
	log     hclog.Logger
	tail    *ring // the last lines, or nil
	reaped  <-chan struct{}
	dropped *atomic.Uint64 // the Process's count, both streams

	mu     sync.Mutex
	queue  []entry
	bytes  int           // of the lines in queue
	burst  int           // lines dropped since the last one queued
	closed bool          // the reader is done
	sealed bool          // no note will come: the emitter may end
	wake   chan struct{} // capacity 1
}

// entry is a line to log; or, if dropped is not zero, the report of that
// many lines dropped in a row; or a note of the Process's own.
type entry struct {
	line    string
	dropped int
	note    *note
}

// note is a record of the Process's own (its end, say), logged by the
// emitter like a line so that a logger that does not keep up delays no
// one: hclog writes records one at a time, so a record that waits on the
// sink makes every other one wait.
type note struct {
	level hclog.Level
	msg   string
	args  []any
}

func newStream(name string, level hclog.Level, log hclog.Logger, tail *ring, reaped <-chan struct{}, dropped *atomic.Uint64) *stream {
	return &stream{name: name, level: level, log: log, tail: tail, reaped: reaped, dropped: dropped,
		wake: make(chan struct{}, 1)}
}

// read reads lines until the end (or the drain after the reap ends),
// queueing them, then closes f; lines longer than MaxLineLength are cut
// into pieces.
func (s *stream) read(f *os.File) {
	defer s.close()
	defer f.Close()
	br := bufio.NewReaderSize(&drainReader{f: f, reaped: s.reaped}, MaxLineLength)
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			line := string(bytes.TrimRight(chunk, "\r\n"))
			if s.tail != nil {
				s.tail.add(line)
			}
			s.push(line)
		}
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF), errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, os.ErrClosed):
			return
		default:
			s.log.Debug("reading the child's output failed", "stream", s.name, "error", err)
			return
		}
	}
}

// push queues a line, or drops and counts it past the bounds. The end of a
// burst of drops is queued as one report, ahead of the line that ends it.
func (s *stream) push(line string) {
	s.mu.Lock()
	if len(s.queue) >= MaxQueuedLines || s.bytes+len(line) > maxQueuedBytes {
		s.burst++
		s.mu.Unlock()
		s.dropped.Add(1)
		return
	}
	if s.burst > 0 {
		s.queue = append(s.queue, entry{dropped: s.burst})
		s.burst = 0
	}
	s.queue = append(s.queue, entry{line: line})
	s.bytes += len(line)
	s.mu.Unlock()
	s.notify()
}

func (s *stream) close() {
	s.mu.Lock()
	s.closed = true
	if s.burst > 0 {
		s.queue = append(s.queue, entry{dropped: s.burst})
		s.burst = 0
	}
	s.mu.Unlock()
	s.notify()
}

// note queues a record of the Process's own; it must come before seal.
func (s *stream) note(level hclog.Level, msg string, args ...any) {
	s.mu.Lock()
	s.queue = append(s.queue, entry{note: &note{level: level, msg: msg, args: args}})
	s.mu.Unlock()
	s.notify()
}

// seal tells the emitter that nothing but lines comes any more: it ends
// once the reader is done and the queue is empty.
func (s *stream) seal() {
	s.mu.Lock()
	s.sealed = true
	s.mu.Unlock()
	s.notify()
}

func (s *stream) notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// emit logs queued entries until the stream is closed, sealed and empty.
// Once the process has been reaped it logs for LogDrainAfterEnd more at
// most, then drops what is left.
func (s *stream) emit() {
	var deadline time.Time
	for {
		s.mu.Lock()
		batch, closed := s.queue, s.closed && s.sealed
		s.queue, s.bytes = nil, 0
		s.mu.Unlock()
		for i, e := range batch {
			if deadline.IsZero() {
				select {
				case <-s.reaped:
					deadline = time.Now().Add(LogDrainAfterEnd)
				default:
				}
			}
			if !deadline.IsZero() && time.Now().After(deadline) {
				s.dropLate(batch[i:])
				break
			}
			if e.note != nil {
				s.log.Log(e.note.level, e.note.msg, e.note.args...)
				continue
			}
			if e.dropped > 0 {
				s.log.Warn("child output lines dropped: the logger did not keep up", "stream", s.name, "dropped", e.dropped)
				continue
			}
			s.log.Log(s.level, e.line, "stream", s.name)
		}
		if len(batch) == 0 {
			if closed {
				return
			}
			<-s.wake
		}
	}
}

// dropLate drops the entries left after LogDrainAfterEnd, with one report.
func (s *stream) dropLate(rest []entry) {
	n := 0
	for _, e := range rest {
		switch {
		case e.note != nil:
		case e.dropped > 0:
			n += e.dropped // already counted
		default:
			n++
			s.dropped.Add(1)
		}
	}
	s.log.Warn("child output lines dropped: the process has ended and the logger did not keep up",
		"stream", s.name, "dropped", n)
}

// drainReader reads f; once the process has been reaped, each read gets a
// deadline of stdioDrain (but no later than stdioDrainMax after the reap),
// so a pipe held open by a process outside the group cannot keep the
// reader forever, while data already in the pipe is still read.
type drainReader struct {
	f      *os.File
	reaped <-chan struct{}
	limit  time.Time
}

func (r *drainReader) Read(b []byte) (int, error) {
	select {
	case <-r.reaped:
		now := time.Now()
		if r.limit.IsZero() {
			r.limit = now.Add(stdioDrainMax)
		}
		d := now.Add(stdioDrain)
		if d.After(r.limit) {
			d = r.limit
		}
		_ = r.f.SetReadDeadline(d)
	default:
	}
	return r.f.Read(b)
}
