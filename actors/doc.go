// Package actors is procpool's actor layer: a worker actor per worker
// process and a router actor per job type, on
// github.com/asynkron/protoactor-go.
//
// The worker actor starts its process (package childproc), owns its link
// and its timers (handshake, heartbeat, job overrun) and observes its exit,
// which it reports to its router once the link has read everything the
// worker wrote. The link is the protocol with one worker, in three parts
// with a rule each: the in-flight table (who owns a running job), the
// writer (bounded, interruptible writes) and the read role (who reads);
// every frame the worker was not asked for breaks the protocol and kills
// the worker.
//
// The router owns the queue of accepted jobs and its workers (its
// children), each in one WorkerPhase. It publishes each ready worker's free
// capacity on a slot board; a caller that finds no job queued takes a slot
// and writes its request straight to that worker's pipe, and a Call then
// reads its own answer, so an idle pool costs a job no actor hop. Queued
// jobs go to freed slots first come, first served. The router also scales
// between MinWorkers and MaxWorkers, passivates idle workers, recycles them
// by plan, and applies the job type's supervision policy (package
// supervisor) when one fails.
//
// Routers fit in a user's own actor tree: spawn RouterProps as a child of
// any actor, send it *Job with Request and receive *Result, or Bind the
// returned *Router handle and call it from ordinary code. Supervision
// events are published on the actor system's event stream as *WorkerEvent.
//
// docs/architecture.md walks through the code.
package actors
