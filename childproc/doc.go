// Package childproc runs one OS process for procpool: it spawns it, gives
// it its protocol pipes and nothing else of the host, sends its stdout and
// stderr to a logger, applies resource controls and a sandbox, contains
// every process it starts, stops or kills it, always reaps it and reports
// how it ended. It knows nothing of actors or of the message protocol: the
// pipes carry bytes.
//
// # Descriptors
//
// In the child, fd 3 is the read end of the host→worker pipe (the host
// writes Process.Input) and fd 4 the write end of the worker→host pipe
// (the host reads Process.Output). Both pipes get a capacity of
// Spec.PipeSize (1 MiB by default, clamped to /proc/sys/fs/pipe-max-size).
// Fd 5, 6 and so on are the files of Spec.ExtraFiles, in order (a memfd
// of shared memory, say); Start does not close them: the caller keeps its
// copies and closes them when it likes. Stdin is /dev/null.
//
// Those are the only descriptors the child gets, whatever the host has
// open: a descriptor without O_CLOEXEC (opened with syscall.Open, or
// inherited by the host from its own parent) is closed in the child before
// its program runs (by close_range(2) between its execve and its first
// instruction, or by the trampoline's execve of it; see Resource
// controls). The host ends of the pipes carry O_CLOEXEC, so no other
// child inherits them.
//
// # Output
//
// Stdout and stderr are pipes read line by line into Spec.Logger, one
// record per line with the fields pid, name and stream; stdout lines are
// logged at Info and stderr lines at Warn unless Spec.StdoutLevel or
// Spec.StderrLevel say otherwise. The last Spec.StderrTail lines of stderr
// are kept for crash reports.
//
// Logging never holds anything up. Each stream has a reader, which keeps
// the child's writes flowing, and an emitter, which logs what was read;
// between them at most MaxQueuedLines lines and 1 MiB wait (empty lines
// count), and what does not fit is dropped. Drops are counted
// (Process.DroppedLines) and reported in one warning per burst. The reap
// waits for the readers only, never for the logger: Done, and with it a
// job's resolution or a pool's shutdown, does not wait for queued lines,
// which are still logged for up to LogDrainAfterEnd (OutputLogged says
// when they are all logged or dropped).
//
// # Containment
//
// No process outlives the worker it descends from: when the worker ends,
// however it ends (it exits, crashes, is stopped, killed or replaced),
// every process it started is killed before Done is closed. How depends
// on the host's privileges and kernel: a PID namespace (of the worker's
// own, or one the host's workers share, with a cgroup per worker), a
// cgroup, or a session. Each host takes the strongest it can, once, and
// logs it; Process.Containment says which a worker got. But in a
// session, processes that called setsid(2) or forked twice die too; in a
// PID namespace, everything dies with the host, even when it is
// SIGKILLed. The Containment type lists what each leaves out.
//
// A worker in a PID namespace sees its own pid there (2, when traced, in
// a namespace of its own, whose init is a placeholder: the worker keeps
// the ordinary signal semantics of a process that is not PID 1), and a
// /proc of the namespace. Process.PID is always the host's pid of the
// worker.
//
// # Resource controls and the sandbox
//
// Spec.Affinity, Spec.Nice and Spec.Limits apply to the whole child: to
// every thread, before any of its code runs. Affinity and nice belong to a
// thread on Linux and a new thread copies them from its creator, so
// setting them on a running multi-threaded child (a Go program, say)
// would only change its main thread. Spec.Sandbox (see package sandbox)
// adds a user, a cgroup with memory, CPU and task limits, namespaces,
// no_new_privs, a seccomp filter and Landlock rules, most of which a
// process can only set on itself.
//
// Go runs no code of ours between fork and exec, so Start has the child stop
// right after its execve (ptrace), while it is still single-threaded and
// has run nothing: it sets the cgroup, rlimits, affinity and nice from
// outside, then makes the child call what it must call itself (setns,
// close_range, setresuid, prctl, landlock_restrict_self, seccomp) by
// injecting the system calls into it, puts its registers back and lets it
// go. Where ptrace is refused (by a container's seccomp profile, say) or
// the architecture has no injector (anything but amd64), the child is
// instead the host binary itself, re-executed with a marker that an init
// function of an internal package of childproc recognises before the
// program's own code runs: it applies the same controls to itself and
// execs the worker (a "trampoline", as docker's reexec and runc's init).
// Either way the worker keeps its pid. docs/isolation.md weighs the two
// and what each control needs.
//
// # Errors
//
// Start returns Validate's error for a spec it refuses, and a
// *StartError for a start that fails: it names the program and Dir once
// each and wraps the cause (an *fs.PathError of a missing program or Dir,
// an error matching sandbox.ErrUnsupported, ...).
//
// # Parent death and reaping
//
// Every child is forked by one goroutine of this package that, from the
// first Start on, stays locked to its thread and runs nothing else: the
// children's parent-death signal (SIGKILL) is tied to the thread that
// forked them, and that thread never exits. (Tests that check for leaked
// goroutines must ignore it: internal/proctest does.)
//
// One goroutine per process waits for it. When the process exits, it
// first kills what is left of its tree (while the exited process still
// holds its pid and group id, so no reused pid is hit), then reaps it,
// waits until the tree is gone, lets the stdout and stderr readers finish,
// closes Input, waits briefly for the caller to read what is left in
// Output, closes Output and closes Done. After Done every descriptor the
// Process opened is closed: a Read of Output then fails with io.EOF or
// os.ErrClosed, both meaning the end of the stream.
package childproc
