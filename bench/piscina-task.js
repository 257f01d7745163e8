// The jobs of the piscina peer (bench/piscina.js), run in its threads.
'use strict';
const crypto = require('node:crypto');

function make(size, seed) {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < 256 && i < size; i++) b[i] = (seed + i) & 0xff;
  for (let i = 256; i < size; i *= 2) b.copy(b, i, 0, Math.min(i, size - i));
  return b;
}

exports.sha512 = (buf) => crypto.createHash('sha512').update(buf).digest();
exports.sha512v = ({ size, seed }) => crypto.createHash('sha512').update(make(size, seed)).digest();
exports.noop = () => new Uint8Array(0);
