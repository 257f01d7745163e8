package childproc

import (
	"fmt"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/procpool/procpool/sandbox"
)

// nsShare is the set of namespaces that the workers of one job type share
// (the same Spec.Name and the same namespaces in their sandbox, without
// Namespaces.PerWorker): the network, IPC and UTS namespaces their sandbox
// asks for, and its user namespace. Each worker still has a PID namespace
// of its own (it is what kills the worker's tree) and a mount namespace of
// its own (with that PID namespace's /proc), held by its init.
//
// The share holds no process: it is descriptors of the namespaces
// (/proc/<pid>/ns/*), opened by the host from an init made once for it
// and killed at once, which keep the namespaces alive; each worker joins
// them (setns) before it runs. Its namespaces are made in the host's user
// namespace, the user namespace last, as an init of its own would make
// them, so a worker in the user namespace has no capability over the
// others. A share lives while a worker of its job type runs, and
// spareLinger after the last (see lingering); ReleaseSpares ends an unused
// one at once.
//
// Making a network namespace costs the kernel a millisecond or two, and
// destroying one more, in a kernel worker: sharing one is most of what
// makes a sandboxed start affordable. What the workers of a job type share
// so is listed at sandbox.Namespaces.PerWorker and in docs/isolation.md.
type nsShare struct {
	key    shareKey
	ns     []nsFile   // in the order a worker joins them: the user namespace last
	linger *lingering // its workers, guarded by shares.mu; its end closes the share
}

// nsFile is a descriptor of one namespace, its CLONE_NEW* flag and its
// name in /proc/<pid>/ns.
type nsFile struct {
	f    *os.File
	flag uintptr
	name string
}

// shareKey is what makes workers share namespaces: their job type's name
// and the namespaces and ids of their sandbox.
type shareKey struct {
	name  string
	shape initShape // private is always false: mounts are not shared
}

// shares are the host's nsShares.
var shares = struct {
	mu sync.Mutex
	m  map[shareKey]*nsShare
}{m: map[shareKey]*nsShare{}}

// sharedNamespaces lists the namespaces an nsShare holds, as a worker
// joins them.
var sharedNamespaces = []struct {
	name string
	flag uintptr
}{{"net", unix.CLONE_NEWNET}, {"ipc", unix.CLONE_NEWIPC}, {"uts", unix.CLONE_NEWUTS}, {"user", unix.CLONE_NEWUSER}}

// shareKeyOf returns the key of the namespaces a worker named name with
// sandbox sb shares, and false if it shares none (PerWorker, or none to
// share).
func shareKeyOf(name string, sb *sandbox.Sandbox) (shareKey, bool) {
	if sb.Namespaces.PerWorker {
		return shareKey{}, false
	}
	sh := nsShape(sb)
	sh.private = false
	return shareKey{name: name, shape: sh}, sh.flags != 0 || sh.user
}

// acquireShare returns the namespaces a worker named name with sandbox sb
// shares, made if need be, counting one more user; nil if it shares none.
// The caller calls release once the worker has ended (or failed to start).
func acquireShare(name string, sb *sandbox.Sandbox) (*nsShare, error) {
	key, ok := shareKeyOf(name, sb)
	if !ok {
		return nil, nil
	}
	shares.mu.Lock()
	defer shares.mu.Unlock()
	s := shares.m[key]
	if s == nil {
		var err error
		if s, err = newShare(key, sb); err != nil {
			return nil, err
		}
		shares.m[key] = s
	}
	s.linger.acquire()
	return s, nil
}

// newShare makes the namespaces of key: an init of their shape, whose
// namespaces are opened, then killed. (Its pid cannot have been reused
// before: it is reaped only by kill.)
func newShare(key shareKey, sb *sandbox.Sandbox) (*nsShare, error) {
	var init *nsInit
	var err error
	onInitThread(func() { init, err = newInit(sb, key.shape) })
	if err != nil {
		return nil, err
	}
	defer init.kill()
	s := &nsShare{key: key}
	s.linger = newLingering(&shares.mu, func() func() {
		delete(shares.m, s.key)
		s.close()
		return nil
	})
	dir := "/proc/" + strconv.Itoa(init.pid) + "/ns/"
	for _, n := range sharedNamespaces {
		if n.flag == unix.CLONE_NEWUSER && !key.shape.user || n.flag != unix.CLONE_NEWUSER && key.shape.flags&n.flag == 0 {
			continue
		}
		f, err := os.Open(dir + n.name)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("childproc: holding the %s namespace of a job type's workers: %w", n.name, err)
		}
		s.ns = append(s.ns, nsFile{f: f, flag: n.flag, name: n.name})
	}
	return s, nil
}

// close releases the namespaces' descriptors: the kernel destroys each
// namespace once no process is in it either.
func (s *nsShare) close() {
	for _, n := range s.ns {
		n.f.Close()
	}
	s.ns = nil
}

// release counts one user less; the namespaces go spareLinger after the
// last.
func (s *nsShare) release() {
	if s == nil {
		return
	}
	shares.mu.Lock()
	defer shares.mu.Unlock()
	s.linger.release()
}

// releaseUnusedShares ends at once the shares no worker uses of the names
// mine reports.
func releaseUnusedShares(mine func(string) bool) {
	shares.mu.Lock()
	defer shares.mu.Unlock()
	for k, s := range shares.m {
		if mine(k.name) {
			s.linger.endIfUnused() // its end returns nil
		}
	}
}
