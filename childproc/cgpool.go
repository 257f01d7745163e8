package childproc

import (
	"sync"
	"time"

	"github.com/procpool/procpool/sandbox"
)

// maxSpareCgroups bounds the empty cgroups kept for reuse.
const maxSpareCgroups = 8

// cgroupSpares saves the starts of workers the cost of making and
// removing their cgroups, which the kernel charges more for than the rest
// of a worker's containment:
//
//   - The empty cgroups of ended workers that had no limits (a cgroup only
//     to be killed: ContainSharedNamespace, ContainCgroup) are reused by
//     the next ones.
//   - A cgroup with limits is never reused (its memory charge and its
//     counters belong to its worker), but each start of a worker with
//     limits makes, in the background, a fresh cgroup with the same limits
//     for the next one (one per set of limits).
//
// Spares of both kinds are removed spareLinger after the last worker that
// used the pool has ended.
type cgroupSpares struct {
	mu     sync.Mutex
	reused []*sandbox.Cgroup
	ahead  map[limitsKey]*sandbox.Cgroup
	making map[limitsKey]bool
	users  int // cgroups taken and not given back
	linger *time.Timer
}

// cgroupPool is the host's cgroupSpares.
var cgroupPool = &cgroupSpares{ahead: map[limitsKey]*sandbox.Cgroup{}, making: map[limitsKey]bool{}}

// limitsKey is what a cgroup made ahead must match.
type limitsKey struct {
	memory   uint64
	cpu      float64
	pids     int
	killable bool
}

// takeCgroup returns the cgroup for a worker with sandbox sb: a spare if
// one fits, else a new one. It must be given back with releaseCgroup.
func takeCgroup(sb *sandbox.Sandbox, killable bool) (*sandbox.Cgroup, error) {
	return cgroupPool.take(sb, killable)
}

// releaseCgroup gives back the cgroup of an ended worker, emptied (nil:
// the worker had none after all): it is kept for reuse or removed, and an
// error says why it could not be removed.
func releaseCgroup(c *sandbox.Cgroup) error { return cgroupPool.release(c) }

func (p *cgroupSpares) take(sb *sandbox.Sandbox, killable bool) (*sandbox.Cgroup, error) {
	var c *sandbox.Cgroup
	p.mu.Lock()
	p.users++
	if p.linger != nil {
		p.linger.Stop()
		p.linger = nil
	}
	if sb.NeedsCgroup() {
		k := limitsKey{sb.Memory, sb.CPU, sb.Pids, killable}
		c = p.ahead[k]
		delete(p.ahead, k)
		if !p.making[k] {
			p.making[k] = true
			go p.makeAhead(k)
		}
	} else if n := len(p.reused); n > 0 && killable {
		c, p.reused = p.reused[n-1], p.reused[:n-1]
	}
	p.mu.Unlock()
	if c != nil {
		return c, nil
	}
	c, err := sandbox.NewCgroup(sb, killable)
	if err != nil {
		_ = p.release(nil)
	}
	return c, err
}

// makeAhead makes the cgroup that the next worker with limits k takes.
func (p *cgroupSpares) makeAhead(k limitsKey) {
	c, err := sandbox.NewCgroup(&sandbox.Sandbox{Memory: k.memory, CPU: k.cpu, Pids: k.pids}, k.killable)
	p.mu.Lock()
	p.making[k] = false
	if err == nil && p.users > 0 && p.ahead[k] == nil {
		p.ahead[k], c = c, nil
	}
	p.mu.Unlock()
	if c != nil {
		_ = c.Delete()
	}
}

func (p *cgroupSpares) release(c *sandbox.Cgroup) error {
	p.mu.Lock()
	p.users--
	// A killed cgroup would kill the next worker cloned into it (see
	// sandbox.Cgroup.Killed).
	if c != nil && !c.Limited() && c.Killable() && !c.Killed() && c.Empty() && len(p.reused) < maxSpareCgroups {
		p.reused = append(p.reused, c)
		c = nil
	}
	if p.users == 0 {
		if p.linger != nil {
			p.linger.Stop()
		}
		p.linger = time.AfterFunc(spareLinger, p.removeIfUnused)
	}
	p.mu.Unlock()
	if c != nil {
		return c.Delete()
	}
	return nil
}

// removeIfUnused removes the spares if no worker uses the pool.
func (p *cgroupSpares) removeIfUnused() {
	p.mu.Lock()
	var gone []*sandbox.Cgroup
	if p.users == 0 {
		gone, p.reused = p.reused, nil
		for k, c := range p.ahead {
			gone = append(gone, c)
			delete(p.ahead, k)
		}
		p.linger = nil
	}
	p.mu.Unlock()
	for _, c := range gone {
		_ = c.Delete()
	}
}
