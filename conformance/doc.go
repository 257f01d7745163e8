// Package conformance is the test suite every procpool worker SDK must pass.
// It starts a worker command under the real host (package procpool) and
// checks what a job's caller sees: payloads byte-exact, errors typed,
// cancels and deadlines honoured, crashes reported, heartbeats answered,
// shutdown clean, no process left. A few checks drive the worker over the
// protocol directly (packages childproc and codec), where the host does not
// show what the protocol requires: the exit status, 64-bit ids, answers to
// pings while draining, a crash's answer, and the optional features (request
// meta, batches, streamed results), which the host does not use yet.
//
// An SDK author writes a worker serving the job types below with the SDK,
// then runs the suite from a Go test:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, conformance.Worker{
//			Command:      "/usr/bin/ruby",
//			Args:         []string{"conformance_worker.rb"},
//			SharedMemory: true, // the SDK maps the shared memory region (fd 5)
//		})
//	}
//
// The Go SDK's worker is conformance/goworker, the reference for the
// contract; the Python and Node.js SDKs' are in sdk/python/tests and
// sdk/node/test.
//
// # The contract
//
// The worker serves these job types (payloads are ASCII where they are
// numbers or text):
//
//	echo     BLOB: the payload, unchanged.
//	sha512   BLOB: the payload's 64-byte SHA-512 digest.
//	sha512v  VALUE: {Size int, Seed uint8} → the digest (a msgpack bin) of
//	         Size bytes, byte i being (Seed + i) mod 256; a negative Size is
//	         an error with code "bad_size".
//	record   VALUE: a Record (below) → a Record with Name prefixed "hello, ",
//	         Count + 1, Ratio × 2, Floor = ⌊Ratio⌋ (it may be encoded as an
//	         integer), Data reversed, Tags with "seen" appended, Flag negated,
//	         Big unchanged (up to 2^64−1) and Attrs with "tags" set to the
//	         number of Tags.
//	sleep    BLOB: a number of milliseconds; waits that long, or until the job
//	         is cancelled (answer "cancelled") or its timeout elapses (answer
//	         "deadline"), then answers its payload.
//	spin     BLOB: a number of milliseconds; keeps a CPU busy that long, the
//	         way the SDK recommends for CPU-bound handlers, then answers its
//	         payload. Heartbeats must be answered meanwhile.
//	fail     BLOB: "code:message"; answers an error with that code and message.
//	crash    BLOB: a text; the handler fails in the way the SDK's language
//	         calls a crash (a Go panic, an uncaught exception), with the
//	         text in its message. The SDK answers code "panic" and the
//	         worker exits non-zero.
//	grow     BLOB: a number n; answers n bytes, byte i being i mod 251.
//
// A worker that supports the protocol's optional features (codec.Features)
// announces them in ready; the suite then checks them over the raw
// protocol, and the worker serves their job types too:
//
//	info     VALUE ("meta"): anything → {ID, JobType, Attempt, TraceParent,
//	         TraceState, Streaming}, what the request said about the job.
//	stream   BLOB ("stream"): "n:size"; sends n chunks of size bytes, chunk
//	         i being byte i mod 256 repeated, waiting for credit as the
//	         protocol says, then answers "done:n".
//
// Batches ("batch") and a batch's small payloads in the shared memory
// region ("shareditems") need no job type of their own. Every worker must
// accept a hello that offers features, and may answer none.
//
// The suite fails on any wrong byte, error or leftover process; it takes
// about a minute per worker.
package conformance
