package childproc

import (
	"sync"
	"time"

	"github.com/procpool/procpool/sandbox"
)

// maxSpareCgroups bounds the empty cgroups kept for reuse.
const maxSpareCgroups = 8

// cgroupPool keeps the empty cgroups of ended workers that had no limits
// (a cgroup only to be killed: ContainSharedNamespace, ContainCgroup) for
// the next ones: creating and removing a cgroup costs the kernel more
// than the rest of a worker's containment. They are removed spareLinger
// after the last worker that used one has ended. A cgroup with limits is
// never reused: its memory charge and counters belong to its worker.
var cgroupPool struct {
	mu     sync.Mutex
	spares []*sandbox.Cgroup
	users  int
	linger *time.Timer
}

// takeCgroup returns the cgroup for a worker with sandbox sb: a spare
// if it needs no limits and one is left, else a new one.
func takeCgroup(sb *sandbox.Sandbox, killable bool) (*sandbox.Cgroup, error) {
	if sb.NeedsCgroup() || !killable {
		return sandbox.NewCgroup(sb, killable)
	}
	cgroupPool.mu.Lock()
	cgroupPool.users++
	if cgroupPool.linger != nil {
		cgroupPool.linger.Stop()
		cgroupPool.linger = nil
	}
	var c *sandbox.Cgroup
	if n := len(cgroupPool.spares); n > 0 {
		c, cgroupPool.spares = cgroupPool.spares[n-1], cgroupPool.spares[:n-1]
	}
	cgroupPool.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c, err := sandbox.NewCgroup(sb, true)
	if err != nil {
		releaseCgroup(nil)
	}
	return c, err
}

// pooled reports whether c came from takeCgroup's pool side (no limits,
// killable).
func pooled(sb *sandbox.Sandbox, killable bool) bool { return !sb.NeedsCgroup() && killable }

// releaseCgroup gives back the empty cgroup of an ended worker (nil: the
// worker had none after all); it is kept for reuse or removed.
func releaseCgroup(c *sandbox.Cgroup) {
	cgroupPool.mu.Lock()
	defer cgroupPool.mu.Unlock()
	cgroupPool.users--
	if c != nil {
		// A killed cgroup would kill the next worker cloned into it (see
		// sandbox.Cgroup.Killed).
		if !c.Killed() && c.Empty() && len(cgroupPool.spares) < maxSpareCgroups {
			cgroupPool.spares = append(cgroupPool.spares, c)
		} else {
			_ = c.Delete()
		}
	}
	if cgroupPool.users > 0 {
		return
	}
	if cgroupPool.linger != nil {
		cgroupPool.linger.Stop()
	}
	cgroupPool.linger = time.AfterFunc(spareLinger, func() {
		cgroupPool.mu.Lock()
		var gone []*sandbox.Cgroup
		if cgroupPool.users == 0 {
			gone, cgroupPool.spares = cgroupPool.spares, nil
			cgroupPool.linger = nil
		}
		cgroupPool.mu.Unlock()
		for _, c := range gone {
			_ = c.Delete()
		}
	})
}
