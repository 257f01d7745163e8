package childproc

// ReleaseSpares ends at once what the package keeps ready for starts to
// come and no running process uses: the init of the PID namespace workers
// share, the inits and the cgroups made ahead, the empty cgroups kept for
// reuse, the namespaces a job type's workers share. Left alone they go spareLinger after the last process that used
// them, so that a worker restarted at once finds them ready; a caller that
// knows no start is coming (a pool that has shut down) calls
// ReleaseSpares so that no process of the package outlives its workers. It
// keeps whatever a running process still uses; a start after it makes
// them anew.
func ReleaseSpares() {
	inits.releaseUnused()
	releaseSharedIfUnused()
	releaseUnusedShares()
	cgroupPool.releaseUnused()
}

// releaseUnused kills the spare inits of the shapes no process uses.
func (p *initPool) releaseUnused() {
	var gone []*nsInit
	p.mu.Lock()
	for _, s := range p.slots {
		if s.users > 0 {
			continue
		}
		if s.linger != nil {
			s.linger.Stop()
			s.linger = nil
		}
		if s.spare != nil {
			gone = append(gone, s.spare)
			s.spare = nil
		}
	}
	p.mu.Unlock()
	for _, n := range gone {
		n.kill()
	}
}

// releaseSharedIfUnused kills the shared init if no worker uses it.
func releaseSharedIfUnused() {
	sharedInit.mu.Lock()
	var n *nsInit
	if sharedInit.users == 0 {
		n, sharedInit.init = sharedInit.init, nil
		if sharedInit.linger != nil {
			sharedInit.linger.Stop()
			sharedInit.linger = nil
		}
	}
	sharedInit.mu.Unlock()
	n.kill()
}

// releaseUnused removes the spare cgroups if no worker uses the pool.
func (p *cgroupSpares) releaseUnused() {
	p.mu.Lock()
	if p.users == 0 && p.linger != nil {
		p.linger.Stop()
		p.linger = nil
	}
	p.mu.Unlock()
	p.removeIfUnused()
}
