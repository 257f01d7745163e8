package supervisor_test

import (
	"fmt"
	"time"

	"github.com/procpool/procpool/supervisor"
)

// A user sets only what they care about; the rest takes the defaults.
func ExamplePolicy() {
	p := supervisor.Policy{
		Intensity: supervisor.Intensity{MaxRestarts: 3, Window: time.Minute},
		Jobs:      supervisor.JobFailure{MaxAttempts: 3}, // idempotent jobs: retry
		Decider: func(f supervisor.Failure) supervisor.Directive {
			if f.Kind == supervisor.ProtocolFailure {
				return supervisor.Escalate // a worker that breaks the protocol is a bug: stop at once
			}
			return supervisor.Restart
		},
	}
	if err := p.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	p = p.WithDefaults()
	fmt.Println("strategy:", p.Strategy)
	fmt.Printf("intensity: %d in %v\n", p.Intensity.MaxRestarts, p.Intensity.Window)
	fmt.Printf("backoff: %v to %v x%v jitter %v reset after %v\n",
		p.Backoff.Initial, p.Backoff.Max, p.Backoff.Multiplier, p.Backoff.Jitter, p.Backoff.ResetAfter)
	fmt.Printf("give up: %v for %v\n", p.GiveUp, p.Cooldown)
	fmt.Printf("jobs: %d attempts, poison after %d\n", p.Jobs.MaxAttempts, p.Jobs.PoisonAfter)

	bad := supervisor.Policy{Backoff: supervisor.Backoff{Multiplier: 0.5}, Cooldown: -time.Second}
	fmt.Println(bad.Validate())
	// Output:
	// strategy: one-for-one
	// intensity: 3 in 1m0s
	// backoff: 50ms to 5s x2 jitter 0.2 reset after 30s
	// give up: unavailable for 5s
	// jobs: 3 attempts, poison after 3
	// supervisor: invalid policy: Backoff.Multiplier 0.5 must be a finite number >= 1
	// supervisor: invalid policy: Cooldown -1s is negative
}

// The router calls Failed on its own goroutine with the time and a random
// number. With the default policy, rnd 0.5 gives the nominal delays.
func ExampleRestarts() {
	r := supervisor.NewRestarts(supervisor.DefaultPolicy())
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	crash := supervisor.Failure{Kind: supervisor.SignalFailure, ExitCode: -1, Signal: 11}

	// A worker that crashes every 100ms after it is restarted.
	now := start
	for range 6 {
		d := r.Failed(now, crash, 0.5)
		if d.GaveUp {
			fmt.Printf("%v: gave up after %d failures in the window; available again at +%v\n",
				now.Sub(start), d.RestartsInWindow, d.AvailableAt.Sub(start))
			break
		}
		fmt.Printf("%v: %v in %v (consecutive %d)\n", now.Sub(start), d.Directive, d.Delay, d.Consecutive)
		now = now.Add(d.Delay + 100*time.Millisecond)
	}
	fmt.Println("available at +3s:", r.Available(start.Add(3*time.Second)))
	fmt.Println("available at +8s:", r.Available(start.Add(8*time.Second)))
	// After the cool-down the history is forgotten.
	fmt.Println(r.Failed(start.Add(9*time.Second), crash, 0.5).Consecutive)
	// Output:
	// 0s: restart in 50ms (consecutive 1)
	// 150ms: restart in 100ms (consecutive 2)
	// 350ms: restart in 200ms (consecutive 3)
	// 650ms: restart in 400ms (consecutive 4)
	// 1.15s: restart in 800ms (consecutive 5)
	// 2.05s: gave up after 6 failures in the window; available again at +7.05s
	// available at +3s: false
	// available at +8s: true
	// 1
}

func ExampleBackoff_Delay() {
	b := supervisor.Backoff{Initial: 50 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2} // no jitter
	var seq []time.Duration
	for n := 1; n <= 9; n++ {
		seq = append(seq, b.Delay(n, 0))
	}
	fmt.Println(seq)
	b.Jitter = 0.2
	fmt.Println(b.Delay(1, 0), b.Delay(1, 0.5), b.Delay(1, 0.999), b.Delay(10_000, 0.999))
	// Output:
	// [50ms 100ms 200ms 400ms 800ms 1.6s 3.2s 5s 5s]
	// 40ms 50ms 59.98ms 5s
}

func ExampleJobFailure_Retry() {
	j := supervisor.JobFailure{MaxAttempts: 5, PoisonAfter: 3}
	for attempt := 1; attempt <= 3; attempt++ {
		fmt.Printf("attempt %d, worker died: %v\n", attempt, j.Retry(attempt, attempt))
	}
	fmt.Println("default policy:", supervisor.JobFailure{}.Retry(1, 1))
	// Output:
	// attempt 1, worker died: retry
	// attempt 2, worker died: retry
	// attempt 3, worker died: quarantine
	// default policy: fail
}
