'use strict';
/**
 * procpool-worker: the Node.js SDK for procpool worker processes.
 *
 * A worker registers a handler per job type and serves the procpool host
 * that started it, over the pipes the host passes as file descriptors 3 and
 * 4 (docs/protocol.md in the procpool repository is the protocol):
 *
 *   const { createHash } = require('node:crypto');
 *   const { Worker, ProcpoolError } = require('procpool-worker');
 *
 *   const w = new Worker();
 *   w.handle('sha512', (payload) => createHash('sha512').update(payload).digest());   // BLOB
 *   w.handleValue('sleep', async ({ Ms }, { signal }) => {                             // VALUE
 *     await require('node:timers/promises').setTimeout(Ms, undefined, { signal });
 *     return 'done';
 *   });
 *   w.run(); // serve until the host stops us, then exit
 *
 * Ids are BigInts (they have 64 bits); VALUE integers beyond 2^53 arrive as
 * BigInts, smaller ones as numbers. A handler chooses its error code by
 * throwing a ProcpoolError; any other exception is a crash: code "panic",
 * and the worker exits with EXIT_PANIC (70) so that the host replaces it.
 * Payloads of 64 KiB and more cross through the shared memory region on fd
 * 5, read and written with positioned reads and writes (pread/pwrite).
 * CPU-heavy handlers belong in worker threads: see ThreadPool.
 */
const { Worker, Job, ProcpoolError, ProtocolError, EXIT_OK, EXIT_ERROR, EXIT_PANIC } = require('./server');
const { ThreadPool } = require('./threads');
const { Code, VERSION, decodeValue, encodeValue } = require('./wire');

module.exports = {
  Worker, Job, ProcpoolError, ProtocolError, ThreadPool, Code, VERSION,
  EXIT_OK, EXIT_ERROR, EXIT_PANIC, decodeValue, encodeValue,
};
