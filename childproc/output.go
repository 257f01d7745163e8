package childproc

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// MaxLineLength is the longest line of stdout or stderr logged as one
// record; a longer line is split into records of this many bytes.
const MaxLineLength = 64 << 10

// maxQueuedBytes bounds the lines of one stream read from the child but
// not yet logged. Past it, lines are dropped (and counted) rather than
// slowing the child down to the speed of the logger.
const maxQueuedBytes = 1 << 20

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
// writes flowing) and an emitter goroutine that logs what was read.
type stream struct {
	name   string // "stdout" or "stderr"
	level  hclog.Level
	log    hclog.Logger
	tail   *ring // the last lines, or nil
	reaped <-chan struct{}

	mu      sync.Mutex
	queue   []string
	queued  int // bytes in queue
	dropped int
	closed  bool
	wake    chan struct{} // capacity 1
}

func newStream(name string, level hclog.Level, log hclog.Logger, tail *ring, reaped <-chan struct{}) *stream {
	return &stream{name: name, level: level, log: log, tail: tail, reaped: reaped, wake: make(chan struct{}, 1)}
}

// run reads f and logs its lines until EOF (or the drain after the reap
// ends), then closes f. It returns when every line read has been logged.
func (s *stream) run(f *os.File) {
	emitted := make(chan struct{})
	go func() {
		defer close(emitted)
		s.emit()
	}()
	s.read(f)
	<-emitted
}

// read reads lines until the end, queueing them; lines longer than
// MaxLineLength are cut into pieces.
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

func (s *stream) push(line string) {
	s.mu.Lock()
	if s.queued+len(line) > maxQueuedBytes {
		s.dropped++
	} else {
		s.queue = append(s.queue, line)
		s.queued += len(line)
	}
	s.mu.Unlock()
	s.notify()
}

func (s *stream) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.notify()
}

func (s *stream) notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// emit logs queued lines until the stream is closed and empty.
func (s *stream) emit() {
	for {
		s.mu.Lock()
		lines, dropped, closed := s.queue, s.dropped, s.closed
		s.queue, s.queued, s.dropped = nil, 0, 0
		s.mu.Unlock()
		if dropped > 0 {
			s.log.Warn("child output lines dropped: the logger did not keep up",
				"stream", s.name, "dropped", dropped)
		}
		for _, line := range lines {
			s.log.Log(s.level, line, "stream", s.name)
		}
		if len(lines) == 0 && dropped == 0 {
			if closed {
				return
			}
			<-s.wake
		}
	}
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
