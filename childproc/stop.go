package childproc

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// minTermGrace is the least time Stop leaves between SIGTERM and
// SIGKILL.
const minTermGrace = 100 * time.Millisecond

// Stop ends the process gracefully and returns how it ended. It marks the
// stop as requested and closes Input (the child reads EOF on fd 3), then
// waits up to grace for the process to exit; then sends SIGTERM to the
// process group and waits max(grace/2, 100ms); then kills the process and
// everything it started (Kill). The end of ctx cuts the remaining waits short: SIGTERM and
// SIGKILL follow at once. Stop always waits for the reap, and returns only
// after Done is closed. Callers that want to send a protocol shutdown
// message first do so before calling Stop. If the process has already
// ended, Stop just returns its ExitInfo.
func (p *Process) Stop(ctx context.Context, grace time.Duration) ExitInfo {
	select {
	case <-p.done:
		return p.exit
	default:
	}
	p.requested.Store(true)
	_ = p.input.Close()
	if !p.waitDone(ctx, grace) {
		_ = p.Signal(syscall.SIGTERM)
		if !p.waitDone(ctx, max(grace/2, minTermGrace)) {
			_ = p.Kill()
		}
	}
	<-p.done
	return p.exit
}

// waitDone waits up to d for Done; false if it did not close in time or ctx
// ended first.
func (p *Process) waitDone(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		select {
		case <-p.done:
			return true
		default:
			return false
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		select {
		case <-p.done:
			return true
		default:
			return false
		}
	}
}

// Kill sends SIGKILL to the process and to every process it started now
// (its PID namespace, its cgroup, its process group: see Containment). It
// does not mark the end as requested (unless Stop was called too). It
// returns os.ErrProcessDone if the process has already ended.
func (p *Process) Kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return os.ErrProcessDone
	}
	_ = p.killTree()
	return nil
}

// Signal sends sig to the process group. It returns os.ErrProcessDone if
// the process has already ended; signalling never reaches a reused pid.
func (p *Process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return os.ErrProcessDone
	}
	if err := unix.Kill(-p.pid, sig); err != nil {
		return fmt.Errorf("childproc: sending %v to process group %d: %w", signalName(sig), p.pid, err)
	}
	return nil
}

// killTree sends SIGKILL to what the process started: its PID namespace
// (through its init), its cgroup (unless it is empty already: see
// sandbox.Cgroup.Killed), its process group. It reports whether it killed
// the cgroup. It must be called with p.mu held and the process not reaped
// yet.
func (p *Process) killTree() (cgroupKilled bool) {
	_ = unix.Kill(-p.pid, unix.SIGKILL)
	if p.init != nil {
		_ = unix.Kill(p.init.pid, unix.SIGKILL)
	}
	if c := p.cgroup; c != nil && c.Killable() && !c.Empty() {
		_ = c.Kill()
		return true
	}
	return false
}
