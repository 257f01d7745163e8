package sandbox

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// DefaultDeny is what the default seccomp profile denies: system calls a
// job has no business making. They administer the machine (mount, reboot,
// modules, swap, the clock, keyrings, kexec, quotas, accounting), look
// into or act on other processes (ptrace, process_vm_*, kcmp,
// pidfd_getfd, perf_event_open), make namespaces (unshare, setns; clone
// with a CLONE_NEW* flag is denied too), or open much of the kernel to
// attack for little use in a job (bpf, io_uring, userfaultfd, handle
// based opens). Names this architecture does not have are left out.
//
// clone3 is answered ENOSYS, not denied: its flags sit in memory where a
// filter cannot read them, and ENOSYS makes the C library fall back to
// clone, whose flags it can.
var DefaultDeny = []string{
	// the machine
	"acct", "clock_adjtime", "clock_settime", "settimeofday", "stime",
	"init_module", "finit_module", "delete_module", "create_module", "query_module", "get_kernel_syms",
	"kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff",
	"mount", "umount", "umount2", "pivot_root", "fsopen", "fsmount", "fsconfig", "fspick",
	"move_mount", "open_tree", "mount_setattr", "quotactl", "quotactl_fd", "nfsservctl",
	"sethostname", "setdomainname", "syslog", "vhangup", "iopl", "ioperm",
	"add_key", "request_key", "keyctl", "lookup_dcookie", "uselib", "ustat", "sysfs", "_sysctl",
	// other processes
	"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "perf_event_open",
	// namespaces
	"unshare", "setns",
	// attack surface
	"bpf", "io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd",
	"open_by_handle_at", "name_to_handle_at",
}

// cloneNewFlags are the clone flags that make namespaces.
const cloneNewFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// deny returns the action for a denied call.
func (s *Seccomp) deny() seccomp.Action {
	if s.Kill {
		return seccomp.ActionKillProcess
	}
	return seccomp.ActionErrno // EPERM
}

// enosys is the action that answers ENOSYS.
const enosys = seccomp.ActionErrno | seccomp.Action(unix.ENOSYS)

// policy builds the go-seccomp-bpf policy for this architecture; an
// allow-list also permits alsoAllow.
func (s *Seccomp) policy(alsoAllow ...string) (*seccomp.Policy, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return nil, err
	}
	known := func(names []string, what string) error {
		seen := map[string]bool{}
		for _, n := range names {
			if _, ok := info.SyscallNames[n]; !ok {
				return fmt.Errorf("%s: unknown system call %q on %s", what, n, info.Name)
			}
			if seen[n] {
				return fmt.Errorf("%s: %q twice", what, n)
			}
			seen[n] = true
		}
		return nil
	}
	if len(s.Allow) > 0 {
		if len(s.Deny) > 0 {
			return nil, errors.New("with Allow, Deny has no effect")
		}
		if err := known(s.Allow, "Allow"); err != nil {
			return nil, err
		}
		allow := append([]string(nil), s.Allow...)
		for _, n := range alsoAllow {
			if !contains(allow, n) {
				allow = append(allow, n)
			}
		}
		groups := []seccomp.SyscallGroup{{Names: allow, Action: seccomp.ActionAllow}}
		if !contains(allow, "clone3") {
			if _, ok := info.SyscallNames["clone3"]; ok {
				groups = append(groups, seccomp.SyscallGroup{Names: []string{"clone3"}, Action: enosys})
			}
		}
		return &seccomp.Policy{DefaultAction: s.deny(), Syscalls: groups}, nil
	}
	if err := known(s.Deny, "Deny"); err != nil {
		return nil, err
	}
	names := map[string]bool{}
	for _, n := range DefaultDeny {
		if _, ok := info.SyscallNames[n]; ok {
			names[n] = true
		}
	}
	for _, n := range s.Deny {
		names[n] = true
	}
	delete(names, "clone")
	delete(names, "clone3")
	denied := make([]string, 0, len(names))
	for n := range names {
		denied = append(denied, n)
	}
	sort.Strings(denied)
	groups := []seccomp.SyscallGroup{
		{Names: denied, Action: s.deny()},
		{NamesWithCondtions: []seccomp.NameWithConditions{{Name: "clone", Conditions: seccomp.ArgumentConditions{
			{Argument: 0, Operation: seccomp.BitsSet, Value: cloneNewFlags},
		}}}, Action: s.deny()},
	}
	if _, ok := info.SyscallNames["clone3"]; ok {
		groups = append(groups, seccomp.SyscallGroup{Names: []string{"clone3"}, Action: enosys})
	}
	return &seccomp.Policy{DefaultAction: seccomp.ActionAllow, Syscalls: groups}, nil
}

// Program assembles the filter for this architecture: a BPF program for
// seccomp(SECCOMP_SET_MODE_FILTER). A call made through another
// architecture's system call ABI (a 32-bit int 0x80 on x86-64, which
// would otherwise slip past the numbers the filter checks) kills the
// process. An allow-list also permits alsoAllow (childproc's re-exec
// trampoline installs the filter before its execve, which must pass).
func (s *Seccomp) Program(alsoAllow ...string) ([]unix.SockFilter, error) {
	key := s.key(alsoAllow)
	if p, ok := programs.Load(key); ok {
		return p.([]unix.SockFilter), nil
	}
	p, err := s.assemble(alsoAllow...)
	if err == nil {
		programs.Store(key, p)
	}
	return p, err
}

// programs caches the assembled programs by what they were made of (a
// job type's workers all ask for the same one): assembling costs a few
// hundred microseconds, which a start should not pay each time. The
// caller must not modify the program.
var programs sync.Map

// validate reports what is wrong with the names s lists, remembering the
// answer for the configuration.
func (s *Seccomp) validate() error {
	key := s.key(nil)
	if v, ok := validated.Load(key); ok {
		err, _ := v.(error)
		return err
	}
	_, err := s.policy()
	validated.Store(key, err)
	return err
}

// validated caches validate's answers by configuration.
var validated sync.Map

// key names the configuration of s with alsoAllow, for the caches.
func (s *Seccomp) key(alsoAllow []string) string {
	return fmt.Sprint(s.Allow, s.Deny, s.Kill, alsoAllow)
}

func (s *Seccomp) assemble(alsoAllow ...string) ([]unix.SockFilter, error) {
	pol, err := s.policy(alsoAllow...)
	if err != nil {
		return nil, fmt.Errorf("sandbox: seccomp: %w", err)
	}
	insts, err := pol.Assemble()
	if err != nil {
		return nil, fmt.Errorf("sandbox: seccomp: %w", err)
	}
	info, err := arch.GetInfo("")
	if err != nil {
		return nil, fmt.Errorf("sandbox: seccomp: %w", err)
	}
	prog := append([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(info.ID), SkipTrue: 1},
		bpf.RetConstant{Val: uint32(seccomp.ActionKillProcess)},
	}, insts...)
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("sandbox: seccomp: assembling: %w", err)
	}
	if len(raw) > bpfMaxInsns {
		return nil, fmt.Errorf("sandbox: seccomp: %d instructions, the kernel takes %d", len(raw), bpfMaxInsns)
	}
	out := make([]unix.SockFilter, len(raw))
	for i, in := range raw {
		out[i] = unix.SockFilter{Code: in.Op, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	return out, nil
}

// bpfMaxInsns is the kernel's limit on a classic BPF program.
const bpfMaxInsns = 4096

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
