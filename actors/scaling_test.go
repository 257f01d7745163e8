package actors

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestPlanSpawns(t *testing.T) {
	base := scaleInput{Min: 1, Max: 4, InFlight: 2}
	for _, tc := range []struct {
		name  string
		in    func(scaleInput) scaleInput
		spawn int
		full  bool
	}{
		{"reach the minimum", func(in scaleInput) scaleInput { return in }, 1, false},
		{"minimum met, idle", func(in scaleInput) scaleInput { in.Serving, in.Alive, in.Free = 1, 1, 2; return in }, 0, false},
		{"queued jobs the free slots take", func(in scaleInput) scaleInput {
			in.Serving, in.Alive, in.Free, in.Queued = 1, 1, 2, 2
			return in
		}, 0, false},
		{"queued jobs beyond them", func(in scaleInput) scaleInput {
			in.Serving, in.Alive, in.Free, in.Queued = 1, 1, 0, 3
			return in
		}, 2, false},
		{"starting workers count", func(in scaleInput) scaleInput {
			in.Starting, in.Alive, in.Queued = 2, 2, 4
			return in
		}, 0, false},
		{"never beyond max", func(in scaleInput) scaleInput {
			in.Serving, in.Alive, in.Queued = 3, 3, 100
			return in
		}, 1, false},
		{"stopping workers hold a place", func(in scaleInput) scaleInput {
			in.Serving, in.Alive, in.Queued = 2, 4, 100
			return in
		}, 0, false},
		{"one recycled worker does not", func(in scaleInput) scaleInput {
			in.Serving, in.Alive, in.Recycled, in.Queued = 3, 4, 1, 100
			return in
		}, 1, false},
		{"but only one", func(in scaleInput) scaleInput {
			in.Serving, in.Alive, in.Recycled, in.Queued = 2, 4, 2, 100
			return in
		}, 1, false},
		{"owed replacements", func(in scaleInput) scaleInput {
			in.Serving, in.Alive, in.Free, in.Owed = 1, 1, 2, 2
			return in
		}, 2, false},
		{"a full pool owes nothing", func(in scaleInput) scaleInput {
			in.Serving, in.Alive, in.Free, in.Owed = 4, 4, 8, 2
			return in
		}, 0, true},
		{"draining: no minimum, no replacements", func(in scaleInput) scaleInput {
			in.Draining, in.Owed = true, 3
			return in
		}, 0, false},
		{"draining: queued jobs still get a worker", func(in scaleInput) scaleInput {
			in.Draining, in.Queued = true, 1
			return in
		}, 1, false},
	} {
		spawn, full := planSpawns(tc.in(base))
		assert.Equal(t, tc.spawn, spawn, tc.name)
		assert.Equal(t, tc.full, full, tc.name)
	}
}

func TestPlanPassivations(t *testing.T) {
	s := time.Second
	idle := []time.Duration{2 * s, 0, 5 * s, 12 * s, 11 * s}
	assert.Equal(t, []int{3, 4}, planPassivations(1, 5, 0, 10*s, idle), "idle past the timeout, longest first")
	assert.Equal(t, []int{3}, planPassivations(4, 5, 0, 10*s, idle), "never below the minimum")
	assert.Empty(t, planPassivations(1, 5, 1, 10*s, idle), "not while jobs are queued")
	assert.Empty(t, planPassivations(1, 5, 0, -1, idle), "a negative timeout passivates nothing")
	assert.Empty(t, planPassivations(5, 5, 0, 10*s, idle))
}

func TestWorkerPhases(t *testing.T) {
	all := []WorkerPhase{PhaseStarting, PhaseReady, PhaseRetiring, PhaseStopping, PhaseFailing}
	allowed := map[[2]WorkerPhase]bool{
		{PhaseStarting, PhaseReady}: true, {PhaseStarting, PhaseStopping}: true, {PhaseStarting, PhaseFailing}: true,
		{PhaseReady, PhaseRetiring}: true, {PhaseReady, PhaseStopping}: true, {PhaseReady, PhaseFailing}: true,
		{PhaseRetiring, PhaseStopping}: true, {PhaseRetiring, PhaseFailing}: true,
	}
	for _, from := range all {
		for _, to := range all {
			w := &workerState{phase: from}
			assert.Equal(t, allowed[[2]WorkerPhase{from, to}], w.move(to), "%s → %s", from, to)
		}
		assert.NotContains(t, from.String(), "WorkerPhase(")
	}
	assert.Equal(t, "WorkerPhase(9)", WorkerPhase(9).String())
	w := &workerState{phase: PhaseStopping}
	assert.False(t, w.move(PhaseFailing), "once asked to stop, its end is not a failure")
}
