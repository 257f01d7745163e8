package actors

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/procpool/procpool/childproc"
	"github.com/procpool/procpool/codec"
	"github.com/procpool/procpool/internal/sharedmem"
	"github.com/procpool/procpool/sandbox"
	"github.com/procpool/procpool/supervisor"
)

// JobType describes one kind of job and the pool of worker processes that
// runs it. Zero fields take the defaults documented beside them; only Name
// and Command are required.
type JobType struct {
	// Name identifies the job type; it is also the job type the worker's
	// handler is registered under.
	Name string

	// Command is the worker program's path; Args its arguments; Dir its
	// working directory (empty: the host's).
	Command string
	Args    []string
	Dir     string
	// Env is the worker's whole environment (KEY=VALUE), plus the variables
	// named in InheritEnv that are set in the host. Nothing else is passed,
	// but GOMAXPROCS when neither sets it and the worker's share of the
	// CPUs is below the CPUs it could use: the CPUs (Affinity's, or the
	// host's, within Sandbox.CPU) divided by MaxWorkers, at least 1, so
	// that a pool of Go workers does not run more threads than CPUs.
	Env        []string
	InheritEnv []string

	// MinWorkers are started at once and kept alive (default 0);
	// MaxWorkers bounds the pool (default: the number of CPUs).
	MinWorkers int
	MaxWorkers int
	// IdleTimeout passivates a worker idle this long while more than
	// MinWorkers exist (default 10s; negative: never).
	IdleTimeout time.Duration

	// QueueCapacity bounds the jobs waiting for a worker (default 1024);
	// jobs running on workers are not counted.
	QueueCapacity int
	// QueueWait bounds how long Call and Submit wait for a free queue slot
	// before failing with ErrQueueFull (0: as long as the context allows).
	QueueWait time.Duration
	// JobTimeout bounds each job's run on a worker (0: none). On expiry the
	// job fails with ErrJobTimeout, the worker gets a cancel message, and
	// it is killed and replaced if it has not answered within CancelGrace.
	JobTimeout  time.Duration
	CancelGrace time.Duration // default 1s
	// InFlight is how many jobs a worker runs at once (default 1).
	InFlight int

	// Affinity, Nice and Limits are applied to every worker at start.
	Affinity []int
	Nice     *int
	Limits   childproc.Limits
	// Sandbox lists the controls every worker runs under: user, cgroup
	// limits (an OOM kill is a supervisor.MemoryFailure), namespaces,
	// no_new_privs, seccomp, Landlock (package sandbox). The zero value
	// applies none; a control this machine cannot apply fails Validate.
	Sandbox sandbox.Sandbox

	// HandshakeTimeout bounds a worker's start-up (default 10s).
	HandshakeTimeout time.Duration
	// HeartbeatInterval is how often workers are pinged (default 1s;
	// negative: never); a worker silent for HeartbeatTimeout (default
	// 5 x HeartbeatInterval) is killed and replaced.
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration
	// StopGrace is how long a worker asked to stop may take to finish its
	// jobs and exit before it is signalled (default 5s).
	StopGrace time.Duration

	// Recycling retires workers by plan, which is not a failure: after
	// RecycleAfterJobs jobs, past RecycleAge, or when resident memory
	// exceeds MaxRSS bytes between jobs (0: never). The replacement starts
	// first, and no running job is interrupted. Resident memory here and
	// for KillRSS is the worker's RSS less its shared memory pages (the
	// SharedMemory region's, which the host maps too).
	RecycleAfterJobs int
	RecycleAge       time.Duration
	MaxRSS           uint64

	// KillRSS is a hard memory ceiling (0: none): a worker whose resident
	// memory exceeds it at a heartbeat is killed at once, busy or not, as a
	// supervisor.MemoryFailure. Its jobs fail (or are retried) like any
	// crash's. Set it above MaxRSS, which retires workers gently between
	// jobs.
	KillRSS uint64

	// MaxFrame is the largest frame either side sends (default 64 MiB). A
	// worker that announces a lower limit in its handshake lowers it for
	// the job type: larger payloads then fail with ErrPayloadTooLarge.
	MaxFrame int

	// SharedMemory is the size in bytes of the shared memory region each
	// worker gets (default 32 MiB; negative: none). Payloads of 64 KiB or
	// more, both ways, are copied into it and only their place crosses the
	// pipe, which saves the host most of the cost of a large transfer.
	// A payload that finds no room, and every payload of a worker that
	// does not map the region (it is optional in the protocol), travels
	// in its frame: the region changes how a payload travels, never
	// whether it may. Half the region carries requests and half results;
	// only the pages payloads have touched take memory, shared by the host
	// and the worker (they count in the worker's RSS as RssShmem).
	SharedMemory int

	// NoFeatures makes the host offer none of the protocol's optional
	// features in its hello (request metadata, batches, streamed results):
	// for workers built with an SDK older than them, which refuse a hello
	// that offers any. Map and streamed results then run one request per
	// job.
	NoFeatures bool

	// Policy is the supervision policy; zero fields take
	// supervisor.DefaultPolicy's values.
	Policy supervisor.Policy

	// Logger receives the pool's and the workers' log lines (default: the
	// system's logger, named after the job type).
	Logger hclog.Logger
}

// ErrInvalidJobType reports a JobType that cannot be used.
var ErrInvalidJobType = errors.New("procpool: invalid job type")

// withDefaults returns a copy of t with every zero field defaulted.
func (t JobType) withDefaults(ncpu int) JobType {
	if t.MaxWorkers == 0 {
		t.MaxWorkers = max(ncpu, t.MinWorkers, 1)
	}
	if t.IdleTimeout == 0 {
		t.IdleTimeout = 10 * time.Second
	}
	if t.QueueCapacity == 0 {
		t.QueueCapacity = 1024
	}
	if t.CancelGrace == 0 {
		t.CancelGrace = time.Second
	}
	if t.InFlight == 0 {
		t.InFlight = 1
	}
	if t.HandshakeTimeout == 0 {
		t.HandshakeTimeout = 10 * time.Second
	}
	if t.HeartbeatInterval == 0 {
		t.HeartbeatInterval = time.Second
	}
	if t.HeartbeatTimeout == 0 && t.HeartbeatInterval > 0 {
		t.HeartbeatTimeout = 5 * t.HeartbeatInterval
	}
	if t.StopGrace == 0 {
		t.StopGrace = 5 * time.Second
	}
	if t.MaxFrame == 0 {
		t.MaxFrame = codec.DefaultMaxFrame
	}
	if t.SharedMemory == 0 {
		t.SharedMemory = sharedmem.DefaultSize
	}
	t.Policy = t.Policy.WithDefaults()
	return t
}

// Validate reports the first problem that makes t unusable, as an error
// matching ErrInvalidJobType.
func (t JobType) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidJobType, t.Name, fmt.Sprintf(format, args...))
	}
	switch {
	case t.Name == "":
		return bad("empty name")
	case t.Command == "":
		return bad("empty command")
	case t.MinWorkers < 0:
		return bad("MinWorkers %d < 0", t.MinWorkers)
	case t.MaxWorkers < 0:
		return bad("MaxWorkers %d < 0", t.MaxWorkers)
	case t.MaxWorkers > 0 && t.MinWorkers > t.MaxWorkers:
		return bad("MinWorkers %d > MaxWorkers %d", t.MinWorkers, t.MaxWorkers)
	case t.QueueCapacity < 0:
		return bad("QueueCapacity %d < 0", t.QueueCapacity)
	case t.InFlight < 0:
		return bad("InFlight %d < 0", t.InFlight)
	case t.QueueWait < 0, t.JobTimeout < 0, t.CancelGrace < 0, t.HandshakeTimeout < 0,
		t.HeartbeatTimeout < 0, t.StopGrace < 0, t.RecycleAge < 0:
		return bad("negative duration")
	case t.KillRSS > 0 && t.KillRSS < t.MaxRSS:
		return bad("KillRSS %d below MaxRSS %d", t.KillRSS, t.MaxRSS)
	case t.RecycleAfterJobs < 0:
		return bad("RecycleAfterJobs %d < 0", t.RecycleAfterJobs)
	case t.MaxFrame < 0 || t.MaxFrame > 1<<31:
		return bad("MaxFrame %d out of range", t.MaxFrame)
	case t.SharedMemory > 1<<40:
		return bad("SharedMemory %d above 1 TiB", t.SharedMemory)
	}
	ps := t.processSpec(nil)
	if err := ps.Validate(); err != nil {
		return fmt.Errorf("%w %q: %w", ErrInvalidJobType, t.Name, err)
	}
	if err := t.Policy.WithDefaults().Validate(); err != nil {
		return bad("policy: %v", err)
	}
	return nil
}

// processSpec is the childproc.Spec for one of t's workers.
func (t *JobType) processSpec(logger hclog.Logger) childproc.Spec {
	return childproc.Spec{
		Path:       t.Command,
		Args:       t.Args,
		Dir:        t.Dir,
		Env:        newCPUShare(t, runtime.NumCPU()).env(t.Env, t.InheritEnv),
		InheritEnv: t.InheritEnv,
		Name:       t.Name,
		Logger:     logger,
		Affinity:   t.Affinity,
		Nice:       t.Nice,
		Limits:     t.Limits,
		Sandbox:    t.Sandbox,
	}
}
