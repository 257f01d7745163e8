package supervisor_test

import (
	"errors"
	"io"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/procpool/procpool/supervisor"
)

func TestFailureKindString(t *testing.T) {
	tests := []struct {
		kind supervisor.FailureKind
		want string
	}{
		{supervisor.ExitFailure, "exit"},
		{supervisor.SignalFailure, "signal"},
		{supervisor.ProtocolFailure, "protocol"},
		{supervisor.JobTimeoutFailure, "job timeout"},
		{supervisor.HeartbeatFailure, "heartbeat"},
		{supervisor.MemoryFailure, "memory"},
		{supervisor.StartupFailure, "startup"},
		{0, "FailureKind(0)"},
		{-1, "FailureKind(-1)"},
		{supervisor.StartupFailure + 1, "FailureKind(8)"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.kind.String())
	}
}

func TestFailureError(t *testing.T) {
	cause := errors.New("codec: malformed frame")
	tests := []struct {
		f    supervisor.Failure
		want string
	}{
		{supervisor.Failure{Kind: supervisor.ExitFailure, ExitCode: 3}, "worker exited with code 3"},
		{supervisor.Failure{Kind: supervisor.ExitFailure, ExitCode: 0}, "worker exited with code 0"},
		{supervisor.Failure{Kind: supervisor.SignalFailure, ExitCode: -1, Signal: syscall.SIGSEGV},
			"worker killed by signal 11 (segmentation fault)"},
		{supervisor.Failure{Kind: supervisor.ProtocolFailure, ExitCode: -1, Signal: syscall.SIGKILL, Err: cause},
			"worker broke the protocol: codec: malformed frame"},
		{supervisor.Failure{Kind: supervisor.JobTimeoutFailure}, "worker killed: job timed out"},
		{supervisor.Failure{Kind: supervisor.HeartbeatFailure}, "worker killed: missed heartbeats"},
		{supervisor.Failure{Kind: supervisor.MemoryFailure}, "worker killed: memory above the ceiling"},
		{supervisor.Failure{Kind: supervisor.StartupFailure, ExitCode: 2}, "worker failed to start (exit code 2)"},
		{supervisor.Failure{Kind: supervisor.StartupFailure, ExitCode: -1, Signal: syscall.SIGKILL, Err: io.EOF},
			"worker failed to start (signal 9 (killed)): EOF"},
		{supervisor.Failure{Kind: supervisor.StartupFailure}, "worker failed to start"},
		{supervisor.Failure{}, "worker failed: FailureKind(0)"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.f.Error())
	}
}

func TestFailureUnwrap(t *testing.T) {
	var err error = supervisor.Failure{Kind: supervisor.ProtocolFailure, Err: io.ErrUnexpectedEOF}
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	var f supervisor.Failure
	assert.True(t, errors.As(err, &f))
	assert.Equal(t, supervisor.ProtocolFailure, f.Kind)
	assert.NoError(t, supervisor.Failure{Kind: supervisor.ExitFailure}.Unwrap())
}
