package actors

import (
	"context"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/procpool/procpool/internal/proctest"
	"github.com/procpool/procpool/internal/testbin"
)

// TestDrainRunsAJobThatArrivesAfterIt: a job admitted before Shutdown
// closed the gate can reach the router's mailbox after the drain request
// (its caller was preempted between admission and send). The drain must
// still run it, not fail it when the router stops.
func TestDrainRunsAJobThatArrivesAfterIt(t *testing.T) {
	defer proctest.VerifyNone(t)
	defer testbin.Cleanup()
	system := actor.NewActorSystem()
	d := NewDispatcher(0)
	defer d.Close()
	h, pid, err := SpawnRouter(system.Root, JobType{Name: "echo", Command: testbin.Path(t), MinWorkers: 1, MaxWorkers: 1},
		RouterOptions{Dispatcher: d})
	require.NoError(t, err)
	ctx := context.Background()
	require.Eventually(t, func() bool {
		st, err := h.Stats(ctx)
		return err == nil && st.Idle == 1
	}, 10*time.Second, 5*time.Millisecond)

	late := NewJob(Blob, []byte("late"))
	require.NoError(t, h.gate.admit(ctx, late, true))
	h.gate.close(ErrShuttingDown)
	drain := &shutdownRequest{done: make(chan struct{})}
	system.Root.Send(pid, drain)
	system.Root.Send(pid, late) // after the drain request

	select {
	case <-drain.done:
	case <-time.After(20 * time.Second):
		t.Fatal("drain did not finish")
	}
	select {
	case <-late.Done():
	default:
		t.Fatal("the drain ended with the late job unresolved")
	}
	out, err := late.Result()
	require.NoError(t, err)
	assert.Equal(t, "late", string(out))
	require.NoError(t, system.Root.StopFuture(pid).Wait())
	h.env.wg.Wait()
	system.Shutdown()
}
