package procpool

import (
	"github.com/procpool/procpool/actors"
	"github.com/procpool/procpool/supervisor"
)

// EventKind names a supervision event (WorkerEvent.Kind).
type EventKind = actors.EventKind

// The supervision events a router publishes.
const (
	EventStarted     = actors.EventStarted     // a worker process started
	EventReady       = actors.EventReady       // a worker finished its handshake
	EventCrashed     = actors.EventCrashed     // a worker failed
	EventRestarted   = actors.EventRestarted   // a replacement for a failed worker was started
	EventRecycled    = actors.EventRecycled    // a worker was retired by plan (jobs, age, memory)
	EventPassivated  = actors.EventPassivated  // an idle worker above the minimum was stopped
	EventGaveUp      = actors.EventGaveUp      // the restart intensity was exceeded
	EventRecovered   = actors.EventRecovered   // the job type is available again after its cool-down
	EventUncleanStop = actors.EventUncleanStop // a worker asked to stop did not exit with status 0 in time
)

// WorkerPhase is where a worker is in its life (WorkerStats.Phase).
type WorkerPhase = actors.WorkerPhase

// The worker phases.
const (
	PhaseStarting = actors.PhaseStarting
	PhaseReady    = actors.PhaseReady
	PhaseRetiring = actors.PhaseRetiring
	PhaseStopping = actors.PhaseStopping
	PhaseFailing  = actors.PhaseFailing
)

// WorkerStats is one worker's line in Stats.PerWorker.
type WorkerStats = actors.WorkerStats

// ShutdownMode says what a shutdown does with the jobs it finds.
type ShutdownMode = actors.ShutdownMode

// The shutdown modes.
const (
	Drain        = actors.Drain        // finish queued and running jobs (Shutdown)
	CancelQueued = actors.CancelQueued // fail the queued jobs, finish the running ones
	Abort        = actors.Abort        // fail every unfinished job, kill the workers
)

// The supervision policy of a job type (JobType.Policy): package
// supervisor's types, so that one import suffices.
type (
	Policy      = supervisor.Policy
	Strategy    = supervisor.Strategy
	Intensity   = supervisor.Intensity
	Backoff     = supervisor.Backoff
	JobFailure  = supervisor.JobFailure
	GiveUp      = supervisor.GiveUp
	Directive   = supervisor.Directive
	Failure     = supervisor.Failure
	FailureKind = supervisor.FailureKind
)

// The values of the policy's enumerations.
const (
	OneForOne        = supervisor.OneForOne
	AllForOne        = supervisor.AllForOne
	Unavailable      = supervisor.Unavailable
	EscalateToParent = supervisor.EscalateToParent
	Restart          = supervisor.Restart
	Stop             = supervisor.Stop

	ExitFailure       = supervisor.ExitFailure
	SignalFailure     = supervisor.SignalFailure
	ProtocolFailure   = supervisor.ProtocolFailure
	JobTimeoutFailure = supervisor.JobTimeoutFailure
	HeartbeatFailure  = supervisor.HeartbeatFailure
	MemoryFailure     = supervisor.MemoryFailure
	StartupFailure    = supervisor.StartupFailure
)

// StreamJob is an accepted job whose handler sends partial results
// (Router.Stream): Chunks yields them, Wait gives the final answer.
type StreamJob = actors.StreamJob

// MapResult is one item's outcome in Router.MapUnordered.
type MapResult = actors.MapResult
