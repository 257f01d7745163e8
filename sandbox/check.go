package sandbox

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/sys/unix"
)

// Check reports, as an error matching ErrUnsupported (or ErrInvalid for a
// malformed Sandbox), the first control of s this machine cannot apply,
// and why: a Credential other than the host's without CAP_SETUID and
// CAP_SETGID, a namespace the kernel or the host's privileges do not
// allow, a cgroup limit without its controller, seccomp or Landlock
// missing from the kernel, or a Landlock path that does not exist. The
// probes run once per process (a namespace probe starts a process that
// fails to exec); Check is cheap after that.
func (s *Sandbox) Check() error {
	if err := s.Validate(); err != nil {
		return err
	}
	if c := s.Credential; c != nil {
		same := int(c.UID) == os.Geteuid() && int(c.GID) == os.Getegid() && len(c.Groups) == 0
		if !same && !(hasCap(unix.CAP_SETUID) && hasCap(unix.CAP_SETGID)) && !s.Namespaces.User {
			return fmt.Errorf("%w: Credential %d:%d: changing user needs CAP_SETUID and CAP_SETGID, which the host lacks", ErrUnsupported, c.UID, c.GID)
		}
	}
	if flags := s.CloneFlags(); flags != 0 {
		if err := probeClone(flags); err != nil {
			return fmt.Errorf("%w: Namespaces %s: %v", ErrUnsupported, nsNames(flags), err)
		}
	}
	if s.NeedsCgroup() {
		if err := probeCgroups().limitsError(s); err != nil {
			return err
		}
	}
	if s.Seccomp != nil {
		if !seccompSupported() {
			return fmt.Errorf("%w: Seccomp: the kernel has no seccomp filters (CONFIG_SECCOMP_FILTER)", ErrUnsupported)
		}
		if _, err := s.Seccomp.Program(); err != nil {
			return err
		}
	}
	if s.Landlock != nil {
		if err := s.Landlock.check(); err != nil {
			return err
		}
	}
	return nil
}

// CloneFlags returns the CLONE_NEW* flags of the namespaces s asks for,
// but CLONE_NEWPID (the containment's business).
func (s *Sandbox) CloneFlags() uintptr {
	var f uintptr
	n := s.Namespaces
	for _, x := range []struct {
		on   bool
		flag uintptr
	}{{n.User, unix.CLONE_NEWUSER}, {n.Network, unix.CLONE_NEWNET}, {n.Mount, unix.CLONE_NEWNS},
		{n.IPC, unix.CLONE_NEWIPC}, {n.UTS, unix.CLONE_NEWUTS}} {
		if x.on {
			f |= x.flag
		}
	}
	return f
}

func nsNames(flags uintptr) string {
	var names []string
	for _, x := range []struct {
		flag uintptr
		name string
	}{{unix.CLONE_NEWUSER, "User"}, {unix.CLONE_NEWNET, "Network"}, {unix.CLONE_NEWNS, "Mount"},
		{unix.CLONE_NEWIPC, "IPC"}, {unix.CLONE_NEWUTS, "UTS"}, {unix.CLONE_NEWPID, "PID"}} {
		if flags&x.flag != 0 {
			names = append(names, x.name)
		}
	}
	return fmt.Sprint(names)
}

var cloneProbes sync.Map // flags -> error

// probeClone reports whether this process may start a child in new
// namespaces of the given kinds: it starts one that fails to exec at once
// (/dev/null is not executable), so that a clone error is told from an
// exec error without running anything.
func probeClone(flags uintptr) error {
	if v, ok := cloneProbes.Load(flags); ok {
		err, _ := v.(error)
		return err
	}
	attr := &syscall.ProcAttr{Sys: &syscall.SysProcAttr{Cloneflags: flags}}
	_, err := syscall.ForkExec("/dev/null", []string{"procpool-probe"}, attr)
	switch {
	case err == nil: // cannot happen: /dev/null is not executable
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.ENOEXEC):
		err = nil // cloned, then failed to exec: the namespaces were made
	case errors.Is(err, syscall.EPERM):
		err = fmt.Errorf("not permitted (the host needs CAP_SYS_ADMIN, or a user namespace: %w)", err)
	case errors.Is(err, syscall.EINVAL):
		err = fmt.Errorf("the kernel does not support them: %w", err)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EUSERS):
		err = fmt.Errorf("the namespace limit is reached (/proc/sys/user/max_*_namespaces): %w", err)
	}
	cloneProbes.Store(flags, err)
	return err
}

// ProbeNamespaces reports whether this process may start children in new
// namespaces of the kinds in flags (CLONE_NEW* flags), and why not.
func ProbeNamespaces(flags uintptr) error { return probeClone(flags) }

var (
	seccompOnce sync.Once
	seccompOK   bool
)

func seccompSupported() bool {
	seccompOnce.Do(func() { seccompOK = seccomp.Supported() })
	return seccompOK
}

// hasCap reports whether this process has capability c in its effective
// set.
func hasCap(c int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[c/32].Effective&(1<<uint(c%32)) != 0
}

// HasCapSysAdmin reports whether this process has CAP_SYS_ADMIN.
func HasCapSysAdmin() bool { return hasCap(unix.CAP_SYS_ADMIN) }
