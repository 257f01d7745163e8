package childproc

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/procpool/procpool/childproc/internal/plan"
	"github.com/procpool/procpool/childproc/internal/tracee"
)

// probePtrace starts the host binary traced and kills it at its exec
// stop: a child's PTRACE_TRACEME fails the same way as its execve would, so
// only a start that succeeds tells that ptrace works. It must not run on
// the fork thread.
func probePtrace() error {
	var err error
	onForkThread(func() {
		attr := &syscall.ProcAttr{Sys: &syscall.SysProcAttr{Ptrace: true, Pdeathsig: syscall.SIGKILL}}
		var pid int
		err = forkIn(nil, func() (err error) {
			pid, err = syscall.ForkExec("/proc/self/exe", []string{"procpool-probe"}, attr)
			return err
		})
		if err != nil {
			return
		}
		err = waitExecStop(pid)
		_ = unix.Kill(pid, unix.SIGKILL)
		for {
			var ws unix.WaitStatus
			if _, e := unix.Wait4(pid, &ws, unix.WALL, nil); !errors.Is(e, unix.EINTR) {
				break
			}
		}
	})
	return err
}

// traced is the traced start; it runs on the fork thread.
func (l *launch) traced() (*started, error) {
	sb := &l.spec.Sandbox
	var extra []*os.File
	opts := planOpts{landlockFD: -1}
	init, own, err := l.joinInit()
	if err != nil {
		return nil, err
	}
	mine := func() *nsInit { // the init to kill on failure
		if own {
			return init
		}
		return nil
	}
	if init != nil {
		opts.joins, extra = l.nsJoins(init, l.base())
		opts.cwd, opts.creds = l.cwd, sb.Credential
	}
	ll, llFlags, err := landlockRuleset(sb, init, l.program())
	if err != nil {
		mine().kill()
		return nil, err
	}
	if ll != nil {
		defer ll.Close()
		opts.landlockFD, opts.landlockFlags = l.base()+len(extra), llFlags
		extra = append(extra, ll)
	}
	pre, post, err := newSandboxPlan(sb, opts)
	if err != nil {
		mine().kill()
		return nil, err
	}
	cmd := l.cmd(l.path, l.spec.Args, l.env, extra...)
	cmd.SysProcAttr = l.sysProcAttr()
	cmd.SysProcAttr.Ptrace = true
	if err := l.cloneIntoCgroup(cmd.SysProcAttr); err != nil {
		mine().kill()
		return nil, err
	}
	err = forkIn(init, cmd.Start)
	if err != nil {
		mine().kill()
		return nil, err
	}
	pid := cmd.Process.Pid
	if err := l.setUp(pid, pre, post); err != nil {
		_ = unix.Kill(pid, unix.SIGKILL)
		_ = unix.PtraceDetach(pid)
		_ = cmd.Wait()
		mine().kill()
		return nil, err
	}
	return &started{cmd: cmd, init: mine()}, nil
}

// setUp applies everything to the traced child stopped after its execve,
// then lets it go.
func (l *launch) setUp(pid int, pre, post *plan.Plan) error {
	if err := waitExecStop(pid); err != nil {
		return err
	}
	if err := l.outside(pid); err != nil {
		return err
	}
	if err := applyRlimits(pid, l.spec.Limits); err != nil {
		return err
	}
	t, err := tracee.Attach(pid)
	if err != nil {
		return err
	}
	defer t.Close()
	// One batch: the plan's first part, closing what is past the worker's
	// descriptors, the rest. Before close_range (Linux 5.9), the
	// descriptors are closed one by one, then the rest runs.
	closing := &plan.Plan{}
	closing.Add("close the host's descriptors", unix.SYS_CLOSE_RANGE,
		plan.Val(uintptr(l.base())), plan.Val(uintptr(^uint32(0))), plan.Val(0))
	err = t.Run(plan.Join(pre, closing, post))
	var se *plan.StepError
	if errors.As(err, &se) && se.Step == len(pre.Steps) && errors.Is(err, unix.ENOSYS) {
		if err = closeEach(t, pid, l.base()); err == nil {
			err = t.Run(post)
		}
	}
	if err != nil {
		return fmt.Errorf("childproc: setting up pid %d: %w", pid, err)
	}
	return t.Detach()
}

// closeEach closes, in the stopped tracee, every descriptor from fd on,
// one close per open descriptor (kernels before 5.9 have no close_range).
func closeEach(t *tracee.Tracee, pid, fd int) error {
	names, err := readDirNames("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return err
	}
	for _, n := range names {
		if x, err := strconv.Atoi(n); err == nil && x >= fd {
			if _, err := t.Syscall("close the host's descriptors", unix.SYS_CLOSE, [6]uintptr{uintptr(x)}); err != nil {
				return err
			}
		}
	}
	return nil
}

func readDirNames(dir string) ([]string, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.Readdirnames(-1)
}
