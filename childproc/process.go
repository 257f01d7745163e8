package childproc

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/procpool/procpool/sandbox"
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
