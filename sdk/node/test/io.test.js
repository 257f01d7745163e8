'use strict';
// The reading of fd 3 and the writing of fd 4: FrameWriter's frames and
// batches, byte for byte, and the worker's reader against frames split
// and sized every way, over real pipes: `npm test`.
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { Decoder, encode } = require('@msgpack/msgpack');
const { FrameWriter, SMALL_PAYLOAD } = require('../lib/writer');
const wire = require('../lib/wire');

const decoder = new Decoder({ useBigInt64: true });

/** Splits bytes into frame bodies, checking each header. */
function frames(bytes) {
  const out = [];
  let pos = 0;
  while (pos < bytes.length) {
    assert.ok(bytes.length - pos >= 4, 'a truncated header');
    const n = bytes.readUInt32BE(pos);
    assert.ok(bytes.length - pos - 4 >= n, 'a truncated body');
    out.push(bytes.subarray(pos + 4, pos + 4 + n));
    pos += 4 + n;
  }
  return out;
}

/** A FrameWriter on a temporary file, with a stand-in socket that records what it is handed. */
function fileWriter({ batching = true, maxBody = 1 << 20, busySocket = false } = {}) {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'procpool-writer-')), 'out');
  const fd = fs.openSync(file, 'w');
  const socketWrites = [];
  const socket = {
    destroyed: false,
    writableLength: busySocket ? 1 : 0,
    cork() {},
    uncork() {},
    write(b) { socketWrites.push(Buffer.from(b)); },
  };
  const errors = [];
  const w = new FrameWriter(fd, socket, (e) => errors.push(e));
  w.batching = batching;
  w.maxBody = maxBody;
  return {
    w,
    errors,
    socketWrites,
    /** Flushes and returns the decoded frames written to the file (and the socket). */
    written() {
      w.flush();
      fs.closeSync(fd);
      const bytes = Buffer.concat([fs.readFileSync(file), ...socketWrites]);
      fs.rmSync(path.dirname(file), { recursive: true });
      return frames(bytes).map((b) => decoder.decode(b));
    },
  };
}

test('a lone response stays plain; responses queued together leave in one batch response', () => {
  let t = fileWriter();
  t.w.response(1n, wire.Payload.BLOB, Buffer.from('one'));
  const [m, ...rest] = t.written();
  assert.deepStrictEqual([m.slice(0, 5), Buffer.from(m[5]).toString(), rest.length], [[4, 1, '', '', 0], 'one', 0]);

  t = fileWriter();
  const ids = [0n, 127n, 128n, 255n, 256n, 65535n, 65536n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 64n - 1n];
  for (const id of ids) t.w.response(id, wire.Payload.BLOB, Buffer.from(`r${id}`));
  const got = t.written();
  assert.strictEqual(got.length, 1);
  assert.strictEqual(got[0][0], wire.Kind.BATCH_RESPONSE);
  assert.deepStrictEqual(got[0][1].map((r) => BigInt(r[1])), ids, 'every id, in order, all 64 bits');
  assert.deepStrictEqual(got[0][1].map((r) => Buffer.from(r[5]).toString()), ids.map((id) => `r${id}`));
});

test('another frame between responses ends a run; a large payload leaves alone, by reference, in order', () => {
  const t = fileWriter();
  const big = Buffer.alloc(SMALL_PAYLOAD + 1, 7);
  t.w.response(1n, wire.Payload.BLOB, Buffer.from('a'));
  t.w.response(2n, wire.Payload.VALUE, Buffer.from([0xc3])); // a value's encoding: true
  t.w.frame(wire.pongFrame(9n));
  t.w.response(3n, wire.Payload.BLOB, Buffer.from('b'));
  t.w.response(4n, wire.Payload.BLOB, big);
  t.w.response(5n, wire.Payload.BLOB, Buffer.from('c'));
  t.w.frame(wire.errorFrame(6n, 'teapot', 'stout'), true);
  const got = t.written();
  assert.deepStrictEqual(got.map((m) => m[0]), [10, 7, 4, 4, 10]);
  assert.deepStrictEqual(got[0][1].map((r) => [r[1], r[4], r[4] === 0 ? Buffer.from(r[5]).toString() : r[5]]), [[1, 0, 'a'], [2, 1, true]]);
  assert.strictEqual(got[1][1], 9);
  assert.strictEqual(got[2][1], 3);
  assert.ok(Buffer.from(got[3][5]).equals(big));
  assert.deepStrictEqual(got[4][1].map((r) => [r[1], r[2]]), [[5, ''], [6, 'teapot']]);
});

test("batches keep within the host's frame limit and 1024 items; without the feature every response is plain", () => {
  let t = fileWriter({ maxBody: 200 });
  for (let i = 1; i <= 20; i++) t.w.response(BigInt(i), wire.Payload.BLOB, Buffer.alloc(30, i));
  let got = t.written();
  const items = got.flatMap((m) => (m[0] === 10 ? m[1] : [m]));
  assert.deepStrictEqual(items.map((r) => r[1]), Array.from({ length: 20 }, (_, i) => i + 1));
  for (const m of got) assert.ok(encode(m).length <= 200, `a frame body of ${encode(m).length} bytes`);
  assert.ok(got.length > 1);

  t = fileWriter();
  for (let i = 1; i <= 1030; i++) t.w.response(BigInt(i), wire.Payload.BLOB, Buffer.alloc(1));
  got = t.written();
  assert.deepStrictEqual(got.map((m) => m[1].length), [1024, 6]);

  t = fileWriter({ batching: false });
  for (let i = 1; i <= 3; i++) t.w.response(BigInt(i), wire.Payload.BLOB, Buffer.alloc(1));
  assert.deepStrictEqual(t.written().map((m) => [m[0], m[1]]), [[4, 1], [4, 2], [4, 3]]);
});

test('more buffers in one turn than one writev takes (1024) are all written, in order', () => {
  const t = fileWriter();
  const big = Buffer.alloc(SMALL_PAYLOAD + 1, 3);
  for (let i = 1; i <= 1100; i++) t.w.response(BigInt(i), wire.Payload.BLOB, big);
  const got = t.written();
  assert.deepStrictEqual(t.errors, []);
  assert.deepStrictEqual(got.map((m) => m[1]), Array.from({ length: 1100 }, (_, i) => i + 1));
  assert.ok(got.every((m) => Buffer.from(m[5]).equals(big)));
});

test('while the socket holds unwritten bytes, frames follow through it, in order, and later frames do not overwrite them', () => {
  const t = fileWriter({ busySocket: true });
  t.w.response(1n, wire.Payload.BLOB, Buffer.from('first'));
  t.w.flush();
  t.w.response(2n, wire.Payload.BLOB, Buffer.from('second'));
  const got = t.written();
  assert.strictEqual(t.socketWrites.length, 2);
  assert.deepStrictEqual(got.map((m) => [m[1], Buffer.from(m[5]).toString()]), [[1, 'first'], [2, 'second']]);
});

/** The conformance worker and the host's side of its pipes, reading nothing until read() is called. */
function worker() {
  const child = spawn(process.execPath, [path.join(__dirname, 'conformance-worker.js')], { stdio: ['ignore', 'inherit', 'pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stdio[2].on('data', (d) => { stderr += d; });
  const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  const out = child.stdio[4];
  out.pause();
  let buf = Buffer.alloc(0);
  const msgs = [];
  return {
    send(bytes) { child.stdio[3].write(bytes); },
    /** The next n messages from the worker. */
    async read(n) {
      while (msgs.length < n) {
        while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
          const len = buf.readUInt32BE(0);
          const m = decoder.decode(buf.subarray(4, 4 + len));
          msgs.push(...(m[0] === 10 ? m[1] : [m]));
          buf = buf.subarray(4 + len);
        }
        if (msgs.length >= n) break;
        const chunk = out.read() || await new Promise((resolve, reject) => {
          const t = setTimeout(() => reject(new Error(`no message; stderr: ${stderr}`)), 20000);
          out.once('readable', () => { clearTimeout(t); resolve(out.read() || Buffer.alloc(0)); });
        });
        buf = Buffer.concat([buf, chunk]);
      }
      return msgs.splice(0, n);
    },
    async stop() {
      child.stdio[3].end();
      out.resume();
      return exited;
    },
  };
}

function frame(msg) {
  const body = encode(msg, { useBigInt64: true });
  const f = Buffer.alloc(4 + body.length);
  f.writeUInt32BE(body.length, 0);
  f.set(body, 4);
  return f;
}

test('frames split at every byte, frames larger than the read buffer, and payloads an async handler keeps', async () => {
  const h = worker();
  h.send(frame([1, 1, 64 << 20, 0, ['meta', 'batch', 'stream']]));
  assert.strictEqual((await h.read(1))[0][0], wire.Kind.READY);

  // A held payload: sleep answers with its payload after 300 ms, while
  // megabytes of other frames pass through the read buffers.
  const held = Buffer.from(`300${' '.repeat(2000)}`);
  h.send(frame([3, 1, 'sleep', 0, 0, held]));
  const reqs = [];
  const want = new Map();
  for (let id = 2; id < 200; id++) {
    const size = id % 50 === 0 ? (64 << 10) + id * 1000 : id * 37; // some larger than a read buffer
    const p = Buffer.alloc(size);
    for (let i = 0; i < size; i++) p[i] = (id * 7 + i) & 0xff;
    want.set(id, p);
    reqs.push(frame([3, id, 'echo', 0, 0, p]));
  }
  const all = Buffer.concat(reqs);
  // The first frames one byte at a time, the rest in uneven slices.
  let pos = 0;
  for (; pos < 3000; pos++) h.send(all.subarray(pos, pos + 1));
  for (let step = 1; pos < all.length; step = (step * 7 + 3) % 100003) {
    h.send(all.subarray(pos, pos + step));
    pos += step;
  }
  const got = await h.read(199);
  const byId = new Map(got.map((m) => [Number(m[1]), m]));
  for (const [id, p] of want) {
    assert.strictEqual(byId.get(id)[2], '', `job ${id}: ${byId.get(id)[3]}`);
    assert.ok(Buffer.from(byId.get(id)[5]).equals(p), `job ${id}: the echo differs`);
  }
  assert.ok(Buffer.from(byId.get(1)[5]).equals(held), 'the held payload changed under its handler');
  assert.strictEqual(await h.stop(), 0);
});

test('a response the pipe cannot take at once is written as the host reads, and what follows keeps its order', async () => {
  const h = worker();
  h.send(frame([1, 1, 64 << 20]));
  await h.read(1);
  h.send(frame([3, 1, 'grow', 0, 0, Buffer.from(String(8 << 20))]));
  h.send(frame([3, 2, 'echo', 0, 0, Buffer.from('after')]));
  await new Promise((resolve) => setTimeout(resolve, 300)); // the worker meets a full pipe meanwhile
  h.send(frame([6, 5]));
  const [big, after, pong] = await h.read(3);
  assert.strictEqual(big[1], 1);
  const b = Buffer.from(big[5]);
  assert.strictEqual(b.length, 8 << 20);
  for (let i = 0; i < b.length; i += 4099) assert.strictEqual(b[i], i % 251, `byte ${i}`);
  assert.deepStrictEqual([after[1], Buffer.from(after[5]).toString()], [2, 'after']);
  assert.deepStrictEqual(pong, [7, 5]);
  assert.strictEqual(await h.stop(), 0);
});

test('a handler that never yields still sees its deadline (no timer could fire meanwhile)', async () => {
  const h = worker();
  h.send(frame([1, 1, 64 << 20]));
  await h.read(1);
  // 64 GiB of hashing, checked with throwIfAborted between chunks: only
  // the clock can stop it within the 200 ms budget.
  h.send(frame([3, 1, 'sha512v', 200, 1, { Size: 64 * 2 ** 30, Seed: 1 }]));
  const [r] = await h.read(1);
  assert.deepStrictEqual([r[1], r[2]], [1, 'deadline']);
  assert.strictEqual(await h.stop(), 0);
});
