// Package worker is the Go SDK for writing procpool worker processes: the
// child side of the protocol of package codec.
//
// A worker is a program whose main function registers a handler per job
// type on a [Server] and calls [Main]:
//
//	func main() {
//		s := &worker.Server{}
//		s.Handle("upper", func(ctx context.Context, p []byte) ([]byte, error) {
//			return bytes.ToUpper(p), nil
//		})
//		worker.HandleValue(s, "add", func(ctx context.Context, in [2]int) (int, error) {
//			return in[0] + in[1], nil
//		})
//		worker.Main(s)
//	}
//
// [Server.Handle] registers a BLOB handler, which receives the caller's
// bytes and returns bytes. [HandleValue] registers a VALUE handler, whose
// argument and result are Go values encoded with msgpack
// (github.com/vmihailenco/msgpack/v5, default settings).
//
// # Talking to the host
//
// The host starts the worker with its protocol pipes as file descriptors 3
// (requests, which the worker reads) and 4 (responses, which it writes).
// Stdin, stdout and stderr are left to the program: the host captures
// stdout and stderr as logs, and the SDK never writes to stdout. The SDK's
// own diagnostics go to [Server.Logger], by default stderr.
//
// [Server.Serve] waits for the host's hello, answers with the worker's pid
// and job types, then serves requests until the host shuts the worker down
// or goes away. [Server.ServeConn] does the same over any pair of streams,
// which is how the SDK is tested without a host process.
//
// A procpool host also passes a shared memory region as file descriptor 5
// and announces its size in its hello. Serve maps it (on Linux) and closes
// the descriptor: requests of 64 KiB and more then arrive in place in the
// region, without a copy, and results of 64 KiB and more leave through it.
// Handlers see no difference, except that a large payload is valid only
// until the handler returns, as every payload is.
//
// # Jobs
//
// Every request runs in a goroutine of its own (goroutines are reused from
// job to job), so a worker runs as many jobs at once as the host sends it,
// and keeps answering pings and reading cancellations while they run.
// Responses are written by whichever job finishes while no other is
// writing, which also writes the responses queued meanwhile, in one system
// call. A handler's context is cancelled when the
// host cancels the job, when the job's timeout elapses (counted from the
// request's arrival), when the shutdown grace period runs out, and when the
// host goes away. A handler that then returns an error is answered with
// codec.CodeCancelled or codec.CodeDeadline (unless the error is an [*Error]
// with a code); one that returns a result despite the cancellation is
// answered with its result.
//
// The handler decides the payload kind of a job type's responses: a BLOB
// handler answers blobs, a VALUE handler values. The request's payload kind
// is not checked: a BLOB handler given a value receives its msgpack
// encoding, and a VALUE handler given a blob decodes its bytes as msgpack.
//
// A handler chooses the error code of its response by returning an
// [*Error] (see [Errorf]), possibly wrapped; any other error is answered
// with codec.CodeHandler and the error's text. Requests for a job type
// without a handler are answered codec.CodeUnknownJobType; VALUE payloads
// that do not decode into the handler's argument type, codec.CodeBadPayload;
// results larger than the host accepts, codec.CodeTooLarge. Every request is
// answered exactly once, as long as the worker lives.
//
// # Job metadata and tracing
//
// [Info] returns what the request says about the job a handler runs: its
// id, job type, deadline, attempt number (1 for the first run, more when
// the host runs it again after a failure) and the W3C trace context of the
// caller's span. A handler's own spans join the caller's trace through
// [JobInfo.Carrier], which has the methods of OpenTelemetry's
// propagation.TextMapCarrier (this package does not import OpenTelemetry):
//
//	info, _ := worker.Info(ctx)
//	ctx = propagation.TraceContext{}.Extract(ctx, info.Carrier())
//	ctx, span := otel.Tracer("resizer").Start(ctx, "resize")
//	defer span.End()
//
// The attempt and the trace context come with the protocol's "meta"
// feature, which the SDK always accepts (see codec.Features); from a host
// that does not send them, Attempt is 1 and the trace context empty.
//
// # Batches
//
// A host that negotiated the "batch" feature may send many requests in one
// frame. Their jobs are the same as requests sent alone, cancelled and
// timed out one by one, but they run in the batch's order with at most
// [Server.BatchConcurrency] of them at once (GOMAXPROCS by default), so that
// a batch of a thousand small jobs does not start a thousand goroutines. A
// job whose context ends while it waits for its turn is answered without
// running. The answers to a batch's jobs leave together in batch
// responses: each goroutine running the batch holds its answers and sends
// them when it has run its share, when a few hundred are held, or when the
// first has waited a millisecond, whichever comes first; so a batch of
// short jobs costs a write per few hundred jobs, and an answer waits at
// most a millisecond for the others.
//
// The SDK also accepts the "shareditems" feature: a host may then place
// the payloads of a batch's jobs in the shared memory region whatever
// their size, and the frame carries only their places. Handlers see no
// difference: the payload is a []byte, valid until the handler returns.
//
// # Streamed results
//
// With the "stream" feature, a host may ask for a job's partial results: the
// handler then calls [Send] (or [SendValue]) with each chunk before it
// returns its final result, which ends the stream. The host grants a window
// of chunks and more as its caller consumes them; Send blocks while the
// window is used up, until the host grants more or the job's context ends.
// [JobInfo.Streaming] tells whether the host asked; Send returns
// [ErrNotStreaming] when it did not.
//
// # Panics
//
// A handler that panics is answered codec.CodePanic. The response's error
// message is the first line of "panic: <value>"; its payload, the error's
// detail, holds the value in full and the first frames of the stack below
// the panic. The whole stack goes to the log in one write, which the host
// keeps as one record. The worker then stops serving, since a panic may have
// left its state corrupt: it reads no more requests, lets the other running
// jobs finish and answer normally for up to [Server.DrainTimeout], then
// cancels those still running and waits for them as long again. Serve
// returns a [*PanicError] and [Main] exits with [ExitPanic] (70), so that
// the host replaces the worker; requests the worker did not answer are
// lost with it, as on any crash.
//
// # Stopping
//
// On a shutdown message the worker answers every later request with
// codec.CodeShuttingDown, waits for its running jobs up to the grace period
// the host gave, cancels those still running, and returns nil; Main exits
// with [ExitOK]. An end of file on fd 3 after the shutdown message does not
// cut the grace short (the host may close the pipe once it has sent
// shutdown). When the host goes away otherwise (end of file on fd 3), the worker
// cancels every running job, waits for them up to DrainTimeout (500 ms by
// default) and returns nil. A malformed or oversized frame from the host ends the conversation
// with an error wrapping the codec error, and Main exits with [ExitError].
//
// # Memory
//
// A BLOB handler's payload slice is valid until the handler returns; the
// SDK recycles its buffer once the response is written. The slice a handler
// returns is written before the SDK forgets it, so a handler may return
// (part of) its payload. VALUE results are encoded into pooled buffers.
package worker
