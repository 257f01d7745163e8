package supervisor

import "fmt"

// JobVerdict is what the router does with a job whose worker died while
// running it.
type JobVerdict int

const (
	// FailJob fails the job with an error saying its worker died (wrapping
	// the [Failure]).
	FailJob JobVerdict = iota
	// RetryJob queues the job again to run on another worker.
	RetryJob
	// Quarantine fails the job as poisonous, with its own error, and never
	// retries it.
	Quarantine
)

// String returns "fail", "retry", "quarantine", or "JobVerdict(n)".
func (v JobVerdict) String() string {
	switch v {
	case FailJob:
		return "fail"
	case RetryJob:
		return "retry"
	case Quarantine:
		return "quarantine"
	}
	return fmt.Sprintf("JobVerdict(%d)", int(v))
}

// Retry decides the fate of a job whose worker died while running it.
// attempt is the number of attempts so far, this one included (1 after the
// first run); crashes is the number of workers that died while running this
// job, this one included. The router keeps both counts on its job record.
//
// The rules, in order: crashes >= PoisonAfter gives Quarantine; otherwise
// attempt < MaxAttempts gives RetryJob; otherwise FailJob. With the defaults
// (MaxAttempts 1, PoisonAfter 3) every job whose worker dies fails.
//
// Retry applies [JobFailure.WithDefaults] first; attempt below 1 counts as 1,
// crashes below 0 as 0, and an out-of-range (negative) field as its default.
//
// A job whose own timeout killed its worker (JobTimeoutFailure) is failed
// with its timeout error by the router and should not be passed to Retry.
func (j JobFailure) Retry(attempt int, crashes int) JobVerdict {
	j = j.WithDefaults()
	if j.MaxAttempts < 1 {
		j.MaxAttempts = DefaultMaxAttempts
	}
	if j.PoisonAfter < 1 {
		j.PoisonAfter = DefaultPoisonAfter
	}
	attempt = max(attempt, 1)
	crashes = max(crashes, 0)
	switch {
	case crashes >= j.PoisonAfter:
		return Quarantine
	case attempt < j.MaxAttempts:
		return RetryJob
	}
	return FailJob
}
