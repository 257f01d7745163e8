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
