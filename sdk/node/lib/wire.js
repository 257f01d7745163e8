'use strict';
// The protocol's constants, the reading of the host's messages and the
// encoding of the worker's (docs/protocol.md, sections 2 to 5). Bytes only:
// no I/O. The envelopes are read and written by hand, so that a blob
// payload is never copied and ids keep all 64 bits (as BigInt); values go
// through @msgpack/msgpack.

const { Decoder, Encoder } = require('@msgpack/msgpack');

const VERSION = 1;
const DEFAULT_MAX_FRAME = 64 * 1024 * 1024;
const Kind = Object.freeze({
  HELLO: 1, READY: 2, REQUEST: 3, RESPONSE: 4, CANCEL: 5, PING: 6, PONG: 7, SHUTDOWN: 8,
  BATCH_REQUEST: 9, BATCH_RESPONSE: 10, CHUNK: 11, CREDIT: 12,
});
/** The optional features (docs/protocol.md, section 14) this SDK supports, by their wire names. */
const FEATURES = Object.freeze(['meta', 'batch', 'stream']);
const MAX_BATCH = 1024; // items in one batch frame
const Payload = Object.freeze({ BLOB: 0, VALUE: 1, SHARED_BLOB: 2, SHARED_VALUE: 3 });
const Code = Object.freeze({
  HANDLER: 'handler',
  PANIC: 'panic',
  CANCELLED: 'cancelled',
  DEADLINE: 'deadline',
  UNKNOWN_JOB_TYPE: 'unknown_job_type',
  BAD_PAYLOAD: 'bad_payload',
  TOO_LARGE: 'too_large',
  SHUTTING_DOWN: 'shutting_down',
});
const MAX_ERR_MESSAGE = 16 << 10;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);

/** A malformed message from the host: the worker logs it and exits 1. */
class ProtocolError extends Error {}

/**
 * Decodes VALUE payloads: integers that fit in a double exactly arrive as
 * numbers, larger ones (beyond 2^53) as BigInt, so nothing is lost. The Go
 * host encodes int64 and uint64 fields in 8 bytes whatever their value.
 */
class ValueDecoder extends Decoder {
  constructor() {
    super({ useBigInt64: false });
  }
  readU64() {
    const v = this.view.getBigUint64(this.pos);
    this.pos += 8;
    return v <= MAX_SAFE ? Number(v) : v;
  }
  readI64() {
    const v = this.view.getBigInt64(this.pos);
    this.pos += 8;
    return v <= MAX_SAFE && v >= MIN_SAFE ? Number(v) : v;
  }
}

/**
 * Encodes VALUE results: BigInts as 64-bit integers, integral numbers as
 * integers of the smallest width (Go accepts them for float fields), other
 * numbers as float64. (@msgpack/msgpack with useBigInt64 alone would encode
 * integral numbers beyond 32 bits as floats, which Go refuses for integer
 * fields.)
 */
class ValueEncoder extends Encoder {
  constructor() {
    super({ useBigInt64: true });
  }
  encodeNumber(n) {
    if (Number.isSafeInteger(n) && (n >= 0x100000000 || n < -0x80000000)) this.encodeBigInt64(BigInt(n));
    else super.encodeNumber(n);
  }
}

const valueDecoder = new ValueDecoder();
const valueEncoder = new ValueEncoder();

/** decodeValue decodes the msgpack encoding of one value. */
function decodeValue(bytes) {
  return valueDecoder.decode(bytes);
}

/** encodeValue returns the msgpack encoding of v. */
function encodeValue(v) {
  return valueEncoder.encode(v);
}

/**
 * encodeValueShared returns the msgpack encoding of v in the encoder's own
 * buffer, valid until the next encoding: for bytes copied at once.
 */
function encodeValueShared(v) {
  return valueEncoder.encodeSharedRef(v);
}

/** Reader reads msgpack elements of one message body. */
class Reader {
  constructor(buf) {
    this.buf = buf;
    this.pos = 0;
  }
  need(n) {
    if (this.pos + n > this.buf.length) throw new ProtocolError('truncated message');
  }
  byte() {
    this.need(1);
    return this.buf[this.pos++];
  }
  arrayLen() {
    const b = this.byte();
    if ((b & 0xf0) === 0x90) return b & 0x0f;
    if (b === 0xdc) { this.need(2); const n = this.buf.readUInt16BE(this.pos); this.pos += 2; return n; }
    if (b === 0xdd) { this.need(4); const n = this.buf.readUInt32BE(this.pos); this.pos += 4; return n; }
    throw new ProtocolError(`a message must be an array, not type 0x${b.toString(16)}`);
  }
  /** A non-negative integer, as a BigInt. */
  uint() {
    const b = this.byte();
    const buf = this.buf;
    let v;
    if (b <= 0x7f) return BigInt(b);
    switch (b) {
      case 0xcc: case 0xd0: this.need(1); v = b === 0xcc ? buf.readUInt8(this.pos) : buf.readInt8(this.pos); this.pos += 1; break;
      case 0xcd: case 0xd1: this.need(2); v = b === 0xcd ? buf.readUInt16BE(this.pos) : buf.readInt16BE(this.pos); this.pos += 2; break;
      case 0xce: case 0xd2: this.need(4); v = b === 0xce ? buf.readUInt32BE(this.pos) : buf.readInt32BE(this.pos); this.pos += 4; break;
      case 0xcf: this.need(8); v = buf.readBigUInt64BE(this.pos); this.pos += 8; break;
      case 0xd3: this.need(8); v = buf.readBigInt64BE(this.pos); this.pos += 8; break;
      default: throw new ProtocolError(`expected an unsigned integer, got type 0x${b.toString(16)}`);
    }
    if (v < 0) throw new ProtocolError('a negative integer where an unsigned one is due');
    return BigInt(v);
  }
  /** A small non-negative integer, as a number. */
  small() {
    const b = this.buf[this.pos];
    if (b !== undefined && b <= 0x7f) { this.pos++; return b; }
    const v = this.uint();
    if (v > MAX_SAFE) throw new ProtocolError(`integer ${v} out of range`);
    return Number(v);
  }
  /** A str (or bin, or nil) as a string. */
  str() {
    const b = this.byte();
    let n;
    if ((b & 0xe0) === 0xa0) n = b & 0x1f;
    else if (b === 0xc0) return '';
    else if (b === 0xd9 || b === 0xc4) { this.need(1); n = this.buf[this.pos]; this.pos += 1; }
    else if (b === 0xda || b === 0xc5) { this.need(2); n = this.buf.readUInt16BE(this.pos); this.pos += 2; }
    else if (b === 0xdb || b === 0xc6) { this.need(4); n = this.buf.readUInt32BE(this.pos); this.pos += 4; }
    else throw new ProtocolError(`expected a string, got type 0x${b.toString(16)}`);
    this.need(n);
    const s = this.buf.toString('utf8', this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
  /** A bin (or str, or nil) as a Buffer sharing the body's memory. */
  bin() {
    const b = this.byte();
    let n;
    if (b === 0xc4 || b === 0xd9) { this.need(1); n = this.buf[this.pos]; this.pos += 1; }
    else if (b === 0xc5 || b === 0xda) { this.need(2); n = this.buf.readUInt16BE(this.pos); this.pos += 2; }
    else if (b === 0xc6 || b === 0xdb) { this.need(4); n = this.buf.readUInt32BE(this.pos); this.pos += 4; }
    else if ((b & 0xe0) === 0xa0) n = b & 0x1f;
    else if (b === 0xc0) return this.buf.subarray(0, 0);
    else throw new ProtocolError(`expected a bin, got type 0x${b.toString(16)}`);
    this.need(n);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  /** A map header's count (nil: 0). */
  mapLen() {
    const b = this.byte();
    if ((b & 0xf0) === 0x80) return b & 0x0f;
    if (b === 0xde) { this.need(2); const n = this.buf.readUInt16BE(this.pos); this.pos += 2; return n; }
    if (b === 0xdf) { this.need(4); const n = this.buf.readUInt32BE(this.pos); this.pos += 4; return n; }
    if (b === 0xc0) return 0;
    throw new ProtocolError(`expected a map, got type 0x${b.toString(16)}`);
  }
  /** An array header's count, nil read as 0. */
  arrayLenOrNil() {
    if (this.buf[this.pos] === 0xc0) { this.pos++; return 0; }
    return this.arrayLen();
  }
  /** Skips one msgpack value of any type, nested at most 256 deep. */
  skip() {
    let left = 1;
    const stack = [];
    while (left > 0 || stack.length > 0) {
      if (left === 0) { left = stack.pop(); continue; }
      left--;
      const b = this.byte();
      let skip = 0;
      let children = 0;
      const len = (n) => { this.need(n); const v = n === 1 ? this.buf[this.pos] : n === 2 ? this.buf.readUInt16BE(this.pos) : this.buf.readUInt32BE(this.pos); this.pos += n; return v; };
      if (b <= 0x7f || b >= 0xe0 || b === 0xc0 || b === 0xc2 || b === 0xc3) skip = 0;
      else if (b <= 0x8f) children = 2 * (b & 0x0f);
      else if (b <= 0x9f) children = b & 0x0f;
      else if (b <= 0xbf) skip = b & 0x1f;
      else if (b === 0xc4 || b === 0xd9) skip = len(1);
      else if (b === 0xc5 || b === 0xda) skip = len(2);
      else if (b === 0xc6 || b === 0xdb) skip = len(4);
      else if (b === 0xc7) skip = len(1) + 1;
      else if (b === 0xc8) skip = len(2) + 1;
      else if (b === 0xc9) skip = len(4) + 1;
      else if (b === 0xca) skip = 4;
      else if (b === 0xcb) skip = 8;
      else if (b >= 0xcc && b <= 0xcf) skip = 1 << (b - 0xcc);
      else if (b >= 0xd0 && b <= 0xd3) skip = 1 << (b - 0xd0);
      else if (b >= 0xd4 && b <= 0xd8) skip = 1 + (1 << (b - 0xd4));
      else if (b === 0xdc) children = len(2);
      else if (b === 0xdd) children = len(4);
      else if (b === 0xde) children = 2 * len(2);
      else if (b === 0xdf) children = 2 * len(4);
      else throw new ProtocolError(`invalid msgpack code 0x${b.toString(16)}`);
      this.need(skip);
      this.pos += skip;
      if (children > 0) {
        if (children > this.buf.length - this.pos) throw new ProtocolError('a container larger than the message');
        if (stack.length >= 256) throw new ProtocolError('a value nested deeper than 256');
        stack.push(left);
        left = children;
      }
    }
  }
  /** The rest of the body, which must be exactly one value: its bytes. */
  rest() {
    if (this.pos >= this.buf.length) throw new ProtocolError('missing payload');
    return this.buf.subarray(this.pos);
  }
  end() {
    if (this.pos !== this.buf.length) throw new ProtocolError('trailing bytes after the message');
  }
}

/** The msgpack encoding of a non-negative integer (number or BigInt). */
function uintBytes(v) {
  if (typeof v === 'bigint' && v <= 0xffffffffn) v = Number(v);
  if (typeof v === 'number' && v <= 0xffffffff) {
    if (v <= 0x7f) return Buffer.from([v]);
    if (v <= 0xff) return Buffer.from([0xcc, v]);
    if (v <= 0xffff) return Buffer.from([0xcd, v >> 8, v & 0xff]);
    const b = Buffer.allocUnsafe(5);
    b[0] = 0xce;
    b.writeUInt32BE(v, 1);
    return b;
  }
  const n = BigInt(v);
  if (n < 0x80n) return Buffer.from([Number(n)]);
  if (n < 0x100n) return Buffer.from([0xcc, Number(n)]);
  if (n < 0x10000n) { const b = Buffer.allocUnsafe(3); b[0] = 0xcd; b.writeUInt16BE(Number(n), 1); return b; }
  if (n < 0x100000000n) { const b = Buffer.allocUnsafe(5); b[0] = 0xce; b.writeUInt32BE(Number(n), 1); return b; }
  const b = Buffer.allocUnsafe(9);
  b[0] = 0xcf;
  b.writeBigUInt64BE(n, 1);
  return b;
}

function strBytes(s) {
  const body = Buffer.from(s, 'utf8');
  const n = body.length;
  let head;
  if (n < 32) head = Buffer.from([0xa0 | n]);
  else if (n < 0x100) head = Buffer.from([0xd9, n]);
  else if (n < 0x10000) { head = Buffer.allocUnsafe(3); head[0] = 0xda; head.writeUInt16BE(n, 1); }
  else { head = Buffer.allocUnsafe(5); head[0] = 0xdb; head.writeUInt32BE(n, 1); }
  return Buffer.concat([head, body]);
}

function binHeader(n) {
  if (n < 0x100) return Buffer.from([0xc4, n]);
  if (n < 0x10000) { const b = Buffer.allocUnsafe(3); b[0] = 0xc5; b.writeUInt16BE(n, 1); return b; }
  const b = Buffer.allocUnsafe(5);
  b[0] = 0xc6;
  b.writeUInt32BE(n, 1);
  return b;
}

function header(n) {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n, 0);
  return b;
}

/** A whole frame from body parts. */
function frame(parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  return Buffer.concat([header(n), ...parts], 4 + n);
}

/** The body of a successful response up to its payload: [4, id, "", "", kind, */
function responsePrefix(id, kind) {
  const idb = uintBytes(id);
  const b = Buffer.allocUnsafe(2 + idb.length + 3);
  b[0] = 0x96;
  b[1] = 0x04;
  idb.copy(b, 2);
  b[2 + idb.length] = 0xa0;
  b[3 + idb.length] = 0xa0;
  b[4 + idb.length] = kind;
  return b;
}

/** The body of a chunk up to its payload: [11, id, kind, */
function chunkPrefix(id, kind) {
  return Buffer.concat([Buffer.from([0x94, 0x0b]), uintBytes(id), Buffer.from([kind])]);
}

/** A response frame with an error; its payload, a blob, is the error's detail: empty, or text (a panic's stack). */
function errorFrame(id, code, message, detail = EMPTY) {
  let msg = String(message);
  if (Buffer.byteLength(msg) > MAX_ERR_MESSAGE) msg = Buffer.from(msg).subarray(0, MAX_ERR_MESSAGE).toString('utf8').replace(/\uFFFD+$/, '') + '...';
  return frame([Buffer.from([0x96, 0x04]), uintBytes(id), strBytes(String(code)), strBytes(msg), Buffer.from([0x00]), binHeader(detail.length), detail]);
}
const EMPTY = Buffer.alloc(0);

function pongFrame(seq) {
  return frame([Buffer.from([0x92, 0x07]), uintBytes(seq)]);
}

function readyFrame(maxFrame, pid, jobTypes, sharedSize, features = []) {
  const elems = features.length > 0 ? 0x97 : sharedSize ? 0x96 : 0x95;
  const parts = [Buffer.from([elems, 0x02, VERSION]), uintBytes(maxFrame), uintBytes(pid)];
  const n = jobTypes.length;
  parts.push(n < 16 ? Buffer.from([0x90 | n]) : Buffer.from([0xdc, n >> 8, n & 0xff]), ...jobTypes.map(strBytes));
  if (sharedSize || features.length > 0) parts.push(uintBytes(sharedSize || 0));
  if (features.length > 0) parts.push(Buffer.from([0x90 | features.length]), ...features.map(strBytes));
  return frame(parts);
}

module.exports = {
  VERSION, DEFAULT_MAX_FRAME, MAX_ERR_MESSAGE, Kind, FEATURES, MAX_BATCH, Payload, Code, ProtocolError, Reader,
  decodeValue, encodeValue, encodeValueShared, uintBytes, binHeader, header, frame, responsePrefix, chunkPrefix, errorFrame,
  pongFrame, readyFrame,
};
