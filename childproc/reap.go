package childproc

import (
	"errors"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// reap is the one goroutine that waits for the process. It first waits
// without reaping, so that the pid and process group id stay reserved
// while it kills what is left of the process's tree, then reaps it, waits
// until the tree is gone (the namespace's init reaped, the cgroup empty),
// lets the output readers drain and closes every host end.
func (p *Process) reap(stdout, stderr *os.File, readers *sync.WaitGroup) {
	var waitErr error
	for {
		var si unix.Siginfo
		waitErr = unix.Waitid(unix.P_PID, p.pid, &si, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(waitErr, unix.EINTR) {
			break
		}
	}
	requested := p.requested.Load()
	p.mu.Lock()
	p.reaped = true
	killed := false
	if waitErr == nil {
		// What the process started dies with it. The exited process, not
		// reaped yet, still holds its pid and group id.
		killed = p.killTree()
	}
	p.mu.Unlock()

	err := p.cmd.Wait()
	info := exitInfoFrom(p.pid, p.cmd.ProcessState, err)
	info.Requested = requested
	if p.init != nil {
		p.init.wait() // returns once every other process of the namespace is gone
		inits.ended(p.name, p.init.shape)
	}
	p.share.release()
	if p.shared != nil {
		defer releaseShared() // once the cgroup is empty
	}
	if p.contain == ContainSession {
		killSession(p.pid)
	}
	if c := p.cgroup; c != nil {
		// Nothing enters the cgroup once its worker is dead: if it was
		// empty then, it still is.
		if c.Killable() && (killed || waitErr != nil) {
			if err := c.KillAll(cgroupWait); err != nil {
				p.note(hclog.Warn, "the worker's cgroup did not empty", "error", err)
			}
		}
		if n, err := c.OOMKills(); err == nil {
			info.OOMKills = n
		}
		if err := releaseCgroup(c); err != nil {
			p.note(hclog.Warn, "deleting the worker's cgroup", "error", err)
		}
	}

	// The write ends of stdout and stderr are gone with the tree, unless
	// a process that escaped it holds them: see drainReader.
	close(p.reapedCh)
	deadline := time.Now().Add(stdioDrain)
	_ = stdout.SetReadDeadline(deadline) // for a Read already waiting
	_ = stderr.SetReadDeadline(deadline)
	readers.Wait() // the readers close stdout and stderr; the loggers go on

	_ = p.input.Close()
	p.drainOutput()
	_ = p.output.Close()

	info.StderrTail = p.tail.snapshot()
	p.exit = info
	p.note(hclog.Debug, "process ended", "exit", info.String(), "requested", info.Requested)
	for _, s := range p.streams {
		s.seal()
	}
	close(p.done)
}

const (
	// outputDrain and outputDrainMax bound the wait, after the reap, for
	// the caller to read what is left in the worker→host pipe before the
	// host end is closed: the wait ends when the pipe is empty, when the
	// caller has read nothing for outputDrain, or after outputDrainMax.
	outputDrain    = 500 * time.Millisecond
	outputDrainMax = 10 * time.Second
)

// cgroupWait bounds the wait, after the reap, for a killed cgroup to
// empty.
const cgroupWait = 10 * time.Second

// drainOutput waits, after the reap, while the caller reads what is left
// in the worker→host pipe.
func (p *Process) drainOutput() {
	start := time.Now()
	progress, last := start, -1
	for {
		n, err := unread(p.output)
		if err != nil || n == 0 {
			return
		}
		now := time.Now()
		if last < 0 || n < last {
			progress = now
		}
		last = n
		if now.Sub(progress) > outputDrain || now.Sub(start) > outputDrainMax {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// note logs a record of the Process's own, after the lines read before it,
// without waiting for the logger.
func (p *Process) note(level hclog.Level, msg string, args ...any) {
	if p.log.GetLevel() <= level {
		p.streams[1].note(level, msg, args...)
	}
}
