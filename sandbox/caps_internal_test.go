package sandbox

import (
	"bytes"
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// hasCap agrees with the CapEff line of /proc/self/status for every
// capability the kernel knows.
func TestHasCapMatchesProcStatus(t *testing.T) {
	b, err := os.ReadFile("/proc/self/status")
	require.NoError(t, err)
	var eff uint64
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("CapEff:")); ok {
			eff, err = strconv.ParseUint(string(bytes.TrimSpace(v)), 16, 64)
			require.NoError(t, err)
		}
	}
	last, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	require.NoError(t, err)
	n, err := strconv.Atoi(string(bytes.TrimSpace(last)))
	require.NoError(t, err)
	for c := 0; c <= n; c++ {
		require.Equal(t, eff&(1<<uint(c)) != 0, hasCap(c), "capability %d", c)
	}
}
