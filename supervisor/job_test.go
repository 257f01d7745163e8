package supervisor_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/procpool/procpool/supervisor"
)

func TestJobFailureRetry(t *testing.T) {
	type jf = supervisor.JobFailure
	tests := []struct {
		name             string
		j                jf
		attempt, crashes int
		want             supervisor.JobVerdict
	}{
		// Defaults: MaxAttempts 1, PoisonAfter 3.
		{"default fails on first crash", jf{}, 1, 1, supervisor.FailJob},
		{"default explicit", jf{MaxAttempts: 1, PoisonAfter: 3}, 1, 1, supervisor.FailJob},
		{"attempt below 1 counts as 1", jf{}, 0, 1, supervisor.FailJob},

		// Retries.
		{"retry first", jf{MaxAttempts: 3}, 1, 1, supervisor.RetryJob},
		{"retry second", jf{MaxAttempts: 3}, 2, 2, supervisor.RetryJob},
		{"attempts exhausted", jf{MaxAttempts: 3, PoisonAfter: 5}, 3, 3, supervisor.FailJob},
		{"attempt 0 with retries left", jf{MaxAttempts: 2}, 0, 1, supervisor.RetryJob},

		// Poison.
		{"poison at default 3", jf{MaxAttempts: 5}, 3, 3, supervisor.Quarantine},
		{"poison before attempts run out", jf{MaxAttempts: 10, PoisonAfter: 2}, 2, 2, supervisor.Quarantine},
		{"poison beats exhaustion", jf{MaxAttempts: 3, PoisonAfter: 3}, 3, 3, supervisor.Quarantine},
		{"poison after 1 even without retries", jf{MaxAttempts: 1, PoisonAfter: 1}, 1, 1, supervisor.Quarantine},
		{"crashes below poison", jf{MaxAttempts: 5, PoisonAfter: 3}, 3, 2, supervisor.RetryJob},
		{"no crash never poison", jf{MaxAttempts: 2, PoisonAfter: 1}, 1, 0, supervisor.RetryJob},
		{"negative crashes count as 0", jf{MaxAttempts: 1, PoisonAfter: 1}, 1, -4, supervisor.FailJob},
		{"negative poison treated as default", jf{MaxAttempts: 5, PoisonAfter: -1}, 2, 2, supervisor.RetryJob},
		{"negative attempts treated as default", jf{MaxAttempts: -1}, 1, 1, supervisor.FailJob},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.j.Retry(tt.attempt, tt.crashes))
		})
	}
}

// TestJobFailureLifecycle walks one poisonous job through retries.
func TestJobFailureLifecycle(t *testing.T) {
	j := supervisor.JobFailure{MaxAttempts: 5} // PoisonAfter defaults to 3
	var got []supervisor.JobVerdict
	for attempt := 1; ; attempt++ {
		v := j.Retry(attempt, attempt) // every attempt crashed its worker
		got = append(got, v)
		if v != supervisor.RetryJob {
			break
		}
	}
	assert.Equal(t, []supervisor.JobVerdict{supervisor.RetryJob, supervisor.RetryJob, supervisor.Quarantine}, got)
}
