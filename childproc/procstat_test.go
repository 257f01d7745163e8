package childproc

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStatExiting(t *testing.T) {
	for _, tc := range []struct {
		stat string
		want bool
	}{
		{"42 (sleep) S 1 42 42 0 -1 4194304 100 0 0 0 0 0 0 0 20 0 1 0", false},
		{"42 (sleep) S 1 42 42 0 -1 4194308 100 0 0 0 0 0 0 0 20 0 1 0", true}, // PF_EXITING
		{"42 (a) b) Z 1 42 42 0 -1 4194304 100", true},                         // a zombie, a name with ") "
		{"42 (x) R 1", false}, // too short: unknown
		{"garbage", false},
	} {
		assert.Equal(t, tc.want, statExiting([]byte(tc.stat)), tc.stat)
	}
}

func TestExitingOfALiveAndAnEndedProcess(t *testing.T) {
	p, err := Start(Spec{Path: "/bin/sleep", Args: []string{"30"}})
	require.NoError(t, err)
	assert.False(t, p.Exiting(), "a sleeping process")
	require.NoError(t, p.Kill())
	require.Eventually(t, p.Exiting, 5*time.Second, time.Millisecond)
	<-p.Done()
	assert.True(t, p.Exiting(), "after the reap")
}

func TestStatCPU(t *testing.T) {
	line := "42 (a b) S 1 42 42 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 1 0"
	d, err := statCPU([]byte(line))
	require.NoError(t, err)
	assert.Equal(t, 3*time.Second, d, "(250 + 50) ticks of 1/100 s")
	_, err = statCPU([]byte("42 (x) R 1"))
	assert.Error(t, err)
}

func TestCPUTimeOfABusyProcess(t *testing.T) {
	p, err := Start(Spec{Path: "/bin/sh", Args: []string{"-c", "while :; do :; done"}})
	require.NoError(t, err)
	defer func() {
		_ = p.Kill()
		<-p.Done()
	}()
	require.Eventually(t, func() bool {
		d, err := p.CPUTime()
		return err == nil && d >= 50*time.Millisecond
	}, 20*time.Second, 10*time.Millisecond, "a spinning process uses CPU time")
}
