// Package actors is procpool's actor layer: a worker actor per worker
// process, a router actor per job type, and a root supervisor over the
// routers, on github.com/asynkron/protoactor-go.
//
// The worker actor starts its process (package childproc), owns its link
// (pipes, jobs in flight, the read side), its timers (handshake, heartbeat,
// job overrun) and observes its exit, which it reports to its router.
//
// The router owns the queue of accepted jobs and its workers (its
// children). It publishes each ready worker's free capacity as slots; a
// caller that finds no job queued takes a slot and writes its request
// straight to that worker's pipe, and a Call then reads its own answer, so
// an idle pool costs a job no actor hop. Queued jobs go to freed slots
// first come, first served. The router also scales between MinWorkers and
// MaxWorkers, passivates idle workers, recycles them by plan, and applies
// the job type's supervision policy (package supervisor) when one fails.
//
// Routers fit in a user's own actor tree: spawn RouterProps as a child of
// any actor, send it *Job with Request and receive *Result, or Bind the
// returned *Router handle and call it from ordinary code. Supervision
// events are published on the actor system's event stream as *WorkerEvent.
//
// docs/architecture.md walks through the code.
package actors
