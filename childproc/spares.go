package childproc

import (
	"slices"

	"github.com/procpool/procpool/sandbox"
)

// ReleaseSpares ends at once what the package keeps ready for starts to
// come and no running process uses: the init of the PID namespace workers
// share, the inits and the cgroups made ahead, the empty cgroups kept for
// reuse, the namespaces a job type's workers share. Left alone they go
// spareLinger after the last process that used them, so that a worker
// restarted at once finds them ready; a caller that knows no start is
// coming (a pool that has shut down) calls ReleaseSpares so that no
// process of the package outlives its workers. It keeps whatever a running
// process still uses; a start after it makes them anew.
//
// With names, it ends only what was kept for processes of those names
// (Spec.Name), and the shared PID namespace's init if no process uses it:
// a pool shutting down leaves the spares of other pools, which may still
// start workers, alone.
func ReleaseSpares(names ...string) {
	mine := func(name string) bool { return len(names) == 0 || slices.Contains(names, name) }
	inits.releaseUnused(mine)
	releaseSharedIfUnused()
	releaseUnusedShares(mine)
	cgroupPool.releaseUnused(mine)
}

// releaseUnused kills the spare inits no process uses of the names mine
// reports.
func (p *initPool) releaseUnused(mine func(string) bool) {
	var kills []func()
	p.mu.Lock()
	for k, s := range p.slots {
		if mine(k.name) {
			if kill := s.linger.endIfUnused(); kill != nil {
				kills = append(kills, kill)
			}
		}
	}
	p.mu.Unlock()
	for _, kill := range kills {
		kill()
	}
}

// releaseSharedIfUnused kills the shared init if no worker uses it.
func releaseSharedIfUnused() {
	sharedInit.mu.Lock()
	kill := sharedInit.linger.endIfUnused()
	sharedInit.mu.Unlock()
	if kill != nil {
		kill()
	}
}

// releaseUnused removes the spare cgroups of the names mine reports, and
// the plain ones kept for containment if no worker uses the pool. The
// pool's linger, if set, still removes what is left after it.
func (p *cgroupSpares) releaseUnused(mine func(string) bool) {
	p.mu.Lock()
	var gone []*sandbox.Cgroup
	if !p.linger.inUse() {
		gone, p.reused = p.reused, nil
	}
	for k, cs := range p.limited {
		if mine(k.name) {
			gone = append(gone, cs...)
			delete(p.limited, k)
		}
	}
	for k, c := range p.ahead {
		if mine(k.name) {
			gone = append(gone, c)
			delete(p.ahead, k)
		}
	}
	p.mu.Unlock()
	for _, c := range gone {
		_ = c.Delete()
	}
}
