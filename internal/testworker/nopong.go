package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/procpool/procpool/worker"
)

// serveWithoutPongs serves like worker.Main, except that pings never reach
// the SDK, so the host's heartbeats go unanswered while jobs still run. It
// returns the exit code.
func serveWithoutPongs(s *worker.Server) int {
	for _, fd := range []int{3, 4} {
		syscall.CloseOnExec(fd)
		if err := syscall.SetNonblock(fd, true); err != nil {
			fmt.Fprintf(os.Stderr, "testworker: fd %d: %v\n", fd, err)
			return worker.ExitError
		}
	}
	in, out := os.NewFile(3, "host-in"), os.NewFile(4, "host-out")
	err := s.ServeConn(context.Background(), &dropPings{f: in}, out)
	var p *worker.PanicError
	switch {
	case err == nil:
		return worker.ExitOK
	case errors.As(err, &p):
		return worker.ExitPanic
	default:
		fmt.Fprintf(os.Stderr, "testworker: %v\n", err)
		return worker.ExitError
	}
}

// dropPings reads frames from f and passes on all but pings.
type dropPings struct {
	f    *os.File
	hdr  [4]byte
	body []byte
	left []byte // what is still to pass on of the current frame
}

func (d *dropPings) Read(p []byte) (int, error) {
	for len(d.left) == 0 {
		if _, err := io.ReadFull(d.f, d.hdr[:]); err != nil {
			return 0, err
		}
		n := binary.BigEndian.Uint32(d.hdr[:])
		if n > 64<<20 { // let the SDK refuse it
			d.left = d.hdr[:]
			break
		}
		if cap(d.body) < 4+int(n) {
			d.body = make([]byte, 4+int(n))
		}
		d.body = d.body[:4+n]
		copy(d.body, d.hdr[:])
		if _, err := io.ReadFull(d.f, d.body[4:]); err != nil {
			return 0, err
		}
		// A ping is the msgpack array [6, seq]: 0x92 0x06 ...
		if n >= 2 && d.body[4] == 0x92 && d.body[5] == 0x06 {
			continue
		}
		d.left = d.body
	}
	n := copy(p, d.left)
	d.left = d.left[n:]
	return n, nil
}

// SetReadDeadline lets the SDK interrupt a read when it stops serving.
func (d *dropPings) SetReadDeadline(t time.Time) error { return d.f.SetReadDeadline(t) }
