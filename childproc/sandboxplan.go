package childproc

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/procpool/procpool/childproc/internal/plan"
	"github.com/procpool/procpool/sandbox"
)

// planOpts says where a worker's plan finds what it refers to, and what it
// must do besides the sandbox's own controls.
type planOpts struct {
	// unshareFS: the process is a threaded Go program (the trampoline),
	// which must stop sharing its file system attributes with its other
	// threads before it may join a mount namespace.
	unshareFS bool
	// joins are the namespaces the process joins first, in order; then
	// it changes to directory cwd (joining a mount namespace moves to its
	// root).
	joins []nsJoin
	cwd   string
	// creds, if not nil, are set by the plan (after the join: the mount
	// of the init's /proc needed root).
	creds *sandbox.Credential
	// landlockFD is the descriptor of the Landlock ruleset in the child,
	// or -1, and landlockFlags its landlock_restrict_self flags.
	landlockFD    int
	landlockFlags uint32
	// extraAllow are system calls a seccomp allow-list must permit
	// besides its own.
	extraAllow []string
}

// nsJoin is one setns(2) of a plan: the descriptor, in the child, of a
// namespace or of a pidfd (whose namespaces of flags it joins), and what
// it is, for errors.
type nsJoin struct {
	fd    int
	flags uintptr
	what  string
}

// newSandboxPlan returns the calls a worker makes on itself: pre before the
// host's descriptors are closed (it uses some), post after: only seccomp,
// last because nothing after it runs under our control.
func newSandboxPlan(s *sandbox.Sandbox, o planOpts) (pre, post *plan.Plan, err error) {
	pre, post = &plan.Plan{}, &plan.Plan{}
	if o.unshareFS {
		pre.Add("unshare CLONE_FS", unix.SYS_UNSHARE, plan.Val(unix.CLONE_FS))
	}
	for _, j := range o.joins {
		pre.Add(j.what, unix.SYS_SETNS, plan.Val(uintptr(j.fd)), plan.Val(j.flags))
	}
	if len(o.joins) > 0 {
		pre.Add("chdir "+o.cwd, unix.SYS_CHDIR, pre.Blob(cstr(o.cwd)))
	}
	if c := o.creds; c != nil {
		groups := make([]byte, 4*len(c.Groups))
		for i, g := range c.Groups {
			binary.NativeEndian.PutUint32(groups[4*i:], g)
		}
		gs := plan.Val(0)
		if len(groups) > 0 {
			gs = pre.Blob(groups)
		}
		pre.Add("setgroups", unix.SYS_SETGROUPS, plan.Val(uintptr(len(c.Groups))), gs)
		pre.Add("setresgid", unix.SYS_SETRESGID, plan.Val(uintptr(c.GID)), plan.Val(uintptr(c.GID)), plan.Val(uintptr(c.GID)))
		pre.Add("setresuid", unix.SYS_SETRESUID, plan.Val(uintptr(c.UID)), plan.Val(uintptr(c.UID)), plan.Val(uintptr(c.UID)))
	}
	if s.NeedsNoNewPrivs() {
		pre.Add("no_new_privs", unix.SYS_PRCTL, plan.Val(unix.PR_SET_NO_NEW_PRIVS), plan.Val(1))
	}
	if o.landlockFD >= 0 {
		pre.Add("landlock", unix.SYS_LANDLOCK_RESTRICT_SELF, plan.Val(uintptr(o.landlockFD)), plan.Val(uintptr(o.landlockFlags)))
	}
	if s.Seccomp != nil {
		prog, err := s.Seccomp.Program(o.extraAllow...)
		if err != nil {
			return nil, nil, err
		}
		filter := unsafe.Slice((*byte)(unsafe.Pointer(&prog[0])), len(prog)*int(unsafe.Sizeof(prog[0])))
		fprog := make([]byte, unsafe.Sizeof(unix.SockFprog{}))
		binary.NativeEndian.PutUint16(fprog, uint16(len(prog)))
		filterArg := post.Blob(append([]byte(nil), filter...))
		fprogArg := post.Blob(fprog)
		post.Relocs = append(post.Relocs, plan.Reloc{
			Blob: fprogArg.Blob - 1, Offset: int(unsafe.Offsetof(unix.SockFprog{}.Filter)), Target: filterArg.Blob - 1,
		})
		post.Add("seccomp", unix.SYS_SECCOMP, plan.Val(unix.SECCOMP_SET_MODE_FILTER), plan.Val(0), fprogArg)
	}
	return pre, post, nil
}
