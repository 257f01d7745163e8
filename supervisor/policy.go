package supervisor

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Defaults applied by [Policy.WithDefaults] and returned by [DefaultPolicy].
const (
	// DefaultMaxRestarts: more than 5 failures within the window make the
	// router give up.
	DefaultMaxRestarts = 5
	// DefaultWindow is the intensity window: 10s.
	DefaultWindow = 10 * time.Second
	// DefaultInitialBackoff is the delay before the first restart.
	DefaultInitialBackoff = 50 * time.Millisecond
	// DefaultMaxBackoff caps the restart delay.
	DefaultMaxBackoff = 5 * time.Second
	// DefaultMultiplier: each consecutive failure doubles the delay.
	DefaultMultiplier = 2.0
	// DefaultJitter randomises each delay by ±20%.
	DefaultJitter = 0.2
	// DefaultResetAfter: 30s of health forgets the consecutive failures.
	DefaultResetAfter = 30 * time.Second
	// DefaultCooldown is how long a job type stays unavailable after the
	// router gave up (GiveUp == Unavailable).
	DefaultCooldown = 5 * time.Second
	// DefaultMaxAttempts: a job is run once; it fails if its worker dies.
	DefaultMaxAttempts = 1
	// DefaultPoisonAfter: a job that was running on 3 workers that died is
	// quarantined as poisonous.
	DefaultPoisonAfter = 3
)

// ErrInvalidPolicy is matched (with errors.Is) by every error that
// [Policy.Validate] returns.
var ErrInvalidPolicy = errors.New("supervisor: invalid policy")

// Strategy chooses which workers are restarted when one fails.
type Strategy int

const (
	// OneForOne replaces only the worker that failed (the default).
	OneForOne Strategy = iota
	// AllForOne stops every worker of the job type and starts them all again
	// when one fails. The incident is one failure for the intensity and
	// backoff bookkeeping; the siblings stopped on purpose are not failures.
	AllForOne
)

// String returns "one-for-one", "all-for-one", or "Strategy(n)".
func (s Strategy) String() string {
	switch s {
	case OneForOne:
		return "one-for-one"
	case AllForOne:
		return "all-for-one"
	}
	return fmt.Sprintf("Strategy(%d)", int(s))
}

// Directive is what a [Decider] asks the router to do about one failure.
type Directive int

const (
	// Restart replaces the failed worker(s) after the backoff delay. It
	// counts toward the intensity limit.
	Restart Directive = iota
	// Stop does not replace the worker now; the router starts a new one on
	// demand, not before the backoff delay. It counts toward the intensity
	// limit.
	Stop
	// Escalate gives up at once, as if the intensity limit were exceeded.
	Escalate
)

// String returns "restart", "stop", "escalate", or "Directive(n)".
func (d Directive) String() string {
	switch d {
	case Restart:
		return "restart"
	case Stop:
		return "stop"
	case Escalate:
		return "escalate"
	}
	return fmt.Sprintf("Directive(%d)", int(d))
}

// Decider maps a failure to a directive. It is called on the router's
// goroutine and must be fast, pure and must not block. A nil Decider means
// [DefaultDecider]. A Decider that returns a value other than Restart, Stop
// or Escalate is treated as if it had returned Escalate.
type Decider func(Failure) Directive

// DefaultDecider returns Restart for every failure.
func DefaultDecider(Failure) Directive { return Restart }

// GiveUp chooses what the router does when it gives up on a job type: when a
// failure exceeds the intensity limit or the decider says Escalate.
type GiveUp int

const (
	// Unavailable fails the queued jobs and every new job of the type fast,
	// with a typed error, until Cooldown has passed; then the job type starts
	// again with a clean failure history (the default).
	Unavailable GiveUp = iota
	// EscalateToParent makes the router escalate the failure to its parent
	// actor, for users who embed routers in their own supervision tree.
	EscalateToParent
)

// String returns "unavailable", "escalate to parent", or "GiveUp(n)".
func (g GiveUp) String() string {
	switch g {
	case Unavailable:
		return "unavailable"
	case EscalateToParent:
		return "escalate to parent"
	}
	return fmt.Sprintf("GiveUp(%d)", int(g))
}

// Intensity is the Erlang/OTP restart intensity: if more than MaxRestarts
// failures happen within Window, the router gives up. A failure that happened
// exactly Window before now still counts (as in OTP). MaxRestarts 0 gives up
// on the first failure.
//
// The zero Intensity means "use the defaults" (5 in 10s); a zero Window alone
// is filled with the default window. To give up on the first failure, set
// MaxRestarts to 0 and Window to any positive duration (or use a Decider that
// returns Escalate).
type Intensity struct {
	// MaxRestarts is how many failures within Window are tolerated; one more
	// gives up. Must be >= 0.
	MaxRestarts int
	// Window is the sliding period over which failures are counted. Must be
	// >= 0; zero means the default (10s).
	Window time.Duration
}

// WithDefaults returns i with the defaults filled in: the zero Intensity
// becomes {DefaultMaxRestarts, DefaultWindow}; otherwise only a zero Window is
// filled (a zero MaxRestarts with a set Window is kept: give up at once).
func (i Intensity) WithDefaults() Intensity {
	if i == (Intensity{}) {
		return Intensity{MaxRestarts: DefaultMaxRestarts, Window: DefaultWindow}
	}
	if i.Window == 0 {
		i.Window = DefaultWindow
	}
	return i
}

// Backoff is the delay before replacing a failed worker. It grows
// exponentially with the number of consecutive failures of the job type and
// is capped; see [Backoff.Delay].
//
// Zero fields mean defaults (see [Backoff.WithDefaults]), except Jitter: zero
// Jitter is taken literally (no jitter) unless the whole Backoff is zero, in
// which case every field, Jitter included, takes its default.
type Backoff struct {
	// Initial is the delay before the first restart. Default 50ms.
	Initial time.Duration
	// Max caps the delay, jitter included. Default 5s (or Initial if larger).
	Max time.Duration
	// Multiplier is the growth factor per consecutive failure; >= 1.
	// Default 2. 1 gives a constant delay.
	Multiplier float64
	// Jitter in [0,1] randomises the delay uniformly within
	// [d*(1-Jitter), d*(1+Jitter)) around the nominal delay d, never above
	// Max. Default 0.2 (only when the whole Backoff is zero; see above).
	Jitter float64
	// ResetAfter: once a worker started after the last failure has been
	// healthy (ready) this long, the consecutive-failure count goes back to
	// zero. Default 30s.
	ResetAfter time.Duration
}

// WithDefaults returns b with zero fields filled: the zero Backoff becomes
// {50ms, 5s, 2, 0.2, 30s}. Otherwise a zero Initial becomes 50ms (or Max if
// smaller), a zero Max becomes 5s (or Initial if larger), a zero Multiplier 2,
// a zero ResetAfter 30s, and a zero Jitter stays zero.
func (b Backoff) WithDefaults() Backoff {
	if b == (Backoff{}) {
		return Backoff{
			Initial:    DefaultInitialBackoff,
			Max:        DefaultMaxBackoff,
			Multiplier: DefaultMultiplier,
			Jitter:     DefaultJitter,
			ResetAfter: DefaultResetAfter,
		}
	}
	if b.Initial == 0 {
		b.Initial = DefaultInitialBackoff
		if b.Max > 0 && b.Max < b.Initial {
			b.Initial = b.Max
		}
	}
	if b.Max == 0 {
		b.Max = max(DefaultMaxBackoff, b.Initial)
	}
	if b.Multiplier == 0 {
		b.Multiplier = DefaultMultiplier
	}
	if b.ResetAfter == 0 {
		b.ResetAfter = DefaultResetAfter
	}
	return b
}

// JobFailure holds the rules for a job whose worker died while running it.
type JobFailure struct {
	// MaxAttempts is the number of attempts per job, the first included.
	// 1 (the default; 0 means 1) fails the job when its worker dies; more
	// than 1 retries it on another worker: at-least-once execution, for
	// idempotent job types only.
	MaxAttempts int
	// PoisonAfter: a job that was running on this many workers that died is
	// quarantined as poisonous: it fails with its own error and is not
	// retried. 0 means the default, 3. It only matters when MaxAttempts > 1.
	PoisonAfter int
}

// WithDefaults returns j with a zero MaxAttempts set to 1 and a zero
// PoisonAfter set to 3.
func (j JobFailure) WithDefaults() JobFailure {
	if j.MaxAttempts == 0 {
		j.MaxAttempts = DefaultMaxAttempts
	}
	if j.PoisonAfter == 0 {
		j.PoisonAfter = DefaultPoisonAfter
	}
	return j
}

// Policy is the supervision policy of one job type: data the router reads.
// Its zero value is usable and means [DefaultPolicy]; set only the fields you
// care about and the router fills the rest with [Policy.WithDefaults].
type Policy struct {
	// Strategy chooses which workers are restarted when one fails.
	// Default OneForOne.
	Strategy Strategy
	// Intensity is the OTP restart limit. Default 5 failures in 10s.
	Intensity Intensity
	// Backoff is the delay before a replacement. Default 50ms doubling to
	// 5s, ±20% jitter, reset after 30s of health.
	Backoff Backoff
	// GiveUp is what happens when the router gives up. Default Unavailable.
	GiveUp GiveUp
	// Cooldown is how long the job type stays unavailable after the router
	// gave up with GiveUp == Unavailable. Default 5s.
	Cooldown time.Duration
	// Jobs holds the retry and poison rules for jobs whose worker died.
	// Default: no retry (MaxAttempts 1), PoisonAfter 3.
	Jobs JobFailure
	// Decider maps each failure to a directive. Default (nil)
	// DefaultDecider: Restart everything.
	Decider Decider
}

// DefaultPolicy returns the defaults: OneForOne; more than 5 failures in 10s
// gives up; backoff 50ms doubling up to 5s with ±20% jitter, reset after 30s
// of health; give up by making the job type unavailable for a 5s cool-down;
// jobs are not retried (MaxAttempts 1) and PoisonAfter is 3; DefaultDecider.
func DefaultPolicy() Policy { return Policy{}.WithDefaults() }

// WithDefaults returns p with its zero fields filled with the defaults, so
// that a user sets only what they care about. Explicit values are kept. See
// [Intensity.WithDefaults] and [Backoff.WithDefaults] for the two fields
// where zero is meaningful (MaxRestarts and Jitter). A nil Decider becomes
// DefaultDecider.
func (p Policy) WithDefaults() Policy {
	p.Intensity = p.Intensity.WithDefaults()
	p.Backoff = p.Backoff.WithDefaults()
	if p.Cooldown == 0 {
		p.Cooldown = DefaultCooldown
	}
	p.Jobs = p.Jobs.WithDefaults()
	if p.Decider == nil {
		p.Decider = DefaultDecider
	}
	return p
}

// Validate reports every problem in p, joined into one error; each matches
// [ErrInvalidPolicy]. Zero fields are valid (they mean the defaults), so
// Validate may be called before or after WithDefaults. It rejects unknown
// Strategy and GiveUp values, negative counts and durations, a Multiplier
// below 1 or not finite, a Jitter outside [0,1], and an Initial backoff
// larger than an explicit Max.
func (p Policy) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidPolicy}, args...)...))
	}
	if p.Strategy != OneForOne && p.Strategy != AllForOne {
		bad("unknown Strategy %d", int(p.Strategy))
	}
	if p.Intensity.MaxRestarts < 0 {
		bad("Intensity.MaxRestarts %d is negative", p.Intensity.MaxRestarts)
	}
	if p.Intensity.Window < 0 {
		bad("Intensity.Window %v is negative", p.Intensity.Window)
	}
	b := p.Backoff
	if b.Initial < 0 {
		bad("Backoff.Initial %v is negative", b.Initial)
	}
	if b.Max < 0 {
		bad("Backoff.Max %v is negative", b.Max)
	}
	if b.Initial > 0 && b.Max > 0 && b.Initial > b.Max {
		bad("Backoff.Initial %v is above Backoff.Max %v", b.Initial, b.Max)
	}
	if b.Multiplier != 0 && (math.IsNaN(b.Multiplier) || math.IsInf(b.Multiplier, 0) || b.Multiplier < 1) {
		bad("Backoff.Multiplier %v must be a finite number >= 1", b.Multiplier)
	}
	if math.IsNaN(b.Jitter) || b.Jitter < 0 || b.Jitter > 1 {
		bad("Backoff.Jitter %v is outside [0,1]", b.Jitter)
	}
	if b.ResetAfter < 0 {
		bad("Backoff.ResetAfter %v is negative", b.ResetAfter)
	}
	if p.GiveUp != Unavailable && p.GiveUp != EscalateToParent {
		bad("unknown GiveUp %d", int(p.GiveUp))
	}
	if p.Cooldown < 0 {
		bad("Cooldown %v is negative", p.Cooldown)
	}
	if p.Jobs.MaxAttempts < 0 {
		bad("Jobs.MaxAttempts %d is negative", p.Jobs.MaxAttempts)
	}
	if p.Jobs.PoisonAfter < 0 {
		bad("Jobs.PoisonAfter %d is negative", p.Jobs.PoisonAfter)
	}
	return errors.Join(errs...)
}
