package actors

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool/sandbox"
)

// TestCPUShare checks the rule of cpuShare: a worker is given
// GOMAXPROCS=share when its share of the CPUs is below what it could use,
// and never when the job type sets or inherits GOMAXPROCS itself.
func TestCPUShare(t *testing.T) {
	for _, c := range []struct {
		name string
		t    JobType
		ncpu int
		want []string
	}{
		{"one worker per CPU", JobType{MaxWorkers: 2}, 2, []string{"GOMAXPROCS=1"}},
		{"more workers than CPUs", JobType{MaxWorkers: 16}, 2, []string{"GOMAXPROCS=1"}},
		{"two CPUs each", JobType{MaxWorkers: 4}, 8, []string{"GOMAXPROCS=2"}},
		{"a share rounds down", JobType{MaxWorkers: 3}, 8, []string{"GOMAXPROCS=2"}},
		{"one worker: every CPU, as Go would", JobType{MaxWorkers: 1}, 8, nil},
		{"one CPU", JobType{MaxWorkers: 4}, 1, nil},
		{"the affinity's CPUs", JobType{MaxWorkers: 2, Affinity: []int{0, 1, 2, 3}}, 8, []string{"GOMAXPROCS=2"}},
		{"one worker on its affinity", JobType{MaxWorkers: 1, Affinity: []int{0, 1}}, 8, nil},
		{"the sandbox's quota", JobType{MaxWorkers: 1, Sandbox: sandbox.Sandbox{CPU: 1.5}}, 8, []string{"GOMAXPROCS=2"}},
		{"a quota below one CPU", JobType{MaxWorkers: 1, Sandbox: sandbox.Sandbox{CPU: 0.25}}, 8, []string{"GOMAXPROCS=1"}},
		{"the job type's own", JobType{MaxWorkers: 2, Env: []string{"A=1", "GOMAXPROCS=4"}}, 2, []string{"A=1", "GOMAXPROCS=4"}},
		{"the host's", JobType{MaxWorkers: 2, Env: []string{"A=1"}, InheritEnv: []string{"GOMAXPROCS"}}, 2, []string{"A=1"}},
		{"after the job type's", JobType{MaxWorkers: 2, Env: []string{"A=1", "GOMAXPROCSX=1"}}, 4, []string{"A=1", "GOMAXPROCSX=1", "GOMAXPROCS=2"}},
	} {
		got := newCPUShare(&c.t, c.ncpu).env(c.t.Env, c.t.InheritEnv)
		require.Equal(t, c.want, got, c.name)
	}
	// The job type's Env is never written to.
	env := make([]string, 1, 4)
	env[0] = "A=1"
	jt := JobType{MaxWorkers: 2, Env: env}
	_ = newCPUShare(&jt, 2).env(jt.Env, nil)
	require.Equal(t, "", env[:2][1], "env's spare capacity is left alone")
}
