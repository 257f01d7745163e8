package childproc

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/procpool/procpool/sandbox"
)

// prepareAndStart makes the cgroup, then starts the child. On error it
// leaves nothing behind.
func (l *launch) prepareAndStart() (*started, error) {
	sb := &l.spec.Sandbox
	if sb.Namespaces.PID && l.mode != ContainPIDNamespace {
		return nil, fmt.Errorf("%w: Namespaces.PID: %s", sandbox.ErrUnsupported, probeHost().why)
	}
	cwd := l.spec.Dir
	if !filepath.IsAbs(cwd) {
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("childproc: the working directory: %w", err)
		}
		cwd = filepath.Join(wd, cwd)
	}
	l.cwd = cwd
	killable := l.mode == ContainCgroup || l.mode == ContainSharedNamespace
	if sb.NeedsCgroup() || killable {
		cg, err := takeCgroup(l.spec.Name, sb, killable)
		if err != nil {
			return nil, err
		}
		l.cgroup = cg
	}
	if l.mode == ContainPIDNamespace {
		share, err := acquireShare(l.spec.Name, sb)
		if err != nil {
			l.deleteCgroup()
			return nil, err
		}
		l.share = share
	}
	if l.mode == ContainSharedNamespace {
		init, err := shared()
		if err != nil {
			l.deleteCgroup()
			return nil, err
		}
		l.shared = init
	}
	s, err := l.start()
	if l.cgroupDir != nil {
		l.cgroupDir.Close()
	}
	if err != nil {
		if l.shared != nil {
			releaseShared()
		}
		l.share.release()
		l.deleteCgroup()
		return nil, err
	}
	return s, nil
}

func (l *launch) deleteCgroup() {
	if l.cgroup != nil {
		if l.cgroup.Killable() {
			_ = l.cgroup.KillAll(cgroupWait)
		}
		_ = releaseCgroup(l.cgroup)
		l.cgroup = nil
	}
}
