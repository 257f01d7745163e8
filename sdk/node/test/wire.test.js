'use strict';
// Unit tests of the encodings the SDK writes by hand: `npm test`.
const test = require('node:test');
const assert = require('node:assert');
const { decode } = require('@msgpack/msgpack');
const wire = require('../lib/wire');

test('uintBytes keeps all 64 bits', () => {
  for (const v of [0n, 127n, 128n, 255n, 256n, 65535n, 65536n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 63n + 5n, 2n ** 64n - 1n]) {
    assert.strictEqual(decode(wire.uintBytes(v), { useBigInt64: true }).toString(), v.toString());
  }
});

test('error and pong frames decode as the protocol says', () => {
  const f = wire.errorFrame(2n ** 63n + 1n, 'teapot', 'short and stout');
  assert.strictEqual(f.readUInt32BE(0), f.length - 4);
  const m = decode(f.subarray(4), { useBigInt64: true });
  assert.deepStrictEqual(m.slice(2, 5), ['teapot', 'short and stout', 0]);
  assert.strictEqual(m[5].length, 0);
  assert.strictEqual(m[1], 2n ** 63n + 1n);
  assert.deepStrictEqual(decode(wire.pongFrame(7n).subarray(4)), [7, 7]);
});

test('the reader refuses negative ids and trailing bytes', () => {
  assert.throws(() => new wire.Reader(Buffer.from([0xff])).uint(), wire.ProtocolError);
  const r = new wire.Reader(Buffer.from([0x92, 0x06, 0x01, 0x00]));
  r.arrayLen();
  r.small();
  r.uint();
  assert.throws(() => r.end(), wire.ProtocolError);
});

test('values: big integers stay exact both ways', () => {
  const v = { small: 5, big: 2 ** 40, neg: -(2 ** 40), huge: 2n ** 64n - 1n, f: 1.5 };
  const back = wire.decodeValue(wire.encodeValue(v));
  assert.deepStrictEqual(back, v);
});
