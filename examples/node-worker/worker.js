'use strict';
// A procpool worker in Node.js, written with procpool-worker (sdk/node).
// It serves the job types of the Go example (examples/sha512worker):
//
//   sha512     BLOB:  the payload's bytes -> their 64-byte SHA-512 digest
//   sha512v    VALUE: {Size, Seed} -> the digest of Size bytes that the worker
//              makes itself (byte i is Seed+i mod 256)
//   wordcount  VALUE: a text -> how often each word occurs in it
//   noop       BLOB:  anything -> nothing (the bench's no-load job)
//   noopv      VALUE: anything -> nil (the bench's no-load VALUE job)
//
// A host starts it with its protocol pipes as fds 3 and 4:
//
//   procpool.JobType{Name: "sha512", Command: "node", Args: []string{"examples/node-worker/worker.js"}}
//
// Install the SDK's dependency first: `npm ci` in sdk/node (or
// `npm install ./sdk/node` in your own project).
const { createHash } = require('node:crypto');

let sdk;
try {
  sdk = require('procpool-worker');
} catch {
  sdk = require('../../sdk/node'); // not installed: the repository's copy
}
const { Worker, ProcpoolError } = sdk;

const MAX_GENERATE = 64 * 2 ** 30;
const w = new Worker();

// A BLOB handler gets a Buffer and returns bytes. Hashing 1 MiB takes about
// 2 ms of the event loop; far longer work belongs in a ThreadPool, so that
// heartbeats are answered meanwhile.
w.handle('sha512', (payload) => createHash('sha512').update(payload).digest());

// A VALUE handler gets the decoded msgpack value: the Go struct
// Generate{Size int; Seed byte} arrives as {Size, Seed}.
w.handleValue('sha512v', ({ Size, Seed }, job) => {
  if (!(Size >= 0 && Size <= MAX_GENERATE)) {
    // A ProcpoolError chooses the code the caller's *RemoteError carries.
    throw new ProcpoolError('bad_size', `size ${Size} outside [0, ${MAX_GENERATE}]`);
  }
  const chunk = Buffer.allocUnsafe(Math.min(64 << 10, Math.max(256, Size))); // no larger than needed
  for (let i = 0; i < 256; i++) chunk[i] = (Seed + i) & 0xff;
  for (let i = 256; i < chunk.length; i *= 2) chunk.copy(chunk, i, 0, i);
  const h = createHash('sha512');
  for (let off = 0; off < Size; off += chunk.length) {
    job.throwIfAborted(); // stop early, as "cancelled" or "deadline", when told to
    h.update(chunk.subarray(0, Math.min(chunk.length, Size - off)));
  }
  return h.digest(); // a Buffer: a msgpack bin, a []byte for the Go caller
});

w.handleValue('wordcount', (text) => {
  const counts = {};
  for (let word of String(text).toLowerCase().split(/\s+/)) {
    word = word.replace(/^[.,;:!?"'()[\]]+|[.,;:!?"'()[\]]+$/g, '');
    if (word) counts[word] = (counts[word] || 0) + 1;
  }
  return counts;
});

w.handle('noop', () => null);
w.handleValue('noopv', () => null); // msgpack nil

w.run(); // serve until the host stops us, then exit
