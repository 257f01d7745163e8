package childproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/procpool/procpool/sandbox"
)

const (
	// outputDrain and outputDrainMax bound the wait, after the reap, for
	// the caller to read what is left in the worker→host pipe before the
	// host end is closed: the wait ends when the pipe is empty, when the
	// caller has read nothing for outputDrain, or after outputDrainMax.
	outputDrain    = 500 * time.Millisecond
	outputDrainMax = 10 * time.Second
	// minTermGrace is the least time Stop leaves between SIGTERM and
	// SIGKILL.
	minTermGrace = 100 * time.Millisecond
)

// Process is one started child process. Its methods are safe for
// concurrent use. The process is always reaped by a goroutine of the
// Process; Done is closed once that has happened, every process the
// worker started is gone (see Containment) and the host ends of all the
// pipes are closed.
type Process struct {
	pid        int
	name       string
	statusPath string // /proc/<pid>/status, read by Memory
	log        hclog.Logger
	cmd        *exec.Cmd
	contain    Containment
	init       *nsInit         // the init of its own PID namespace, or nil
	shared     *nsInit         // the shared namespace's init, or nil
	share      *nsShare        // the namespaces shared with its job type, or nil
	cgroup     *sandbox.Cgroup // its cgroup, or nil

	input  *os.File // host write end of host→worker (fd 3 in the child)
	output *os.File // host read end of worker→host (fd 4 in the child)

	tail    *ring
	streams [2]*stream    // stdout, stderr; the Process's own records go with stderr
	dropped atomic.Uint64 // output lines dropped, both streams
	logged  chan struct{} // closed when both streams are logged or dropped

	requested atomic.Bool

	mu     sync.Mutex // guards reaped and signalling the process and its tree
	reaped bool       // the process has exited; its pid may be reused soon

	reapedCh chan struct{} // closed after the reap
	done     chan struct{}
	exit     ExitInfo // written before done is closed
}

// Start validates the spec, creates the pipes and starts the process, in
// a process group of its own (a session too under ContainSession),
// contained (see Containment), in
// its cgroup if it has one, with the protocol pipes on fd 3 (read) and 4
// (write), Spec.ExtraFiles on fd 5 and up and no other descriptor of the
// host, stdout and stderr piped to the logger, stdin from /dev/null, and
// the resource controls and the sandbox of the spec in effect before it
// runs any code. A spec that Validate refuses is returned as Validate's
// error; any other failure is a *StartError, which names the program and
// Dir once each and wraps the cause. On error nothing is left running or
// open (but the caller's ExtraFiles, which Start never closes).
func Start(spec Spec) (*Process, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	path := spec.Path
	if !strings.ContainsRune(path, '/') {
		lp, err := exec.LookPath(path)
		if err != nil {
			return nil, newStartError(path, spec.Dir, err)
		}
		path = lp
	}
	log := spec.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	tailN := spec.StderrTail
	if tailN == 0 {
		tailN = DefaultStderrTail
	}
	pipeSize := spec.PipeSize
	if pipeSize == 0 {
		pipeSize = DefaultPipeSize
	}

	var pipes []pipe
	closeAll := func() {
		for _, p := range pipes {
			p.host.Close()
			p.child.Close()
		}
	}
	for _, def := range []struct {
		name      string
		hostReads bool
	}{{"input", false}, {"output", true}, {"stdout", true}, {"stderr", true}} {
		p, err := newPipe(def.name, def.hostReads)
		if err != nil {
			closeAll()
			return nil, err
		}
		pipes = append(pipes, p)
	}
	in, out, stdout, stderr := pipes[0], pipes[1], pipes[2], pipes[3]
	for _, p := range []pipe{in, out} {
		if err := setPipeSize(p.host, pipeSize); err != nil {
			closeAll()
			return nil, fmt.Errorf("childproc: setting the protocol pipe size to %d: %w", pipeSize, err)
		}
	}

	l := &launch{
		spec:   &spec,
		path:   path,
		env:    spec.environ(),
		stdout: stdout.child,
		stderr: stderr.child,
		files:  append([]*os.File{in.child, out.child}, spec.ExtraFiles...),
		mode:   containmentFor(&spec.Sandbox, log),
		log:    log,
	}
	s, err := l.prepareAndStart()
	// The child has its copies (or failed); the parent's go now.
	for _, p := range pipes {
		p.child.Close()
	}
	if err != nil {
		for _, p := range pipes {
			p.host.Close()
		}
		return nil, newStartError(path, spec.Dir, err)
	}

	cmd := s.cmd
	p := &Process{
		pid:        cmd.Process.Pid,
		name:       spec.Name,
		statusPath: "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/status",
		cmd:        cmd,
		contain:    l.mode,
		init:       s.init,
		shared:     l.shared,
		share:      l.share,
		cgroup:     l.cgroup,
		input:      in.host,
		output:     out.host,
		tail:       newRing(tailN),
		logged:     make(chan struct{}),
		reapedCh:   make(chan struct{}),
		done:       make(chan struct{}),
	}
	p.log = log.With("pid", p.pid, "name", spec.Name)
	stdoutLevel, stderrLevel := spec.StdoutLevel, spec.StderrLevel
	if stdoutLevel == hclog.NoLevel {
		stdoutLevel = DefaultStdoutLevel
	}
	if stderrLevel == hclog.NoLevel {
		stderrLevel = DefaultStderrLevel
	}
	p.streams = [2]*stream{
		newStream("stdout", stdoutLevel, p.log, nil, p.reapedCh, &p.dropped),
		newStream("stderr", stderrLevel, p.log, p.tail, p.reapedCh, &p.dropped),
	}
	var readers, emitters sync.WaitGroup
	for _, st := range []struct {
		f      *os.File
		stream *stream
	}{{stdout.host, p.streams[0]}, {stderr.host, p.streams[1]}} {
		readers.Add(1)
		emitters.Add(1)
		go func() {
			defer emitters.Done()
			st.stream.emit()
		}()
		go func() {
			defer readers.Done()
			st.stream.read(st.f)
		}()
	}
	go func() {
		emitters.Wait()
		close(p.logged)
	}()
	p.note(hclog.Debug, "process started", "path", path, "args", spec.Args, "containment", p.contain.String())
	if p.init != nil {
		inits.started(spec.Name, &spec.Sandbox)
	}
	go p.reap(stdout.host, stderr.host, &readers)
	return p, nil
}

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
			releaseShared(l.shared)
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

// cgroupWait bounds the wait, after the reap, for a killed cgroup to
// empty.
const cgroupWait = 10 * time.Second

// reap is the one goroutine that waits for the process. It first waits
// without reaping, so that the pid and process group id stay reserved
// while it kills what is left of the process's tree, then reaps it, waits
// until the tree is gone (the namespace's init reaped, the cgroup empty),
// lets the output readers drain and closes every host end.
func (p *Process) reap(stdout, stderr *os.File, readers *sync.WaitGroup) {
	var waitErr error
	for {
		var si unix.Siginfo
		waitErr = unix.Waitid(unix.P_PID, p.pid, &si, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(waitErr, unix.EINTR) {
			break
		}
	}
	requested := p.requested.Load()
	p.mu.Lock()
	p.reaped = true
	killed := false
	if waitErr == nil {
		// What the process started dies with it. The exited process, not
		// reaped yet, still holds its pid and group id.
		killed = p.killTree()
	}
	p.mu.Unlock()

	err := p.cmd.Wait()
	info := exitInfoFrom(p.pid, p.cmd.ProcessState, err)
	info.Requested = requested
	if p.init != nil {
		p.init.wait() // returns once every other process of the namespace is gone
		inits.ended(p.name, p.init.shape)
	}
	p.share.release()
	if p.shared != nil {
		defer releaseShared(p.shared) // once the cgroup is empty
	}
	if p.contain == ContainSession {
		killSession(p.pid)
	}
	if c := p.cgroup; c != nil {
		// Nothing enters the cgroup once its worker is dead: if it was
		// empty then, it still is.
		if c.Killable() && (killed || waitErr != nil) {
			if err := c.KillAll(cgroupWait); err != nil {
				p.note(hclog.Warn, "the worker's cgroup did not empty", "error", err)
			}
		}
		if n, err := c.OOMKills(); err == nil {
			info.OOMKills = n
		}
		if err := releaseCgroup(c); err != nil {
			p.note(hclog.Warn, "deleting the worker's cgroup", "error", err)
		}
	}

	// The write ends of stdout and stderr are gone with the tree, unless
	// a process that escaped it holds them: see drainReader.
	close(p.reapedCh)
	deadline := time.Now().Add(stdioDrain)
	_ = stdout.SetReadDeadline(deadline) // for a Read already waiting
	_ = stderr.SetReadDeadline(deadline)
	readers.Wait() // the readers close stdout and stderr; the loggers go on

	_ = p.input.Close()
	p.drainOutput()
	_ = p.output.Close()

	info.StderrTail = p.tail.snapshot()
	p.exit = info
	p.note(hclog.Debug, "process ended", "exit", info.String(), "requested", info.Requested)
	for _, s := range p.streams {
		s.seal()
	}
	close(p.done)
}

// note logs a record of the Process's own, after the lines read before it,
// without waiting for the logger.
func (p *Process) note(level hclog.Level, msg string, args ...any) {
	if p.log.GetLevel() <= level {
		p.streams[1].note(level, msg, args...)
	}
}

// killTree sends SIGKILL to what the process started: its PID namespace
// (through its init), its cgroup (unless it is empty already: see
// sandbox.Cgroup.Killed), its process group. It reports whether it killed
// the cgroup. It must be called with p.mu held and the process not reaped
// yet.
func (p *Process) killTree() (cgroupKilled bool) {
	_ = unix.Kill(-p.pid, unix.SIGKILL)
	if p.init != nil {
		_ = unix.Kill(p.init.pid, unix.SIGKILL)
	}
	if c := p.cgroup; c != nil && c.Killable() && !c.Empty() {
		_ = c.Kill()
		return true
	}
	return false
}

// drainOutput waits, after the reap, while the caller reads what is left
// in the worker→host pipe.
func (p *Process) drainOutput() {
	start := time.Now()
	progress, last := start, -1
	for {
		n, err := unread(p.output)
		if err != nil || n == 0 {
			return
		}
		now := time.Now()
		if last < 0 || n < last {
			progress = now
		}
		last = n
		if now.Sub(progress) > outputDrain || now.Sub(start) > outputDrainMax {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// PID returns the process id.
func (p *Process) PID() int { return p.pid }

// Name returns Spec.Name.
func (p *Process) Name() string { return p.name }

// Input returns the host end of the host→worker pipe, which the child reads
// as fd 3. Closing it gives the child EOF. The Process closes it after the
// reap.
func (p *Process) Input() *os.File { return p.input }

// Output returns the host end of the worker→host pipe, which the child
// writes as fd 4. What the process wrote before it ended stays readable
// after it ended: the Process closes this end once the pipe is empty, or
// once nothing has been read from it for half a second (10 seconds at
// most). A Read then fails with io.EOF or os.ErrClosed; treat both as the
// end of the stream.
func (p *Process) Output() *os.File { return p.output }

// Done returns a channel closed once the process has been reaped, every
// process it started is gone (as far as Containment goes), its stdout and
// stderr read to their end and every descriptor the Process opened
// closed. It does not wait for the logger: lines read but not logged yet
// are logged after (see OutputLogged).
func (p *Process) Done() <-chan struct{} { return p.done }

// OutputLogged returns a channel closed once every line read from the
// process's stdout and stderr has been logged or dropped; at most
// LogDrainAfterEnd after Done.
func (p *Process) OutputLogged() <-chan struct{} { return p.logged }

// DroppedLines returns how many lines of stdout and stderr were dropped
// because the logger did not keep up (see MaxQueuedLines).
func (p *Process) DroppedLines() uint64 { return p.dropped.Load() }

// Containment returns how the process's tree is contained.
func (p *Process) Containment() Containment { return p.contain }

// Exit returns how the process ended. It is valid after Done is closed;
// before that it holds only the PID.
func (p *Process) Exit() ExitInfo {
	select {
	case <-p.done:
		return p.exit
	default:
		return ExitInfo{PID: p.pid, Code: -1}
	}
}

// Stop ends the process gracefully and returns how it ended. It marks the
// stop as requested and closes Input (the child reads EOF on fd 3), then
// waits up to grace for the process to exit; then sends SIGTERM to the
// process group and waits max(grace/2, 100ms); then kills the process and
// everything it started (Kill). The end of ctx cuts the remaining waits short: SIGTERM and
// SIGKILL follow at once. Stop always waits for the reap, and returns only
// after Done is closed. Callers that want to send a protocol shutdown
// message first do so before calling Stop. If the process has already
// ended, Stop just returns its ExitInfo.
func (p *Process) Stop(ctx context.Context, grace time.Duration) ExitInfo {
	select {
	case <-p.done:
		return p.exit
	default:
	}
	p.requested.Store(true)
	_ = p.input.Close()
	if !p.waitDone(ctx, grace) {
		_ = p.Signal(syscall.SIGTERM)
		if !p.waitDone(ctx, max(grace/2, minTermGrace)) {
			_ = p.Kill()
		}
	}
	<-p.done
	return p.exit
}

// waitDone waits up to d for Done; false if it did not close in time or ctx
// ended first.
func (p *Process) waitDone(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		select {
		case <-p.done:
			return true
		default:
			return false
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		select {
		case <-p.done:
			return true
		default:
			return false
		}
	}
}

// Kill sends SIGKILL to the process and to every process it started now
// (its PID namespace, its cgroup, its process group: see Containment). It
// does not mark the end as requested (unless Stop was called too). It
// returns os.ErrProcessDone if the process has already ended.
func (p *Process) Kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return os.ErrProcessDone
	}
	_ = p.killTree()
	return nil
}

// Signal sends sig to the process group. It returns os.ErrProcessDone if
// the process has already ended; signalling never reaches a reused pid.
func (p *Process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return os.ErrProcessDone
	}
	if err := unix.Kill(-p.pid, sig); err != nil {
		return fmt.Errorf("childproc: sending %v to process group %d: %w", signalName(sig), p.pid, err)
	}
	return nil
}

// RSS returns the current resident set size of the process in bytes, read
// from /proc/<pid>/statm. It returns os.ErrProcessDone once the process has
// ended.
func (p *Process) RSS() (uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return 0, os.ErrProcessDone
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid) + "/statm")
	if err != nil {
		return 0, fmt.Errorf("childproc: reading the RSS of pid %d: %w", p.pid, err)
	}
	fields := bytes.Fields(b)
	if len(fields) < 2 {
		return 0, fmt.Errorf("childproc: malformed /proc/%d/statm %q", p.pid, b)
	}
	pages, err := strconv.ParseUint(string(fields[1]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("childproc: malformed /proc/%d/statm %q: %w", p.pid, b, err)
	}
	return pages * uint64(os.Getpagesize()), nil
}

// StderrTail returns a copy of the last lines the process wrote to stderr,
// oldest first.
func (p *Process) StderrTail() []string { return p.tail.snapshot() }
