'use strict';
// The optional features (docs/protocol.md, section 14) against the
// conformance worker, spawned with its protocol pipes: `npm test`.
const test = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { Decoder, encode } = require('@msgpack/msgpack');

const decoder = new Decoder({ useBigInt64: true });

/** A worker process and the host's side of its pipes. */
function start() {
  const child = spawn(process.execPath, [path.join(__dirname, 'conformance-worker.js')], { stdio: ['ignore', 'inherit', 'pipe', 'pipe', 'pipe'] });
  const msgs = [];
  let waiting = null;
  let buf = Buffer.alloc(0);
  child.stdio[4].on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      const n = buf.readUInt32BE(0);
      msgs.push(decoder.decode(buf.subarray(4, 4 + n)));
      buf = buf.subarray(4 + n);
    }
    if (waiting && msgs.length > 0) { const w = waiting; waiting = null; w(); }
  });
  let stderr = '';
  child.stdio[2].on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  const h = {
    child,
    exited,
    stderr: () => stderr,
    send(msg) {
      const body = encode(msg, { useBigInt64: true });
      const f = Buffer.alloc(4 + body.length);
      f.writeUInt32BE(body.length, 0);
      f.set(body, 4);
      child.stdio[3].write(f);
    },
    async next() {
      while (msgs.length === 0) {
        let timer;
        await Promise.race([
          new Promise((resolve) => { waiting = resolve; }),
          new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`no message; stderr: ${stderr}`)), 10000); }),
        ]).finally(() => clearTimeout(timer));
      }
      return msgs.shift();
    },
    /** Answers to ids, out of batch responses too; and the number of batch responses. */
    async answers(ids) {
      const got = new Map();
      let batches = 0;
      while (got.size < ids.length) {
        const m = await h.next();
        const items = m[0] === 4 ? [m] : m[0] === 10 ? m[1] : null;
        assert.ok(items, `unexpected ${JSON.stringify(m, (k, v) => (typeof v === 'bigint' ? v.toString() : v))}`);
        if (m[0] === 10) batches++;
        for (const it of items) {
          const id = Number(it[1]);
          assert.ok(ids.includes(id) && !got.has(id), `answer to ${id}`);
          got.set(id, it);
        }
      }
      return { got, batches };
    },
    async stop() {
      child.stdio[3].end();
      return exited;
    },
  };
  return h;
}

const ALL = ['meta', 'batch', 'stream'];

test('the handshake answers the features it supports, and as before without them', async () => {
  let h = start();
  h.send([1, 1, 1 << 20]);
  let ready = await h.next();
  assert.strictEqual(ready.length, 5);
  assert.strictEqual(await h.stop(), 0);
  h = start();
  h.send([1, 1, 1 << 20, 0, [...ALL, 'telepathy']]);
  ready = await h.next();
  assert.deepStrictEqual(ready.slice(5), [0, ALL]);
  assert.strictEqual(await h.stop(), 0);
});

test('meta reaches the job; batches are answered item by item, in batch responses', async () => {
  const h = start();
  h.send([1, 1, 1 << 20, 0, ALL]);
  await h.next();
  const tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  h.send([3, 2n ** 63n + 1n, 'info', 0, { attempt: 2, traceparent: tp, tracestate: 'a=b', later: [1, { x: null }] }, 1, null]);
  const [, id, code, , kind, info] = await h.next();
  assert.strictEqual(code, '');
  assert.strictEqual(id, 2n ** 63n + 1n);
  assert.strictEqual(kind, 1);
  assert.deepStrictEqual(info, { ID: 2n ** 63n + 1n, JobType: 'info', Attempt: 2, TraceParent: tp, TraceState: 'a=b', Streaming: false });

  h.send([9, [[3, 1, 'echo', 0, 0, Buffer.from('one')], [3, 2, 'record', 0, 1, { Name: 'x', Count: 1, Ratio: 1, Tags: [], Attrs: {}, Data: new Uint8Array(0) }],
    [3, 3, 'nope', 0, 0, Buffer.alloc(0)], [3, 4, 'fail', 0, 0, Buffer.from('teapot:stout')], [3, 5, 'sleep', 0, 0, Buffer.from('60000')]]]);
  let { got, batches } = await h.answers([1, 2, 3, 4]);
  assert.strictEqual(batches, 1, 'answers ready in one tick leave in one batch response');
  assert.deepStrictEqual(Buffer.from(got.get(1)[5]).toString(), 'one');
  assert.strictEqual(got.get(2)[5].Name, 'hello, x');
  assert.strictEqual(got.get(3)[2], 'unknown_job_type');
  assert.deepStrictEqual(got.get(4).slice(2, 4), ['teapot', 'stout']);
  h.send([5, 5]);
  ({ got } = await h.answers([5]));
  assert.strictEqual(got.get(5)[2], 'cancelled');
  assert.strictEqual(await h.stop(), 0);
});

test('streams: credit, refill, cancel mid-stream', async () => {
  const h = start();
  h.send([1, 1, 1 << 20, 0, ['stream']]);
  await h.next();
  h.send([3, 1, 'stream', 0, { credit: 2 }, 0, Buffer.from('5:3')]);
  for (let i = 0; i < 2; i++) assert.deepStrictEqual([...(await h.next())].slice(0, 3), [11, 1, 0]);
  h.send([6, 9]);
  assert.deepStrictEqual(await h.next(), [7, 9], 'out of credit, pings answered');
  h.send([12, 1, 10]);
  for (let i = 2; i < 5; i++) {
    const m = await h.next();
    assert.deepStrictEqual(Buffer.from(m[3]), Buffer.alloc(3, i));
  }
  const done = await h.next();
  assert.deepStrictEqual([done[0], done[2], Buffer.from(done[5]).toString()], [4, '', 'done:5']);
  h.send([3, 2, 'stream', 0, { credit: 1 }, 0, Buffer.from('100:1')]);
  assert.strictEqual((await h.next())[0], 11);
  h.send([5, 2]);
  const m = await h.next();
  assert.deepStrictEqual(m.slice(0, 3), [4, 2, 'cancelled']);
  h.send([3, 3, 'stream', 0, 0, Buffer.from('1:1')]); // not streamed
  const n = await h.next();
  assert.strictEqual(n[2], 'handler');
  assert.match(n[3], /did not ask/);
  assert.strictEqual(await h.stop(), 0);
});

test('a crash is answered with its first line, the stack as its detail', async () => {
  const h = start();
  h.send([1, 1, 1 << 20]);
  await h.next();
  h.send([3, 1, 'crash', 0, 0, Buffer.from('fell\nover')]);
  const m = await h.next();
  assert.deepStrictEqual(m.slice(0, 4), [4, 1, 'panic', 'panic: Error: fell [...]']);
  const detail = Buffer.from(m[5]).toString();
  assert.match(detail, /^panic: Error: fell\nover\n\n\s+at /);
  assert.strictEqual(await h.exited, 70);
});

test('batches and credits without negotiation are protocol errors', async () => {
  for (const msg of [[9, [[3, 1, 'echo', 0, 0, Buffer.from('x')]]], [12, 1, 1]]) {
    const h = start();
    h.send([1, 1, 1 << 20, 0, ['meta']]);
    await h.next();
    h.send(msg);
    assert.strictEqual(await h.exited, 1);
  }
});
