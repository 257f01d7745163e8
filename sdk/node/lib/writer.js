'use strict';
// The writing of fd 4: frames queued during one turn of the event loop
// leave together, in one system call, at the next check phase
// (setImmediate); with the "batch" feature, runs of small responses leave
// as batch responses (docs/protocol.md, section 14.3).

const fs = require('node:fs');
const wire = require('./wire');

// Responses with payloads up to this many bytes are copied into the write
// buffer, and may join a batch; larger ones are written from the handler's
// buffer, in a frame of their own.
const SMALL_PAYLOAD = 4 << 10;
const INITIAL_BUFFER = 16 << 10;
const BATCH_HEAD = 5; // [10, array16: 0x92 0x0a 0xdc n n
const IOV_MAX = 1024; // buffers in one writev (Linux's limit)

/**
 * FrameWriter queues the worker's frames for fd 4 and writes them at the
 * next check phase of the event loop: small frames are copied into one
 * buffer, large payloads referenced, and the lot leaves in one writev.
 * It writes fd 4 directly (fs.writeSync), which the socket on it has made
 * non-blocking; what the pipe does not take at once (EAGAIN, or a partial
 * write) is handed to the socket, which writes it when the pipe drains, and
 * everything after it follows through the socket until its queue is empty,
 * so the order of frames is kept.
 *
 * With batching on, consecutive responses of at most SMALL_PAYLOAD bytes of
 * payload, queued with nothing else between them, are sent as one batch
 * response (at most wire.MAX_BATCH items, and a body within the host's
 * frame limit); a lone one stays a plain response. Shared-region result
 * blocks are numbered in frame order, which queuing keeps.
 */
class FrameWriter {
  /**
   * @param {number} fd the file descriptor written (4)
   * @param {import('node:net').Socket} socket the socket on fd, for what the pipe does not take at once
   * @param {(e: Error) => void} onError called once when a write fails (EPIPE: the host went away)
   */
  constructor(fd, socket, onError) {
    this.fd = fd;
    this.socket = socket;
    this.onError = onError;
    this.batching = false;
    this.maxBody = wire.DEFAULT_MAX_FRAME; // the host's frame limit
    this.failed = false;
    this.buf = Buffer.allocUnsafeSlow(INITIAL_BUFFER);
    this.pos = 0; // bytes queued in buf
    this.segStart = 0; // buf[segStart, pos) is not yet in segs
    this.segs = []; // buffers queued before buf[segStart, pos)
    this.batchAt = -1; // offset in buf of the open batch's frame header
    this.batchCount = 0;
    this.lastAt = -1; // offset of the last small plain response, if nothing followed it
    this.scheduled = false;
    this.flush = () => this._flush();
  }

  /** True when frames are queued. */
  get pending() {
    return this.pos > this.segStart || this.segs.length > 0;
  }

  _schedule() {
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  /** Makes room for n more bytes in buf. */
  _ensure(n) {
    if (this.pos + n <= this.buf.length) return;
    const keep = this.pos - this.segStart;
    const next = Buffer.allocUnsafeSlow(Math.max(2 * this.buf.length, keep + n));
    this.buf.copy(next, 0, this.segStart, this.pos);
    const shift = this.segStart;
    if (this.batchAt >= 0) this.batchAt -= shift;
    if (this.lastAt >= 0) this.lastAt -= shift;
    this.buf = next;
    this.pos = keep;
    this.segStart = 0;
  }

  _closeBatch() {
    if (this.batchAt < 0) return;
    this.buf.writeUInt32BE(this.pos - this.batchAt - 4, this.batchAt);
    this.buf.writeUInt16BE(this.batchCount, this.batchAt + 7);
    this.batchAt = -1;
  }

  /** Reserves room for a frame body of n bytes that is a small response; returns where to write it. */
  _item(n) {
    if (this.batching) {
      if (this.batchAt >= 0 && this.batchCount < wire.MAX_BATCH && this.pos - this.batchAt - 4 + n <= this.maxBody) {
        this._ensure(n);
        this.batchCount++;
        const at = this.pos;
        this.pos += n;
        return at;
      }
      if (this.batchAt < 0 && this.lastAt >= 0 && this.pos - this.lastAt - 4 + BATCH_HEAD + n <= this.maxBody) {
        // The last response becomes the first item of a batch: its body
        // moves right to make room for the batch's head.
        this._ensure(BATCH_HEAD + n);
        const b = this.lastAt;
        this.buf.copyWithin(b + 4 + BATCH_HEAD, b + 4, this.pos);
        this.buf[b + 4] = 0x92;
        this.buf[b + 5] = wire.Kind.BATCH_RESPONSE;
        this.buf[b + 6] = 0xdc;
        this.pos += BATCH_HEAD;
        this.batchAt = b;
        this.batchCount = 2;
        this.lastAt = -1;
        const at = this.pos;
        this.pos += n;
        return at;
      }
    }
    this._closeBatch();
    this._ensure(4 + n);
    this.buf.writeUInt32BE(n, this.pos);
    this.lastAt = this.pos;
    const at = this.pos + 4;
    this.pos += 4 + n;
    return at;
  }

  /**
   * Queues a successful response to id with payload kind kind: data is
   * the payload's bytes (a blob's, sent as bin, or a value's encoding).
   * The caller has checked that the frame fits the host's limit.
   */
  response(id, kind, data) {
    this._schedule();
    const n = data.length;
    const idn = typeof id === 'bigint' && id <= 0xffffffffn ? Number(id) : id;
    const idLen = typeof idn === 'number' ? (idn <= 0x7f ? 1 : idn <= 0xff ? 2 : idn <= 0xffff ? 3 : 5) : 9;
    const binLen = kind === wire.Payload.BLOB ? (n < 0x100 ? 2 : n < 0x10000 ? 3 : 5) : 0;
    const head = 2 + idLen + 3 + binLen;
    let at;
    if (n <= SMALL_PAYLOAD) {
      at = this._item(head + n);
    } else {
      this._closeBatch();
      this.lastAt = -1;
      this._ensure(4 + head);
      this.buf.writeUInt32BE(head + n, this.pos);
      at = this.pos + 4;
      this.pos += 4 + head;
    }
    const b = this.buf;
    b[at++] = 0x96;
    b[at++] = wire.Kind.RESPONSE;
    if (idLen === 1) b[at++] = idn;
    else if (idLen === 2) { b[at++] = 0xcc; b[at++] = idn; }
    else if (idLen === 3) { b[at++] = 0xcd; b.writeUInt16BE(idn, at); at += 2; }
    else if (idLen === 5) { b[at++] = 0xce; b.writeUInt32BE(idn, at); at += 4; }
    else { b[at++] = 0xcf; b.writeBigUInt64BE(BigInt(idn), at); at += 8; }
    b[at++] = 0xa0; // no error code
    b[at++] = 0xa0; // no error message
    b[at++] = kind;
    if (binLen === 2) { b[at++] = 0xc4; b[at++] = n; }
    else if (binLen === 3) { b[at++] = 0xc5; b.writeUInt16BE(n, at); at += 2; }
    else if (binLen === 5) { b[at++] = 0xc6; b.writeUInt32BE(n, at); at += 4; }
    if (n <= SMALL_PAYLOAD) {
      b.set(data, at);
      return;
    }
    this._cut();
    this.segs.push(data);
  }

  /** Queues a whole frame (header included); response marks a response, which may join a batch. */
  frame(f, response = false) {
    this._schedule();
    if (response && f.length - 4 <= SMALL_PAYLOAD + 64) {
      const at = this._item(f.length - 4);
      this.buf.set(f.subarray(4), at);
      return;
    }
    this._closeBatch();
    this.lastAt = -1;
    if (f.length <= SMALL_PAYLOAD) {
      this._ensure(f.length);
      this.buf.set(f, this.pos);
      this.pos += f.length;
      return;
    }
    this._cut();
    this.segs.push(f);
  }

  /** Ends the current segment of buf, before a buffer queued by reference. */
  _cut() {
    if (this.pos > this.segStart) this.segs.push(this.buf.subarray(this.segStart, this.pos));
    this.segStart = this.pos;
  }

  /** Writes everything queued. */
  _flush() {
    this.scheduled = false;
    this._closeBatch();
    this.lastAt = -1;
    this._cut();
    const segs = this.segs;
    this.segs = [];
    let lent = false; // a part of buf went to the socket: buf may not be reused
    if (segs.length > 0 && !this.failed && !this.socket.destroyed) {
      let i = 0; // segs[i] from byte off is the first not written
      let off = 0;
      while (i < segs.length && this.socket.writableLength === 0) {
        const group = segs.slice(i, i + IOV_MAX);
        if (off > 0) group[0] = group[0].subarray(off);
        let n;
        try {
          n = group.length === 1 ? fs.writeSync(this.fd, group[0]) : fs.writevSync(this.fd, group);
        } catch (e) {
          if (e.code === 'EAGAIN') break;
          this.fail(e);
          i = segs.length;
          break;
        }
        let k = 0;
        while (k < group.length && n >= group[k].length) n -= group[k++].length;
        off = k === 0 ? off + n : n;
        i += k;
        if (k < group.length) break; // the pipe is full
      }
      if (i < segs.length) {
        lent = true;
        this.socket.cork();
        for (; i < segs.length; i++, off = 0) this.socket.write(off > 0 ? segs[i].subarray(off) : segs[i]);
        this.socket.uncork();
      }
    }
    this.pos = 0;
    this.segStart = 0;
    if (lent) this.buf = Buffer.allocUnsafeSlow(INITIAL_BUFFER);
  }

  fail(e) {
    if (this.failed) return;
    this.failed = true;
    this.onError(e);
  }
}

module.exports = { FrameWriter, SMALL_PAYLOAD };
