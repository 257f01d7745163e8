package procpool

import (
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/procpool/procpool/actors"
)

// rootSupervisor is the parent of a System's routers. A router that fails
// (panics, or escalates because its restart intensity was exceeded and its
// policy says EscalateToParent) is restarted with a fresh pool, at most 10
// times a minute; past that it is stopped.
type rootSupervisor struct{}

// Messages of the root supervisor.
type (
	spawnChild struct {
		props *actor.Props
		name  string
	}
	spawnChildResult struct {
		pid *actor.PID
		err error
	}
	// countChildren asks how many children it still has.
	countChildren struct{}
)

func supervisorProps(d *actors.Dispatcher) *actor.Props {
	strategy := actor.NewOneForOneStrategy(10, time.Minute, func(any) actor.Directive {
		return actor.RestartDirective
	})
	opts := []actor.PropsOption{actor.WithSupervisor(strategy)}
	if d != nil {
		opts = append(opts, actor.WithDispatcher(d))
	}
	return actor.PropsFromProducer(func() actor.Actor { return rootSupervisor{} }, opts...)
}

func (rootSupervisor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *spawnChild:
		pid, err := ctx.SpawnNamed(m.props, m.name)
		ctx.Respond(&spawnChildResult{pid: pid, err: err})
	case *countChildren:
		ctx.Respond(len(ctx.Children()))
	}
}

// waitChildless waits until the supervisor at pid has seen every child
// terminate, so that stopping it sends no Stop to a child already gone.
func waitChildless(system *actor.ActorSystem, pid *actor.PID, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		res, err := system.Root.RequestFuture(pid, &countChildren{}, time.Second).Result()
		if n, ok := res.(int); err != nil || !ok || n == 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// spawnUnder asks the supervisor at parent to spawn props as its child
// named name.
func spawnUnder(system *actor.ActorSystem, parent *actor.PID, props *actor.Props, name string) (*actor.PID, error) {
	res, err := system.Root.RequestFuture(parent, &spawnChild{props: props, name: name}, 10*time.Second).Result()
	if err != nil {
		return nil, fmt.Errorf("procpool: spawn %s: %w", name, err)
	}
	r, ok := res.(*spawnChildResult)
	if !ok {
		return nil, errors.New("procpool: spawn " + name + ": unexpected answer")
	}
	if r.err != nil {
		return nil, fmt.Errorf("procpool: spawn %s: %w", name, r.err)
	}
	return r.pid, nil
}
