package actors

import (
	"bufio"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/procpool/procpool/codec"
)

// readRole says who reads a link's answers from the worker's output pipe
// (fd 4). It is the read side's one rule: at most one goroutine reads the
// pipe at a time, and while answers are expected, someone does.
//
//	roleFree        nobody reads: no answer is expected
//	roleBackground  the link's reader goroutine reads
//	roleCaller      a Call that wrote its own request to an idle worker
//	                reads its own answer, as a hand-written loop over the
//	                pipes would: no goroutine hand-off on the fast path
//	roleDead        reading failed or ended; nobody reads again
//
// Every change is a compare-and-swap on one atomic: free→background (wake:
// whoever makes an answer expected), free→caller (take), and back to free
// by the holder, which then looks again whether an answer is expected and
// if so wakes the background reader. A producer first makes its answer
// expected, then wakes; a holder first frees the role, then looks: one of
// the two always sees the other, so no expected answer goes unread.
type readRole int32

const (
	roleFree readRole = iota
	roleBackground
	roleCaller
	roleDead
)

// reader is a link's read side: the buffered frame reader of the worker's
// output pipe, used only by the holder of the read role.
type reader struct {
	pipe *os.File
	buf  *bufio.Reader // under rd: what the last read system call brought
	rd   *codec.Reader
	msg  codec.Message
	role atomic.Int32  // a readRole
	kick chan struct{} // hands the role to the background reader

	imu     sync.Mutex
	calling bool // a caller reads: it may be interrupted
}

func (r *reader) init(pipe *os.File, maxFrame int) {
	r.pipe = pipe
	// Buffered: one read system call takes every answer already in the
	// pipe, header and body together.
	r.buf = bufio.NewReaderSize(pipe, 64<<10)
	r.rd = codec.NewReader(r.buf, maxFrame)
	r.kick = make(chan struct{}, 1)
}

func (r *reader) cas(from, to readRole) bool {
	return r.role.CompareAndSwap(int32(from), int32(to))
}

// wake gives the role to the background reader if nobody holds it.
func (r *reader) wake() {
	if r.cas(roleFree, roleBackground) {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
}

// beginCall marks the caller's read as interruptible.
func (r *reader) beginCall() {
	r.imu.Lock()
	r.calling = true
	r.imu.Unlock()
}

// endCall ends a caller's read, clearing any interruption.
func (r *reader) endCall() {
	r.imu.Lock()
	r.calling = false
	_ = r.pipe.SetReadDeadline(time.Time{})
	r.imu.Unlock()
}

// interrupt ends a caller's blocked read; codec.Reader resumes the frame it
// was reading for the next holder.
func (r *reader) interrupt() {
	r.imu.Lock()
	if r.calling {
		_ = r.pipe.SetReadDeadline(aLongTimeAgo)
	}
	r.imu.Unlock()
}
