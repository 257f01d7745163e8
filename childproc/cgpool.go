package childproc

import (
	"sync"

	"github.com/procpool/procpool/sandbox"
)

// maxSpareCgroups bounds the empty cgroups kept for reuse.
const maxSpareCgroups = 8

// cgroupSpares saves the starts of workers the cost of making and
// removing their cgroups, which the kernel charges more for than the rest
// of a worker's containment (a memory cgroup, above all):
//
//   - The empty cgroups of ended workers that had no limits (a cgroup only
//     to be killed: ContainSharedNamespace, ContainCgroup) are reused by
//     the next ones.
//   - The empty cgroup of an ended worker with limits is reused by the
//     next worker of the same job type (Spec.Name) with the same limits,
//     its OOM kill counter reset (sandbox.Cgroup.ResetCounters). What the
//     kernel still charges to it is its predecessor's: page cache, which
//     the kernel reclaims before it would OOM-kill anything, and the
//     files a worker left in a tmpfs, which the job type's workers share
//     anyway. Made fresh each time, the memory cgroup of every ended
//     worker would stay in the kernel as an offline ("zombie") cgroup for
//     as long as any of those pages lives.
//   - Where none is to be reused, each start of a worker with limits makes,
//     in the background, a fresh cgroup with the same limits for the next
//     one (one per job type and limits).
//
// Spares of every kind are removed spareLinger after the last worker that
// used the pool has ended (see lingering).
type cgroupSpares struct {
	mu      sync.Mutex
	reused  []*sandbox.Cgroup               // without limits
	limited map[limitsKey][]*sandbox.Cgroup // with limits, empty, to reuse
	ahead   map[limitsKey]*sandbox.Cgroup   // with limits, made ahead
	making  map[limitsKey]bool
	keys    map[*sandbox.Cgroup]limitsKey // of the limited cgroups taken
	linger  *lingering                    // its users: the cgroups taken and not given back
}

// cgroupPool is the host's cgroupSpares.
var cgroupPool = newCgroupSpares()

func newCgroupSpares() *cgroupSpares {
	p := &cgroupSpares{limited: map[limitsKey][]*sandbox.Cgroup{}, ahead: map[limitsKey]*sandbox.Cgroup{},
		making: map[limitsKey]bool{}, keys: map[*sandbox.Cgroup]limitsKey{}}
	p.linger = newLingering(&p.mu, p.takeSpares)
	return p
}

// limitsKey is what a cgroup made ahead or reused must match: the job
// type and its limits.
type limitsKey struct {
	name     string
	memory   uint64
	cpu      float64
	pids     int
	killable bool
}

// takeCgroup returns the cgroup for a worker named name with sandbox sb:
// a spare if one fits, else a new one. It must be given back with
// releaseCgroup.
func takeCgroup(name string, sb *sandbox.Sandbox, killable bool) (*sandbox.Cgroup, error) {
	return cgroupPool.take(name, sb, killable)
}

// releaseCgroup gives back the cgroup of an ended worker, emptied (nil:
// the worker had none after all): it is kept for reuse or removed, and an
// error says why it could not be removed.
func releaseCgroup(c *sandbox.Cgroup) error { return cgroupPool.release(c) }

func (p *cgroupSpares) take(name string, sb *sandbox.Sandbox, killable bool) (*sandbox.Cgroup, error) {
	var c *sandbox.Cgroup
	k := limitsKey{name, sb.Memory, sb.CPU, sb.Pids, killable}
	p.mu.Lock()
	p.linger.acquire()
	if sb.NeedsCgroup() {
		if n := len(p.limited[k]); n > 0 {
			c = p.limited[k][n-1]
			p.limited[k] = p.limited[k][:n-1]
		} else {
			c = p.ahead[k]
			delete(p.ahead, k)
		}
		if len(p.limited[k]) == 0 && p.ahead[k] == nil && !p.making[k] {
			p.making[k] = true
			go p.makeAhead(k)
		}
	} else if n := len(p.reused); n > 0 && killable {
		c, p.reused = p.reused[n-1], p.reused[:n-1]
	}
	p.mu.Unlock()
	if c == nil {
		var err error
		if c, err = sandbox.NewCgroup(sb, killable); err != nil {
			_ = p.release(nil)
			return nil, err
		}
	}
	if c.Limited() {
		p.mu.Lock()
		p.keys[c] = k
		p.mu.Unlock()
	}
	return c, nil
}

// makeAhead makes the cgroup that the next worker with limits k takes.
func (p *cgroupSpares) makeAhead(k limitsKey) {
	c, err := sandbox.NewCgroup(&sandbox.Sandbox{Memory: k.memory, CPU: k.cpu, Pids: k.pids}, k.killable)
	p.mu.Lock()
	p.making[k] = false
	if err == nil && p.linger.inUse() && p.ahead[k] == nil {
		p.ahead[k], c = c, nil
	}
	p.mu.Unlock()
	if c != nil {
		_ = c.Delete()
	}
}

func (p *cgroupSpares) release(c *sandbox.Cgroup) error {
	// A killed cgroup would kill the next worker cloned into it (see
	// sandbox.Cgroup.Killed).
	reusable := c != nil && (c.Limited() || c.Killable()) && !c.Killed() && c.Empty()
	if reusable && c.Limited() {
		reusable = c.ResetCounters() == nil
	}
	p.mu.Lock()
	p.linger.release()
	if c != nil {
		k, limited := p.keys[c]
		delete(p.keys, c)
		switch {
		case !reusable:
		case limited && len(p.limited[k]) < maxSpareCgroups:
			p.limited[k] = append(p.limited[k], c)
			c = nil
		case !c.Limited() && len(p.reused) < maxSpareCgroups:
			p.reused = append(p.reused, c)
			c = nil
		}
	}
	p.mu.Unlock()
	if c != nil {
		return c.Delete()
	}
	return nil
}

// takeSpares, the end of the pool's linger, takes every spare out of the
// pool (with p.mu held) and returns the func that removes them.
func (p *cgroupSpares) takeSpares() (remove func()) {
	gone := p.reused
	p.reused = nil
	for k, cs := range p.limited {
		gone = append(gone, cs...)
		delete(p.limited, k)
	}
	for k, c := range p.ahead {
		gone = append(gone, c)
		delete(p.ahead, k)
	}
	return func() {
		for _, c := range gone {
			_ = c.Delete()
		}
	}
}
