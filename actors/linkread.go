package actors

// The read role of a link: whoever holds it (a caller waiting for its own
// answer, or the link's reader goroutine) reads the worker's frames and
// settles what they answer.

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/procpool/procpool/codec"
)

// expected reports whether an answer is expected: a job in flight, a ping
// unanswered, the handshake, or the end of the output after the exit.
func (l *link) expected() bool {
	return l.table.len() > 0 || l.pingSeq.Load() != 0 || !l.handshaken.Load() || l.ending.Load()
}

// readFor reads the worker's answers until j resolves, if nobody else
// holds the read role; a resolution another way (timeout, cancellation)
// or the caller's context (interrupt) ends the read.
func (l *link) readFor(j *Job) {
	if !l.handshaken.Load() || !l.r.cas(roleFree, roleCaller) {
		return
	}
	l.r.beginCall()
	for !j.resolved() {
		if l.readOne() != nil {
			break // interrupted, or dead
		}
	}
	l.r.endCall()
	more := l.r.buf.Buffered() > 0 // read while we hold the role
	if l.r.cas(roleCaller, roleFree) && (more || l.expected()) {
		l.r.wake()
	}
}

// readLoop is the background reader: it reads while it holds the role.
func (l *link) readLoop() {
	defer l.closeShared()
	for {
		select {
		case <-l.r.kick:
		case <-l.w.quit:
			return
		}
		for {
			if l.readOne() != nil && readRole(l.r.role.Load()) == roleDead {
				return
			}
			// Bytes already buffered while nothing is expected are a frame
			// the worker was not asked for: read it now.
			if l.expected() || l.r.buf.Buffered() > 0 {
				continue
			}
			if !l.r.cas(roleBackground, roleFree) {
				break
			}
			if !l.expected() || !l.r.cas(roleFree, roleBackground) {
				break
			}
		}
	}
}

// readOne reads and handles one frame. It returns a read timeout (a
// caller's read was interrupted) or, once the link is dead, what killed it.
func (l *link) readOne() error {
	err := l.r.rd.Read(&l.r.msg)
	if err == nil {
		err = l.handle(&l.r.msg)
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if err != nil {
		l.die(err)
	}
	return err
}

// handle acts on one frame from the worker.
func (l *link) handle(m *codec.Message) error {
	if !l.handshaken.Load() {
		return l.handshake(m)
	}
	switch m.Kind {
	case codec.KindResponse:
		return l.answer(m)
	case codec.KindBatchResponse:
		return l.answerBatch(m)
	case codec.KindChunk:
		return l.chunk(m)
	case codec.KindPong:
		if m.ID == 0 || !l.pingSeq.CompareAndSwap(m.ID, 0) {
			return fmt.Errorf("%w: a pong for ping %d, which is not awaited", errProtocol, m.ID)
		}
		return nil
	}
	return fmt.Errorf("%w: unexpected %s message", errProtocol, m.Kind)
}

// handshake checks the worker's ready and takes its limits.
func (l *link) handshake(m *codec.Message) error {
	if m.Kind != codec.KindReady {
		return fmt.Errorf("%w: %w: a %s message before ready", errHandshake, errProtocol, m.Kind)
	}
	if m.Version != codec.Version {
		return fmt.Errorf("%w: the worker speaks protocol version %d, the host %d", errHandshake, m.Version, codec.Version)
	}
	serves := false
	for _, t := range m.JobTypes {
		serves = serves || t == l.jobType
	}
	if !serves {
		return fmt.Errorf("%w: the worker serves %q, not %q", errHandshake, m.JobTypes, l.jobType)
	}
	if extra := m.Features &^ l.offer; extra != 0 {
		return fmt.Errorf("%w: the worker claims features the host did not offer: %s", errHandshake, extra)
	}
	l.features = m.Features
	limit := int64(l.maxFrame)
	if n := int64(m.MaxFrame); n > 0 && n < limit {
		limit = n // the worker's own limit: for this worker only
		l.w.setMaxFrame(n)
	}
	l.peerLimit.Store(limit)
	if l.shm != nil {
		if m.SharedSize == uint64(l.shm.Size()) {
			l.shared.Store(true)
		} else {
			l.shm.Close() // declined: free it now
		}
	}
	l.handshaken.Store(true)
	l.owner.ready(limit)
	return nil
}

// die marks the link unreadable and tells the owner why, once. Nobody
// reads an answer any more, so the shared memory region goes too (once the
// copies into it in progress end).
func (l *link) die(err error) {
	l.dieOnce.Do(func() {
		l.r.role.Store(int32(roleDead))
		l.closeShared()
		if errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) {
			err = io.EOF
		}
		l.owner.closed(err)
		close(l.readDone)
	})
}
