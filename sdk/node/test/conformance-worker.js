'use strict';
// The job types of procpool's conformance suite (package conformance of the
// procpool module, whose doc comment is the contract), served with
// procpool-worker. The suite runs it with `node`, after `npm ci` here.
const { createHash } = require('node:crypto');
const { setTimeout: sleep } = require('node:timers/promises');
const { Worker, ProcpoolError, ThreadPool } = require('..');

const w = new Worker();
// CPU-bound work runs in worker threads, so the event loop answers pings.
const threads = new ThreadPool(require.resolve('./cpu.js'), { threads: 2 });

w.handle('echo', (payload) => payload);
w.handle('sha512', (payload) => createHash('sha512').update(payload).digest());

w.handleValue('sha512v', ({ Size, Seed }, job) => {
  if (Size < 0) throw new ProcpoolError('bad_size', `size ${Size} is negative`);
  const pattern = Buffer.alloc(256);
  for (let i = 0; i < 256; i++) pattern[i] = (Seed + i) & 0xff;
  const chunk = Buffer.alloc(64 << 10);
  for (let i = 0; i < chunk.length; i += 256) pattern.copy(chunk, i);
  const h = createHash('sha512');
  for (let off = 0; off < Size; off += chunk.length) {
    job.throwIfAborted();
    h.update(chunk.subarray(0, Math.min(chunk.length, Size - off)));
  }
  return h.digest();
});

w.handleValue('record', (r) => {
  const data = Uint8Array.from(r.Data).reverse();
  const tags = [...(r.Tags || []), 'seen'];
  return {
    Name: `hello, ${r.Name}`,
    Count: typeof r.Count === 'bigint' ? r.Count + 1n : r.Count + 1, // BigInt beyond 2^53
    Ratio: r.Ratio * 2,
    Floor: Math.floor(r.Ratio), // an integral number is encoded as an integer
    Data: data,
    Tags: tags,
    Flag: !r.Flag,
    Big: r.Big,
    Attrs: { ...(r.Attrs || {}), tags: (r.Tags || []).length },
  };
});

w.handle('sleep', async (payload, { signal }) => {
  await sleep(Number(payload.toString()), undefined, { signal }).catch(() => signal.throwIfAborted());
  return payload;
});

w.handle('spin', async (payload, { signal }) => {
  await threads.run('spin', Number(payload.toString()), { signal });
  return payload;
});

w.handle('fail', (payload) => {
  const s = payload.toString();
  const i = s.indexOf(':');
  throw new ProcpoolError(s.slice(0, i), s.slice(i + 1));
});

w.handle('crash', (payload) => {
  throw new Error(payload.toString());
});

w.handle('grow', (payload) => {
  const n = Number(payload.toString());
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = i % 251;
  return b;
});

w.handleValue('info', (_, job) => ({
  ID: job.id, JobType: job.jobType, Attempt: job.attempt, TraceParent: job.traceparent, TraceState: job.tracestate, Streaming: job.streaming,
}));

w.handle('stream', async (payload, job) => {
  const [n, size] = payload.toString().split(':').map(Number);
  for (let i = 0; i < n; i++) await job.send(Buffer.alloc(size, i % 256)); // waits while out of credit
  return `done:${n}`;
});

w.run();
