package supervisor_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool/supervisor"
)

func TestDefaultPolicy(t *testing.T) {
	p := supervisor.DefaultPolicy()
	assert.Equal(t, supervisor.OneForOne, p.Strategy)
	assert.Equal(t, supervisor.Intensity{MaxRestarts: 5, Window: 10 * time.Second}, p.Intensity)
	assert.Equal(t, supervisor.Backoff{
		Initial:    50 * time.Millisecond,
		Max:        5 * time.Second,
		Multiplier: 2,
		Jitter:     0.2,
		ResetAfter: 30 * time.Second,
	}, p.Backoff)
	assert.Equal(t, supervisor.Unavailable, p.GiveUp)
	assert.Equal(t, 5*time.Second, p.Cooldown)
	assert.Equal(t, supervisor.JobFailure{MaxAttempts: 1, PoisonAfter: 3}, p.Jobs)
	require.NotNil(t, p.Decider)
	assert.Equal(t, supervisor.Restart, p.Decider(supervisor.Failure{Kind: supervisor.ProtocolFailure}))
	assert.NoError(t, p.Validate())
}

// noDecider strips the Decider so that policies can be compared with ==.
func noDecider(p supervisor.Policy) supervisor.Policy {
	p.Decider = nil
	return p
}

func TestWithDefaultsZeroIsDefault(t *testing.T) {
	assert.Equal(t, noDecider(supervisor.DefaultPolicy()), noDecider(supervisor.Policy{}.WithDefaults()))
	// Idempotent.
	p := supervisor.DefaultPolicy()
	assert.Equal(t, noDecider(p), noDecider(p.WithDefaults()))
}

func TestWithDefaultsKeepsExplicitValues(t *testing.T) {
	def := supervisor.DefaultPolicy()
	escalateAll := func(supervisor.Failure) supervisor.Directive { return supervisor.Escalate }
	tests := []struct {
		name string
		in   supervisor.Policy
		want func(supervisor.Policy) supervisor.Policy // applied to the defaults
	}{
		{"strategy", supervisor.Policy{Strategy: supervisor.AllForOne},
			func(p supervisor.Policy) supervisor.Policy { p.Strategy = supervisor.AllForOne; return p }},
		{"intensity", supervisor.Policy{Intensity: supervisor.Intensity{MaxRestarts: 3, Window: time.Minute}},
			func(p supervisor.Policy) supervisor.Policy {
				p.Intensity = supervisor.Intensity{MaxRestarts: 3, Window: time.Minute}
				return p
			}},
		{"intensity zero restarts kept when window set", supervisor.Policy{Intensity: supervisor.Intensity{Window: time.Second}},
			func(p supervisor.Policy) supervisor.Policy {
				p.Intensity = supervisor.Intensity{MaxRestarts: 0, Window: time.Second}
				return p
			}},
		{"intensity window filled", supervisor.Policy{Intensity: supervisor.Intensity{MaxRestarts: 3}},
			func(p supervisor.Policy) supervisor.Policy {
				p.Intensity = supervisor.Intensity{MaxRestarts: 3, Window: 10 * time.Second}
				return p
			}},
		{"backoff all explicit", supervisor.Policy{Backoff: supervisor.Backoff{
			Initial: time.Second, Max: time.Minute, Multiplier: 1.5, Jitter: 0.5, ResetAfter: time.Hour}},
			func(p supervisor.Policy) supervisor.Policy {
				p.Backoff = supervisor.Backoff{Initial: time.Second, Max: time.Minute, Multiplier: 1.5, Jitter: 0.5, ResetAfter: time.Hour}
				return p
			}},
		{"backoff partial: zero jitter kept, rest filled", supervisor.Policy{Backoff: supervisor.Backoff{Initial: 100 * time.Millisecond}},
			func(p supervisor.Policy) supervisor.Policy {
				p.Backoff = supervisor.Backoff{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2, Jitter: 0, ResetAfter: 30 * time.Second}
				return p
			}},
		{"backoff initial above default max raises max", supervisor.Policy{Backoff: supervisor.Backoff{Initial: 10 * time.Second}},
			func(p supervisor.Policy) supervisor.Policy {
				p.Backoff = supervisor.Backoff{Initial: 10 * time.Second, Max: 10 * time.Second, Multiplier: 2, ResetAfter: 30 * time.Second}
				return p
			}},
		{"backoff max below default initial lowers initial", supervisor.Policy{Backoff: supervisor.Backoff{Max: 10 * time.Millisecond}},
			func(p supervisor.Policy) supervisor.Policy {
				p.Backoff = supervisor.Backoff{Initial: 10 * time.Millisecond, Max: 10 * time.Millisecond, Multiplier: 2, ResetAfter: 30 * time.Second}
				return p
			}},
		{"backoff multiplier 1 kept", supervisor.Policy{Backoff: supervisor.Backoff{Multiplier: 1, Jitter: 0.1}},
			func(p supervisor.Policy) supervisor.Policy {
				p.Backoff.Multiplier = 1
				p.Backoff.Jitter = 0.1
				return p
			}},
		{"give up", supervisor.Policy{GiveUp: supervisor.EscalateToParent},
			func(p supervisor.Policy) supervisor.Policy { p.GiveUp = supervisor.EscalateToParent; return p }},
		{"cooldown", supervisor.Policy{Cooldown: time.Minute},
			func(p supervisor.Policy) supervisor.Policy { p.Cooldown = time.Minute; return p }},
		{"jobs", supervisor.Policy{Jobs: supervisor.JobFailure{MaxAttempts: 4, PoisonAfter: 1}},
			func(p supervisor.Policy) supervisor.Policy {
				p.Jobs = supervisor.JobFailure{MaxAttempts: 4, PoisonAfter: 1}
				return p
			}},
		{"jobs partial", supervisor.Policy{Jobs: supervisor.JobFailure{MaxAttempts: 4}},
			func(p supervisor.Policy) supervisor.Policy {
				p.Jobs = supervisor.JobFailure{MaxAttempts: 4, PoisonAfter: 3}
				return p
			}},
		{"decider kept", supervisor.Policy{Decider: escalateAll},
			func(p supervisor.Policy) supervisor.Policy { return p }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in.WithDefaults()
			assert.Equal(t, noDecider(tt.want(def)), noDecider(got))
			require.NotNil(t, got.Decider)
			if tt.in.Decider != nil {
				assert.Equal(t, supervisor.Escalate, got.Decider(supervisor.Failure{Kind: supervisor.ExitFailure}))
			}
			assert.NoError(t, got.Validate())
			// Defaults are a fixed point.
			assert.Equal(t, noDecider(got), noDecider(got.WithDefaults()))
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		p       supervisor.Policy
		wantErr []string // substrings; nil means valid
	}{
		{"zero", supervisor.Policy{}, nil},
		{"defaults", supervisor.DefaultPolicy(), nil},
		{"give up at once", supervisor.Policy{Intensity: supervisor.Intensity{Window: time.Second}}, nil},
		{"jitter bounds", supervisor.Policy{Backoff: supervisor.Backoff{Jitter: 1}}, nil},
		{"multiplier 1", supervisor.Policy{Backoff: supervisor.Backoff{Multiplier: 1}}, nil},
		{"initial equals max", supervisor.Policy{Backoff: supervisor.Backoff{Initial: time.Second, Max: time.Second}}, nil},

		{"strategy", supervisor.Policy{Strategy: 7}, []string{"unknown Strategy 7"}},
		{"negative max restarts", supervisor.Policy{Intensity: supervisor.Intensity{MaxRestarts: -1}}, []string{"Intensity.MaxRestarts -1 is negative"}},
		{"negative window", supervisor.Policy{Intensity: supervisor.Intensity{Window: -time.Second}}, []string{"Intensity.Window -1s is negative"}},
		{"negative initial", supervisor.Policy{Backoff: supervisor.Backoff{Initial: -1}}, []string{"Backoff.Initial -1ns is negative"}},
		{"negative max", supervisor.Policy{Backoff: supervisor.Backoff{Max: -1}}, []string{"Backoff.Max -1ns is negative"}},
		{"initial above max", supervisor.Policy{Backoff: supervisor.Backoff{Initial: 2 * time.Second, Max: time.Second}}, []string{"Backoff.Initial 2s is above Backoff.Max 1s"}},
		{"multiplier below 1", supervisor.Policy{Backoff: supervisor.Backoff{Multiplier: 0.5}}, []string{"Backoff.Multiplier 0.5 must be a finite number >= 1"}},
		{"negative multiplier", supervisor.Policy{Backoff: supervisor.Backoff{Multiplier: -2}}, []string{"Backoff.Multiplier -2"}},
		{"NaN multiplier", supervisor.Policy{Backoff: supervisor.Backoff{Multiplier: math.NaN()}}, []string{"Backoff.Multiplier NaN"}},
		{"infinite multiplier", supervisor.Policy{Backoff: supervisor.Backoff{Multiplier: math.Inf(1)}}, []string{"Backoff.Multiplier +Inf"}},
		{"negative jitter", supervisor.Policy{Backoff: supervisor.Backoff{Jitter: -0.1}}, []string{"Backoff.Jitter -0.1 is outside [0,1]"}},
		{"jitter above 1", supervisor.Policy{Backoff: supervisor.Backoff{Jitter: 1.5}}, []string{"Backoff.Jitter 1.5 is outside [0,1]"}},
		{"NaN jitter", supervisor.Policy{Backoff: supervisor.Backoff{Jitter: math.NaN()}}, []string{"Backoff.Jitter NaN"}},
		{"negative reset after", supervisor.Policy{Backoff: supervisor.Backoff{ResetAfter: -time.Second}}, []string{"Backoff.ResetAfter -1s is negative"}},
		{"give up", supervisor.Policy{GiveUp: 9}, []string{"unknown GiveUp 9"}},
		{"negative cooldown", supervisor.Policy{Cooldown: -time.Second}, []string{"Cooldown -1s is negative"}},
		{"negative max attempts", supervisor.Policy{Jobs: supervisor.JobFailure{MaxAttempts: -1}}, []string{"Jobs.MaxAttempts -1 is negative"}},
		{"negative poison after", supervisor.Policy{Jobs: supervisor.JobFailure{PoisonAfter: -3}}, []string{"Jobs.PoisonAfter -3 is negative"}},
		{"several at once", supervisor.Policy{
			Intensity: supervisor.Intensity{MaxRestarts: -1},
			Backoff:   supervisor.Backoff{Jitter: 2},
			Cooldown:  -1,
		}, []string{"Intensity.MaxRestarts", "Backoff.Jitter", "Cooldown"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if tt.wantErr == nil {
				assert.NoError(t, err)
				assert.NoError(t, tt.p.WithDefaults().Validate(), "defaults of a valid policy are valid")
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, supervisor.ErrInvalidPolicy)
			for _, want := range tt.wantErr {
				assert.Contains(t, err.Error(), want)
			}
			assert.Equal(t, len(tt.wantErr), strings.Count(err.Error(), "supervisor: invalid policy:"),
				"one line per problem: %q", err)
			// WithDefaults does not hide invalid values.
			assert.Error(t, tt.p.WithDefaults().Validate())
		})
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		got  interface{ String() string }
		want string
	}{
		{supervisor.OneForOne, "one-for-one"},
		{supervisor.AllForOne, "all-for-one"},
		{supervisor.Strategy(5), "Strategy(5)"},
		{supervisor.Restart, "restart"},
		{supervisor.Stop, "stop"},
		{supervisor.Escalate, "escalate"},
		{supervisor.Directive(-1), "Directive(-1)"},
		{supervisor.Unavailable, "unavailable"},
		{supervisor.EscalateToParent, "escalate to parent"},
		{supervisor.GiveUp(3), "GiveUp(3)"},
		{supervisor.FailJob, "fail"},
		{supervisor.RetryJob, "retry"},
		{supervisor.Quarantine, "quarantine"},
		{supervisor.JobVerdict(4), "JobVerdict(4)"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.got.String())
	}
}

func TestErrInvalidPolicyIsDistinct(t *testing.T) {
	err := supervisor.Policy{Cooldown: -1}.Validate()
	assert.False(t, errors.Is(err, errors.New("supervisor: invalid policy")))
}
