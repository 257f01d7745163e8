// Package distributed runs procpool jobs on many machines through NATS
// JetStream: producers publish jobs to one stream per job type, nodes pull
// them into their local procpool routers as they have free capacity, and
// results come back through a result stream, keyed by job id.
//
// See docs/distributed.md for the delivery semantics, configuration and
// operations.
package distributed
