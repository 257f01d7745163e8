package childproc

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/procpool/procpool/sandbox"
)

// Default values used when the corresponding Spec field is zero.
const (
	// DefaultPipeSize is the capacity requested for each protocol pipe
	// when Spec.PipeSize is 0. It is clamped to /proc/sys/fs/pipe-max-size.
	DefaultPipeSize = 1 << 20
	// DefaultStderrTail is the number of stderr lines kept when
	// Spec.StderrTail is 0.
	DefaultStderrTail = 20
	// DefaultStdoutLevel is the level of the log records made from the
	// child's stdout lines when Spec.StdoutLevel is hclog.NoLevel.
	DefaultStdoutLevel = hclog.Info
	// DefaultStderrLevel is the level of the log records made from the
	// child's stderr lines when Spec.StderrLevel is hclog.NoLevel.
	DefaultStderrLevel = hclog.Warn
)

// Limits are the resource limits (setrlimit(2)) applied to the child before
// it runs any code. Each limit is applied as both the soft and the hard
// limit, so the child cannot raise it again (a Go child's runtime raises
// its soft RLIMIT_NOFILE to the hard one at start-up, for example). Limits
// are inherited by every process the child starts.
type Limits struct {
	// AddressSpace is RLIMIT_AS in bytes; 0 leaves it unchanged. A Go child
	// needs several hundred MiB of address space just to start; a binary
	// built with -race needs terabytes and cannot run under this limit.
	AddressSpace uint64
	// OpenFiles is RLIMIT_NOFILE; 0 leaves it unchanged. The child needs at
	// least 5 (stdin, stdout, stderr and the protocol pipes on fd 3 and 4),
	// plus one per entry of Spec.ExtraFiles.
	OpenFiles uint64
	// CPUSeconds is RLIMIT_CPU in seconds of CPU time; 0 leaves it
	// unchanged. The kernel kills the child with SIGKILL when it has used
	// them up (soft and hard limits being equal, there is no SIGXCPU).
	CPUSeconds uint64
	// CoreSize is RLIMIT_CORE in bytes; nil leaves it unchanged (a pointer
	// because 0, "no core files", is meaningful).
	CoreSize *uint64
}

// Spec describes the process to start. The zero values of the optional
// fields mean "unchanged" or "default", as documented on each field.
type Spec struct {
	// Path is the program to run. A name without a slash is looked up in
	// the parent's PATH (exec.LookPath). Required.
	Path string
	// Args are the arguments after the program name; argv[0] is Path.
	Args []string
	// Dir is the working directory of the child; empty means the parent's.
	Dir string
	// Env holds KEY=VALUE entries. The child's environment is only these
	// plus the variables named in InheritEnv: it does not inherit the
	// parent's environment otherwise. Keys must be unique, non-empty and
	// free of '=' and NUL bytes.
	Env []string
	// InheritEnv names variables of the parent's environment to copy into
	// the child's when they are set in the parent (e.g. "PATH", "HOME").
	// An entry of Env with the same key takes precedence.
	InheritEnv []string
	// Name is a label for the logs, e.g. the job type. Optional. It also
	// names the workers that share what a job type's workers share: the
	// network, IPC, UTS and user namespaces of their sandbox (see
	// sandbox.Namespaces.PerWorker) and the cgroups with limits reused from
	// one worker to the next. procpool gives it the job type's name.
	Name string
	// Logger receives the child's stdout and stderr, one record per line,
	// with the fields pid, name and stream ("stdout" or "stderr"), and the
	// few messages of this package about the process. Nil means
	// hclog.NewNullLogger().
	Logger hclog.Logger
	// StdoutLevel is the level of the records made from stdout lines;
	// hclog.NoLevel means DefaultStdoutLevel (Info).
	StdoutLevel hclog.Level
	// StderrLevel is the level of the records made from stderr lines;
	// hclog.NoLevel means DefaultStderrLevel (Warn).
	StderrLevel hclog.Level
	// Affinity is the set of CPUs the child (all its threads, and the
	// processes it starts) may run on; empty leaves it unchanged. Every CPU
	// must be in the parent's own affinity set.
	Affinity []int
	// Nice is the scheduling priority of the child (all its threads), from
	// -20 (highest) to 19 (lowest); nil leaves it unchanged. Values below
	// the parent's need CAP_SYS_NICE or a suitable RLIMIT_NICE.
	Nice *int
	// Limits are the rlimits applied to the child.
	Limits Limits
	// PipeSize is the capacity (F_SETPIPE_SZ) requested for both protocol
	// pipes; 0 means DefaultPipeSize (1 MiB). It is clamped to
	// /proc/sys/fs/pipe-max-size; a refusal by the kernel (EPERM once the
	// user's pipe budget is used up) leaves the default capacity.
	PipeSize int
	// StderrTail is the number of the last stderr lines kept for crash
	// reports; 0 means DefaultStderrTail (20).
	StderrTail int
	// ExtraFiles specifies additional open files to be inherited by the
	// new process. They come after the protocol pipes: entry i becomes
	// file descriptor 5+i. Entries must not be nil and must be open until
	// Start returns.
	//
	// The caller keeps ownership: Start does not close them, and the caller
	// may close its copies once Start has returned; the child's copies are
	// its own. As with os/exec, Start calls Fd on each file, which puts a
	// file the runtime polls (a pipe, say) into blocking mode.
	ExtraFiles []*os.File
	// Sandbox lists the controls the child runs under besides the ones
	// above: user, cgroup limits, namespaces, no_new_privs, seccomp,
	// Landlock. The zero value applies none of them; the containment of
	// the child's processes and the rule that only its own descriptors
	// reach it hold whatever it says.
	Sandbox sandbox.Sandbox
}

// Validate checks the spec without starting anything and returns an error
// describing the first invalid value: an empty Path, a NUL byte in Path,
// Args, Dir or Env, a malformed or duplicate Env entry, a bad InheritEnv
// name, a Nice value outside -20..19, a negative CPU or one that is not in
// the parent's affinity set, a negative PipeSize or StderrTail, an
// unknown log level, a nil or closed ExtraFiles entry, or a Sandbox this
// machine cannot apply (sandbox.Sandbox.Check). Start calls it.
func (s *Spec) Validate() error {
	if s.Path == "" {
		return errors.New("childproc: invalid spec: empty Path")
	}
	if strings.IndexByte(s.Path, 0) >= 0 {
		return fmt.Errorf("childproc: invalid spec: Path %q contains a NUL byte", s.Path)
	}
	for i, a := range s.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("childproc: invalid spec: Args[%d] %q contains a NUL byte", i, a)
		}
	}
	if strings.IndexByte(s.Dir, 0) >= 0 {
		return fmt.Errorf("childproc: invalid spec: Dir %q contains a NUL byte", s.Dir)
	}
	seen := make(map[string]int, len(s.Env))
	for i, kv := range s.Env {
		k, _, ok := strings.Cut(kv, "=")
		switch {
		case !ok:
			return fmt.Errorf("childproc: invalid spec: Env[%d] %q is not KEY=VALUE", i, kv)
		case k == "":
			return fmt.Errorf("childproc: invalid spec: Env[%d] %q has an empty key", i, kv)
		case strings.IndexByte(kv, 0) >= 0:
			return fmt.Errorf("childproc: invalid spec: Env[%d] %q contains a NUL byte", i, kv)
		}
		if j, dup := seen[k]; dup {
			return fmt.Errorf("childproc: invalid spec: Env[%d] duplicates key %q of Env[%d]", i, k, j)
		}
		seen[k] = i
	}
	for i, name := range s.InheritEnv {
		if name == "" || strings.ContainsAny(name, "=\x00") {
			return fmt.Errorf("childproc: invalid spec: InheritEnv[%d] %q is not a variable name", i, name)
		}
	}
	if s.Nice != nil && (*s.Nice < -20 || *s.Nice > 19) {
		return fmt.Errorf("childproc: invalid spec: Nice %d is outside -20..19", *s.Nice)
	}
	if len(s.Affinity) > 0 {
		var allowed unix.CPUSet
		if err := unix.SchedGetaffinity(0, &allowed); err != nil {
			return fmt.Errorf("childproc: reading the parent's CPU set: %w", err)
		}
		for _, cpu := range s.Affinity {
			if cpu < 0 || cpu >= cpuSetSize || !allowed.IsSet(cpu) {
				return fmt.Errorf("childproc: invalid spec: Affinity CPU %d is not in this machine's CPU set %s",
					cpu, formatCPUs(&allowed))
			}
		}
	}
	if s.PipeSize < 0 {
		return fmt.Errorf("childproc: invalid spec: negative PipeSize %d", s.PipeSize)
	}
	if s.StderrTail < 0 {
		return fmt.Errorf("childproc: invalid spec: negative StderrTail %d", s.StderrTail)
	}
	for _, l := range []struct {
		name  string
		level hclog.Level
	}{{"StdoutLevel", s.StdoutLevel}, {"StderrLevel", s.StderrLevel}} {
		if l.level < hclog.NoLevel || l.level > hclog.Off {
			return fmt.Errorf("childproc: invalid spec: unknown %s %d", l.name, l.level)
		}
	}
	if err := s.checkSandbox(); err != nil {
		return fmt.Errorf("childproc: invalid spec: %w", err)
	}
	for i, f := range s.ExtraFiles {
		if f == nil {
			return fmt.Errorf("childproc: invalid spec: ExtraFiles[%d] (fd %d in the child) is nil", i, firstExtraFD+i)
		}
		if !isOpen(f) {
			return fmt.Errorf("childproc: invalid spec: ExtraFiles[%d] %q (fd %d in the child) is closed",
				i, f.Name(), firstExtraFD+i)
		}
	}
	return nil
}

// checkSandbox checks the Sandbox against this machine, the containment
// included (a private PID namespace needs the pid-namespace one).
func (s *Spec) checkSandbox() error {
	sb := &s.Sandbox
	if sb.IsZero() {
		return nil
	}
	if err := sb.Check(); err != nil {
		return err
	}
	if sb.Namespaces.PID {
		if h := probeHost(); !h.pidns {
			return fmt.Errorf("%w: Namespaces.PID: the host cannot make PID namespaces (%s)", sandbox.ErrUnsupported, h.why)
		}
	}
	return nil
}

// firstExtraFD is the descriptor of Spec.ExtraFiles[0] in the child: after
// stdin, stdout, stderr and the protocol pipes.
const firstExtraFD = 5

// isOpen reports whether f (not nil) is still open. Unlike f.Fd, it leaves
// the file's blocking mode alone. (Control fails only on a closed file.)
func isOpen(f *os.File) bool {
	rc, err := f.SyscallConn()
	return err == nil && rc.Control(func(uintptr) {}) == nil
}

// cpuSetSize is the number of CPUs a unix.CPUSet can hold.
const cpuSetSize = len(unix.CPUSet{}) * 64

// formatCPUs renders a CPU set as a list such as "[0-3 6]".
func formatCPUs(set *unix.CPUSet) string {
	var parts []string
	for cpu := 0; cpu < cpuSetSize; cpu++ {
		if !set.IsSet(cpu) {
			continue
		}
		end := cpu
		for end+1 < cpuSetSize && set.IsSet(end+1) {
			end++
		}
		if end == cpu {
			parts = append(parts, fmt.Sprint(cpu))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", cpu, end))
		}
		cpu = end
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// environ builds the child's environment: Env, then the inherited
// variables that Env does not set, sorted by name.
func (s *Spec) environ() []string {
	env := make([]string, 0, len(s.Env)+len(s.InheritEnv))
	keys := make(map[string]bool, len(s.Env))
	for _, kv := range s.Env {
		k, _, _ := strings.Cut(kv, "=")
		keys[k] = true
		env = append(env, kv)
	}
	var inherited []string
	for _, name := range s.InheritEnv {
		if keys[name] {
			continue
		}
		if v, ok := os.LookupEnv(name); ok {
			keys[name] = true
			inherited = append(inherited, name+"="+v)
		}
	}
	sort.Strings(inherited)
	return append(env, inherited...)
}
