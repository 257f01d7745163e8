package childproc

import (
	"sync"

	"github.com/procpool/procpool/sandbox"
)

// initPool keeps one init made ahead for each shape of workers with PID
// namespaces of their own (ContainPIDNamespace) that are running, so that
// a start finds its namespaces ready: making an init (a fork, an execve, a
// few injected calls, a mount namespace with its /proc, and with
// Namespaces.PerWorker a network namespace perhaps) costs about half a
// millisecond or more, which then overlaps, on the init thread, with the
// previous worker's own start instead of delaying the next one. A spare
// outlives the last process of its shape by spareLinger (see lingering),
// then goes, and its slot with it (a host that runs many names in turn
// keeps slots only for those running or just ended); an init is never used
// twice (its PID namespace dies with its worker).
type initPool struct {
	mu    sync.Mutex
	slots map[initKey]*initSlot
}

// initKey names a slot of the pool: the workers' name (Spec.Name) and the
// shape of their inits, so that a name's spares can be ended alone
// (ReleaseSpares).
type initKey struct {
	name  string
	shape initShape
}

type initSlot struct {
	spare  *nsInit
	making chan struct{} // closed when the spare being made is ready (or failed); nil: none is
	linger *lingering    // its users: the live processes of this shape; its end takes the spare
}

// newSlot returns an empty slot of p for k. Its end takes its spare and
// removes it from p, unless a spare is being made for it: the maker then
// removes it (started).
func (p *initPool) newSlot(k initKey) *initSlot {
	s := &initSlot{}
	s.linger = newLingering(&p.mu, func() func() {
		n := s.spare
		s.spare = nil
		if s.making == nil {
			p.drop(k, s)
		}
		return func() { n.kill() }
	})
	return s
}

// drop removes slot s of k from p, if it is still there; p.mu is held.
func (p *initPool) drop(k initKey, s *initSlot) {
	if p.slots[k] == s {
		delete(p.slots, k)
	}
}

var inits = initPool{slots: map[initKey]*initSlot{}}

// take returns an init for sb: the spare of its shape if one is ready and
// alive, or being made (making another would only queue behind it on the
// init thread), else a new one.
func (p *initPool) take(name string, sb *sandbox.Sandbox) (*nsInit, error) {
	sh := shapeOf(sb)
	p.mu.Lock()
	var n *nsInit
	if s := p.slots[initKey{name, sh}]; s != nil {
		if s.spare == nil && s.making != nil {
			making := s.making
			p.mu.Unlock()
			<-making
			p.mu.Lock()
		}
		n, s.spare = s.spare, nil
	}
	p.mu.Unlock()
	if n != nil && n.alive() {
		return n, nil
	}
	n.kill()
	var err error
	onInitThread(func() { n, err = newInit(sb, sh) })
	return n, err
}

// started records a running process named name of sb's shape and has a
// spare made for the next, in the background.
func (p *initPool) started(name string, sb *sandbox.Sandbox) {
	sh := shapeOf(sb)
	k := initKey{name, sh}
	p.mu.Lock()
	s := p.slots[k]
	if s == nil {
		s = p.newSlot(k)
		p.slots[k] = s
	}
	s.linger.acquire()
	if s.spare != nil || s.making != nil {
		p.mu.Unlock()
		return
	}
	making := make(chan struct{})
	s.making = making
	p.mu.Unlock()
	sbCopy := *sb
	go onInitThread(func() {
		n, err := newInit(&sbCopy, sh)
		p.mu.Lock()
		s.making = nil
		// Kept while a process of the shape runs or has just ended (the
		// linger then ends the spare).
		keep := err == nil && s.spare == nil && s.linger.kept()
		if keep {
			s.spare = n
		}
		if !s.linger.kept() {
			p.drop(k, s) // it ended while the spare was being made
		}
		p.mu.Unlock()
		close(making)
		if err == nil && !keep {
			n.kill()
		}
	})
}

// ended records the end of a process named name of the shape; the spare
// goes spareLinger after the last.
func (p *initPool) ended(name string, sh initShape) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.slots[initKey{name, sh}]; s != nil {
		s.linger.release()
	}
}

// sharedInit is the init of the PID namespace the host's workers share
// (ContainSharedNamespace): made at the first such start, kept while any
// of them runs and spareLinger after (see lingering), made again at a
// start if it died.
var sharedInit = newSharedNamespace()

// sharedNamespace holds the shared PID namespace's init.
type sharedNamespace struct {
	mu   sync.Mutex
	init *nsInit
	// linger counts the workers in the namespace, those of an init that
	// died and was replaced too (they end soon: they died with it); its
	// end kills the init.
	linger *lingering
}

func newSharedNamespace() *sharedNamespace {
	s := &sharedNamespace{}
	s.linger = newLingering(&s.mu, func() func() {
		n := s.init
		s.init = nil
		return func() { n.kill() }
	})
	return s
}

// shared returns the shared init, made (or made again, if it died) on the
// init thread, and counts one more user; the caller must call
// releaseShared once its worker has ended, or at once if it fails to
// start.
func shared() (*nsInit, error) {
	s := sharedInit
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.init; n == nil || !n.alive() {
		// A dead init is reaped at once: its workers died with its
		// namespace, whether or not their ends are recorded yet.
		n.kill()
		s.init = nil
		var err error
		onInitThread(func() { n, err = newInit(&sandbox.Sandbox{}, initShape{}) })
		if err != nil {
			return nil, err
		}
		s.init = n
	}
	s.linger.acquire()
	return s.init, nil
}

// releaseShared counts one user less of the shared init; after the last,
// the init goes spareLinger later.
func releaseShared() {
	sharedInit.mu.Lock()
	defer sharedInit.mu.Unlock()
	sharedInit.linger.release()
}
