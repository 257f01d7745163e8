// Package childproc runs one OS process for procpool: it spawns it, gives
// it its protocol pipes, sends its stdout and stderr to a logger, applies
// resource controls, stops or kills it, always reaps it and reports how it
// ended. It knows nothing of actors or of the message protocol: the pipes
// carry bytes.
//
// # Descriptors
//
// In the child, fd 3 is the read end of the host→worker pipe (the host
// writes Process.Input) and fd 4 the write end of the worker→host pipe
// (the host reads Process.Output). Both pipes get a capacity of
// Spec.PipeSize (1 MiB by default, clamped to /proc/sys/fs/pipe-max-size).
// Fd 5, 6 and so on are the files of Spec.ExtraFiles, in order (a memfd
// of shared memory, say); Start does not close them: the caller keeps its
// copies and closes them when it likes. Stdin is /dev/null. Stdout and
// stderr are pipes read line by line into Spec.Logger, one record per
// line with the fields pid, name and stream; stdout lines are logged at
// Info and stderr lines at Warn unless Spec.StdoutLevel or
// Spec.StderrLevel say otherwise. The last
// Spec.StderrTail lines of stderr are kept for crash reports. The readers
// never wait for the logger: a child that writes faster than the logger
// logs is not slowed down; lines beyond a 1 MiB backlog are dropped and
// counted in a warning. The parent's copies of the child's pipe ends are
// closed once the child has started, and the host ends carry O_CLOEXEC,
// so no other child inherits them.
//
// # Process group, parent death, reaping
//
// The child leads a process group of its own, so Stop, Kill and Signal
// reach the processes it starts (unless they leave the group). Its
// parent-death signal is SIGKILL: if the host dies, so does the child. The
// kernel sends that signal when the thread that forked the child exits,
// and Go ends a thread when a goroutine locked to it returns without
// unlocking. So every child is forked by one goroutine of this package
// that, from the first Start on, stays locked to its thread and runs
// nothing else: that thread never exits. (Tests that check for leaked
// goroutines must ignore it: internal/proctest does.)
//
// One goroutine per process waits for it. When the process exits, it
// first kills whatever is left in its process group (while the exited
// process still holds the group id, so no reused pid is hit), then reaps
// it, lets the stdout and stderr readers finish, closes Input, waits
// briefly for the caller to read what is left in Output, closes Output and
// closes Done. After Done every descriptor the Process opened is closed: a
// Read of Output then fails with io.EOF or os.ErrClosed, both meaning the
// end of the stream.
//
// # Resource controls
//
// Spec.Affinity, Spec.Nice and Spec.Limits apply to the whole child: to
// every thread, before any of its code runs. Affinity and nice belong to a
// thread on Linux and a new thread copies them from its creator, so
// setting them on a running multi-threaded child (a Go program, say) would
// only change its main thread. Start has the child stop right after its
// execve (ptrace), applies the controls while it is still single-threaded,
// then lets it go. Where ptrace is refused, it applies them to every
// thread of the started child instead and logs a warning.
package childproc
