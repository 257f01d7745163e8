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
type rootSupervisor struct {
	// childless are the channels of awaitChildless, closed once the last
	// child has terminated.
	childless []chan struct{}
}

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
	// awaitChildless asks the supervisor to close done once it has no
	// child left: at once if it has none. A channel rather than an answer
	// to a future: a waiter that gave up leaves no dead letter behind.
	awaitChildless struct{ done chan struct{} }
)

func supervisorProps(d *actors.Dispatcher) *actor.Props {
	strategy := actor.NewOneForOneStrategy(10, time.Minute, func(any) actor.Directive {
		return actor.RestartDirective
	})
	opts := []actor.PropsOption{actor.WithSupervisor(strategy)}
	if d != nil {
		opts = append(opts, actor.WithDispatcher(d))
	}
	return actor.PropsFromProducer(func() actor.Actor { return &rootSupervisor{} }, opts...)
}

func (s *rootSupervisor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *spawnChild:
		pid, err := ctx.SpawnNamed(m.props, m.name)
		ctx.Respond(&spawnChildResult{pid: pid, err: err})
	case *awaitChildless:
		if len(ctx.Children()) == 0 {
			close(m.done)
		} else {
			s.childless = append(s.childless, m.done)
		}
	case *actor.Terminated:
		// A child is gone (protoactor removed it from Children before
		// this message).
		if len(ctx.Children()) == 0 {
			for _, done := range s.childless {
				close(done)
			}
			s.childless = nil
		}
	}
}

// waitChildless waits, at most timeout, until the supervisor at pid has
// seen every child terminate, so that stopping it sends no Stop to a child
// already gone. The supervisor answers when its last child's Terminated
// arrives, which can come after the child's StopFuture has returned
// (protoactor tells the watchers first, then the parent).
func waitChildless(system *actor.ActorSystem, pid *actor.PID, timeout time.Duration) {
	done := make(chan struct{})
	system.Root.Send(pid, &awaitChildless{done: done})
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
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
