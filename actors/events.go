package actors

import (
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/procpool/procpool/supervisor"
)

// EventKind names a supervision event.
type EventKind int

// The supervision events a router publishes.
const (
	EventStarted     EventKind = iota + 1 // a worker process started
	EventReady                            // a worker finished its handshake
	EventCrashed                          // a worker failed
	EventRestarted                        // a replacement for a failed worker was started; PID is the failed worker's
	EventRecycled                         // a worker was retired by plan (jobs, age, memory)
	EventPassivated                       // an idle worker above the minimum was stopped
	EventGaveUp                           // the restart intensity was exceeded
	EventRecovered                        // the job type is available again after its cool-down
	EventUncleanStop                      // a worker asked to stop did not exit with status 0 within its grace
)

var eventNames = map[EventKind]string{
	EventStarted: "started", EventReady: "ready", EventCrashed: "crashed",
	EventRestarted: "restarted", EventRecycled: "recycled", EventPassivated: "passivated",
	EventGaveUp: "gave up", EventRecovered: "recovered", EventUncleanStop: "stopped uncleanly",
}

// String returns the event's name.
func (k EventKind) String() string {
	if s, ok := eventNames[k]; ok {
		return s
	}
	return fmt.Sprintf("event(%d)", int(k))
}

// WorkerEvent is published on the actor system's event stream for every
// supervision event; subscribe with system.EventStream.Subscribe and a type
// switch on *WorkerEvent.
type WorkerEvent struct {
	Kind    EventKind
	JobType string
	PID     int                 // the worker's process id, 0 if none
	Failure *supervisor.Failure // for EventCrashed, EventRestarted and EventGaveUp
	Detail  string              // a human-readable note
	Time    time.Time
}

// String describes the event in one line.
func (e *WorkerEvent) String() string {
	s := fmt.Sprintf("%s: worker %d %s", e.JobType, e.PID, e.Kind)
	if e.Failure != nil {
		s += fmt.Sprintf(" (%s)", e.Failure.Kind)
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// stopOnPanic is the strategy for actors whose state cannot be rebuilt by
// a restart: an actor that panics is stopped (its Stopping handler cleans
// up) and its parent learns of it through Terminated.
var stopOnPanic = actor.NewOneForOneStrategy(0, 0, func(any) actor.Directive { return actor.StopDirective })
