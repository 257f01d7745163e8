// Package procpool runs jobs in pools of long-lived worker processes.
//
// Starting a process costs milliseconds; handing a job to a process that is
// already running costs microseconds. A System keeps warm workers per job
// type, feeds them jobs over pipes (see docs/protocol.md), with payloads of
// 64 KiB and more copied once into a memory region each worker shares with
// the host instead of through the pipes (JobType.SharedMemory), and supervises
// them as actors (github.com/asynkron/protoactor-go): a worker that
// crashes, hangs, overruns a job or writes garbage is replaced under the
// job type's supervision policy, and every accepted job resolves exactly
// once, with a result or with an error matching one of the Err values.
//
// A host starts a System, spawns a router per job type and calls it:
//
//	sys := procpool.NewSystem(procpool.Config{Logger: logger})
//	defer sys.Shutdown(ctx)
//	r, err := sys.Spawn(procpool.JobType{Name: "sha512", Command: "./sha512worker", MaxWorkers: 4})
//	...
//	sum, err := r.Call(ctx, procpool.Blob, data)             // bytes in, bytes out
//	out, err := procpool.CallValue[Result](ctx, r, Args{...}) // typed, msgpack-encoded
//	job, err := r.Submit(ctx, procpool.Blob, data)            // a future
//
// Workers are programs that speak the protocol; Go workers use package
// worker. Routers can also live in a user's own actor tree: see
// actors.RouterProps. The supervision policy is package supervisor's.
package procpool
