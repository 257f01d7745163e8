package childproc

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/procpool/procpool/internal/proctest"
)

// TestSharedInitDeathLeavesNothing: the shared PID namespace's init dies
// (SIGKILLed from outside) while a worker still counts as its user (its
// end not recorded yet, as happens when the next start comes first), and
// the next start replaces it. The dead init is reaped then, and once the
// users of both have ended, ReleaseSpares ends the new one: no init and
// no zombie is left. (The users of a dead init used to be forgotten: the
// new one was never ended, the dead one never reaped.)
func TestSharedInitDeathLeavesNothing(t *testing.T) {
	if !probeHost().pidns {
		t.Skipf("no PID namespaces here: %s", probeHost().why)
	}
	old, err := shared() // a worker's user of the init
	require.NoError(t, err)
	var n *nsInit
	t.Cleanup(func() {
		if t.Failed() { // what a failure leaves: kill and reap it all
			if n != nil {
				_ = unix.Kill(n.pid, unix.SIGKILL)
			}
			for _, pid := range []int{old.pid, n.pid} {
				var ws unix.WaitStatus
				_, _ = unix.Wait4(pid, &ws, unix.WALL, nil)
			}
		}
	})
	require.NoError(t, unix.Kill(old.pid, unix.SIGKILL))
	require.True(t, proctest.WaitFor(10*time.Second, func() bool { return !old.alive() }), "the init died")

	n, err = shared() // the next start
	require.NoError(t, err)
	require.NotSame(t, old, n, "a dead init is replaced")
	assert.True(t, n.alive())
	assert.False(t, slices.Contains(proctest.Zombies(), old.pid), "the dead init is reaped")

	releaseShared() // the first worker's end
	releaseShared() // the next one's
	ReleaseSpares()
	assert.True(t, proctest.WaitFor(10*time.Second, func() bool { return !proctest.Alive(n.pid) }),
		"ReleaseSpares ends the new init once nobody uses it")
	assert.Empty(t, proctest.Zombies(), "no init is left unreaped")
}
