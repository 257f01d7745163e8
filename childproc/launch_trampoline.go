package childproc

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/procpool/procpool/childproc/internal/plan"
	"github.com/procpool/procpool/childproc/internal/trampoline"
	"github.com/procpool/procpool/sandbox"
)

// trampolineWait bounds the wait for a trampoline to report.
const trampolineWait = 30 * time.Second

// viaTrampoline starts the worker through the re-exec trampoline: the
// host binary in exec mode, which applies the configuration written to
// its pipe and execs the worker, reporting a failure on its status pipe.
// Its descriptors past the worker's: base the configuration pipe, base+1
// the status pipe, then the init's pidfd and the Landlock ruleset.
func (l *launch) viaTrampoline() (*started, error) {
	sb := &l.spec.Sandbox
	if l.pidns() && sb.Namespaces.User {
		// Joining a user namespace takes a single-threaded process.
		return nil, fmt.Errorf("%w: Namespaces.User in a PID namespace needs ptrace, which is refused here", sandbox.ErrUnsupported)
	}
	base := l.base()
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("childproc: trampoline pipe: %w", err)
	}
	defer cfgW.Close()
	statR, statW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		return nil, fmt.Errorf("childproc: trampoline pipe: %w", err)
	}
	defer statR.Close()
	extra := []*os.File{cfgR, statW}
	opts := planOpts{landlockFD: -1, unshareFS: true, extraAllow: []string{"execve", "execveat"}}
	var init *nsInit
	own := false
	onForkThread(func() { init, own, err = l.joinInit() })
	if err != nil {
		cfgR.Close()
		statW.Close()
		return nil, err
	}
	mine := func() *nsInit {
		if own {
			return init
		}
		return nil
	}
	if init != nil {
		joins, files := l.nsJoins(init, base+len(extra))
		opts.joins, opts.cwd, opts.creds = joins, l.cwd, sb.Credential
		extra = append(extra, files...)
	}
	ll, llFlags, err := landlockRuleset(sb, init, l.program())
	if err == nil && ll != nil {
		defer ll.Close()
		opts.landlockFD, opts.landlockFlags = base+len(extra), llFlags
		extra = append(extra, ll)
	}
	// The program, opened here: the trampoline execs it through this
	// descriptor once its user has changed, which then needs no right to
	// the directories on its path.
	progFD := -1
	if err == nil {
		var prog *os.File
		if prog, err = os.OpenFile(l.program(), os.O_RDONLY|unix.O_PATH, 0); err == nil {
			defer prog.Close()
			progFD = base + len(extra)
			extra = append(extra, prog)
		}
	}
	var pre, post *plan.Plan
	if err == nil {
		pre, post, err = newSandboxPlan(sb, opts)
	}
	if err != nil {
		cfgR.Close()
		statW.Close()
		mine().kill()
		return nil, err
	}
	cmd := l.cmd("/proc/self/exe", []string{trampoline.ModeExec, strconv.Itoa(base)}, []string{}, extra...)
	cmd.Args[0] = trampoline.Marker
	cmd.SysProcAttr = l.sysProcAttr()
	if err := l.cloneIntoCgroup(cmd.SysProcAttr); err != nil {
		mine().kill()
		return nil, err
	}
	onForkThread(func() { err = forkIn(init, cmd.Start) })
	cfgR.Close()
	statW.Close()
	if err != nil {
		mine().kill()
		return nil, err
	}
	pid := cmd.Process.Pid
	fail := func(err error) (*started, error) {
		_ = unix.Kill(pid, unix.SIGKILL)
		_ = cmd.Wait()
		mine().kill()
		return nil, err
	}
	// The trampoline waits for its configuration: it has run nothing of
	// the worker yet. Its main thread, which will exec, takes the affinity
	// and nice.
	if err := l.outside(pid); err != nil {
		return fail(err)
	}
	cfg := trampoline.Exec{Path: l.path, Argv: append([]string{l.path}, l.spec.Args...), Env: l.env, Base: base,
		Program: progFD, Plan: plan.Join(pre, post)}
	for _, r := range l.spec.Limits.list() {
		cfg.Rlimits = append(cfg.Rlimits, trampoline.Rlimit{Resource: r.resource, Value: r.value})
	}
	_ = cfgW.SetWriteDeadline(time.Now().Add(trampolineWait))
	if _, err := cfgW.Write(cfg.Marshal()); err != nil {
		return fail(fmt.Errorf("childproc: configuring the trampoline: %w", err))
	}
	cfgW.Close()
	_ = statR.SetReadDeadline(time.Now().Add(trampolineWait))
	msg, err := io.ReadAll(statR)
	switch {
	case err != nil:
		return fail(fmt.Errorf("childproc: waiting for the trampoline: %w", err))
	case len(msg) > 0:
		return fail(l.trampolineFailure(msg))
	}
	return &started{cmd: cmd, init: mine()}, nil
}

// trampolineFailure is the error a trampoline reported on its status
// pipe: its execve of the worker fails as a traced start's would (an
// *fs.PathError of l.path), a step of its set-up as "trampoline: step:
// errno".
func (l *launch) trampolineFailure(msg []byte) error {
	st, err := trampoline.ParseStatus(msg)
	switch {
	case err != nil:
		return fmt.Errorf("childproc: the trampoline failed, with an unreadable status %q: %w", msg, err)
	case st.Step == trampoline.StepExec && st.Errno != 0:
		return &fs.PathError{Op: "fork/exec", Path: l.path, Err: st.Errno}
	case st.Errno != 0:
		return fmt.Errorf("childproc: trampoline: %s: %w", st.Step, st.Errno)
	}
	return fmt.Errorf("childproc: trampoline: %s: %s", st.Step, st.Msg)
}

// spawnTrampolineInit starts a namespace's init through the trampoline (a
// Go program doing what initPlan describes, then sleeping), and waits
// until it says it is ready. It runs on the init thread.
func spawnTrampolineInit(sh initShape) (*nsInit, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("childproc: init pipe: %w", err)
	}
	defer r.Close()
	none := ^uintptr(0)
	pidfd := -1
	attr := &syscall.ProcAttr{Files: []uintptr{none, none, none, w.Fd()}, Sys: initAttr(&pidfd)}
	prop := "slave"
	if sh.private {
		prop = "private"
	}
	flags := strconv.FormatUint(uint64(sh.flags), 10)
	pid, err := syscall.ForkExec("/proc/self/exe", []string{trampoline.Marker, trampoline.ModeInit, prop, flags}, attr)
	w.Close()
	if err != nil {
		return nil, fmt.Errorf("childproc: starting a PID namespace init: %w", err)
	}
	n := &nsInit{pid: pid, pidfd: os.NewFile(uintptr(pidfd), "pidfd")}
	_ = r.SetReadDeadline(time.Now().Add(trampolineWait))
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		n.kill()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = errors.New("it exited")
		}
		return nil, fmt.Errorf("childproc: the PID namespace init %d did not get ready: %w", pid, err)
	}
	return n, nil
}
