// Package distributed runs procpool jobs on many machines through NATS
// JetStream. Each machine keeps its own procpool; JetStream carries the
// jobs between them and keeps them until they are done.
//
// A [Producer] publishes a job to its type's stream (one subject and one
// work-queue stream per job type, [Config.JobSubject] and
// [Config.JobStream]), with the job's id as JetStream's message id, and
// receives its result through the result stream: [Producer.Call] blocks,
// [Producer.Submit] returns a [Job] to wait for.
//
// A [Node] binds local routers ([Node.Bind]) to their streams through a
// pull consumer all nodes share. Each node pulls only as many jobs as it
// has room for (the router's MaxWorkers × InFlight by default), runs them
// on its router, stores each result in the result stream and only then
// acknowledges the job, sending in-progress acks while it runs.
//
// # Delivery
//
// Delivery is at-least-once: a job stays in its stream until a node
// acknowledges it, so a node that dies loses nothing (the server delivers
// its jobs again after the ack wait), and a job may run more than once.
// Results are exactly-once: the first result stored for a job wins, and
// the result stream and the producer discard any other, so a caller sees
// one. Handlers must tolerate running twice.
//
// A job that fails with a retryable error (its worker died, its pool was
// unavailable) is handed back and redelivered after the job type's backoff
// delay. A poison job (procpool.ErrPoisonJob), one that fails retryably on
// its last delivery ([Config.MaxDeliver]), or one delivered more often
// than that because its nodes died, is moved to the dead-letter stream with
// its last error ([DeadLetter], [ReadDeadLetters]), and its caller gets an
// error matching [ErrDeadLetter]. Other errors reach the caller as a
// [*JobError] that matches the procpool error the job ended with on its
// node.
//
// # Connections and servers
//
// Producers and nodes take a *nats.Conn: [Connect] adds reconnect defaults
// to the usual nats.go options (TLS, credentials, NKeys, user and
// password). Package embedded runs a NATS server with JetStream in the
// calling process, listening on 127.0.0.1: the single-machine default.
//
// docs/distributed.md in the repository covers the delivery semantics,
// configuration, subject permissions, operations and the choice of
// JetStream.
package distributed
