// Package supervisor holds procpool's supervision policy as data, and the
// small deterministic state machines that a router applies when its worker
// processes fail.
//
// Nothing here runs by itself: there are no goroutines, timers or locks, and
// the package does not depend on the actor framework. The router actor (in
// actors/) calls these functions on its own goroutine, passing the current
// time and a random number in [0,1), so every decision is reproducible in a
// test.
//
// # Policy
//
// A [Policy] governs one job type. Its zero value means [DefaultPolicy];
// [Policy.WithDefaults] fills the zero fields, so users set only what they
// care about, and [Policy.Validate] reports bad values. The defaults:
//
//	Strategy           OneForOne: replace only the worker that failed
//	Intensity          more than 5 failures within 10s gives up
//	Backoff.Initial    50ms before the first restart
//	Backoff.Max        5s cap
//	Backoff.Multiplier 2: 50ms, 100ms, 200ms, ... 3.2s, 5s, 5s
//	Backoff.Jitter     0.2: each delay is spread uniformly over ±20%
//	Backoff.ResetAfter 30s of health forgets the consecutive failures
//	GiveUp             Unavailable: fail the job type's jobs fast ...
//	Cooldown           ... for 5s, then start again with a clean history
//	Jobs.MaxAttempts   1: a job fails when its worker dies (no retry)
//	Jobs.PoisonAfter   3: a job on which 3 workers died is quarantined
//	Decider            DefaultDecider: Restart for every failure
//
// Zero means "default" everywhere except in two places where zero is a
// meaningful setting: Intensity.MaxRestarts 0 (give up on the first failure)
// and Backoff.Jitter 0 (no jitter). Those take their defaults only when their
// whole struct is zero.
//
// # Failures and directives
//
// The router classifies each worker death as a [Failure] of some
// [FailureKind]. Recycling a worker (after N jobs, at its maximum age, or
// because of its memory while idle), passivating an idle one, and stopping
// workers on purpose (shutdown, scale-down, the siblings stopped by an
// AllForOne restart) are not failures and are never reported.
//
// A [Decider] maps a failure to a [Directive]: Restart (replace after the
// backoff delay), Stop (do not replace now; a worker is started again on
// demand, not before the delay), or Escalate (give up at once). Restart and
// Stop both count toward the intensity limit.
//
// # Intensity: the OTP rule
//
// [Restarts] keeps the failure times of the job type (all its workers
// together). A failure at time t is inside the window at now while
// now-t <= Window. After recording a failure, if the window holds more than
// MaxRestarts failures the router gives up: with MaxRestarts 5 the fifth
// failure within the window is still restarted and the sixth gives up. Older
// failures fall out of the window as time passes; a healthy period does not
// clear the window, only age does. This is exactly supervisor intensity and
// period in Erlang/OTP.
//
// # Backoff
//
// The delay before a restart grows with the number of consecutive failures
// of the job type: Initial * Multiplier^(n-1) for the n-th, capped at Max,
// then jittered by a factor 1+Jitter*(2*rnd-1) and capped at Max again (see
// [Backoff.Delay]). The consecutive count returns to zero when a worker
// started after the last failure has been healthy for ResetAfter
// ([Restarts.Healthy]), or, failing a report, when a failure arrives at
// least ResetAfter after the previous failure's restart delay ended.
//
// # Giving up
//
// When a failure exceeds the intensity limit, or the decider says Escalate,
// [Restarts.Failed] returns a [Decision] with GaveUp set. With GiveUp ==
// Unavailable the job type cools down: [Restarts.Available] is false until
// Cooldown has passed, the router fails queued and new jobs fast with a
// typed error, and afterwards the failure history is forgotten and workers
// start on demand. With GiveUp == EscalateToParent the router escalates to
// its parent actor instead.
//
// # Jobs on a worker that died
//
// Each job in flight on a worker that failed is judged by
// [JobFailure.Retry] from two counts the router keeps on the job: attempts
// so far, and crashes (workers that died while running it). A job is
// quarantined as poisonous once crashes reaches PoisonAfter, retried on
// another worker while attempts remain, and failed otherwise. Retrying
// gives at-least-once execution: enable it (MaxAttempts > 1) only for
// idempotent job types.
package supervisor
