'use strict';
// Conn's answers (see server.js): a job's chunks, its response or error
// response, through the shared region when large, queued for fd 4.

const wire = require('./wire');
const { MIN_PAYLOAD } = require('./shared');
const { SMALL_PAYLOAD } = require('./writer');
const { ProcpoolError } = require('./job');

const { Payload, Code } = wire;

// Besides its payload, a response frame holds at most this many bytes: only
// results that would fit in a frame go through the shared region.
const SHARED_ENVELOPE = 1 << 10;
// A response's envelope around its payload takes at most this many bytes
// (array head, kind, a 64-bit id, two empty strings, payload kind, bin head).
const MAX_ENVELOPE = 2 + 9 + 3 + 5;

/** Conn's methods that answer jobs and queue frames. */
class Answers {
  /** Writes a chunk of job's, through the shared region when it is large; throws when it is too large for the host. */
  writeChunk(job, data) {
    const n = data.length;
    if (this.region !== null && n >= MIN_PAYLOAD && n <= this.hostMax - SHARED_ENVELOPE) {
      const off = this.region.put(data);
      if (off >= 0) {
        this.write(wire.frame([wire.chunkPrefix(job.id, job._kind | 2), Buffer.from([0x92]), wire.uintBytes(off), wire.uintBytes(n)]));
        return;
      }
    }
    const prefix = wire.chunkPrefix(job.id, job._kind);
    const bin = job._kind === Payload.BLOB ? wire.binHeader(n) : Buffer.alloc(0);
    const size = prefix.length + bin.length + n;
    if (size > this.hostMax) throw new ProcpoolError(Code.HANDLER, `a chunk of ${n} bytes exceeds the host's frame limit of ${this.hostMax} bytes`);
    this.write(Buffer.concat([wire.header(size), prefix, bin, data], 4 + size)); // copied: the caller may reuse its buffer
  }

  answer(job, h, result) {
    let data;
    if (h.kind === Payload.VALUE) {
      try {
        data = wire.encodeValueShared(result);
      } catch (e) {
        throw new ProcpoolError(Code.HANDLER, `encoding the result: ${e.message}`);
      }
      // The writer copies small payloads at once; a larger one it keeps
      // until the flush, and the shared region takes only some.
      if (data.length > SMALL_PAYLOAD) data = Buffer.from(data);
    } else if (result === null || result === undefined) {
      data = Buffer.alloc(0);
    } else if (result instanceof Uint8Array) {
      data = result;
    } else if (result instanceof ArrayBuffer) {
      data = new Uint8Array(result);
    } else if (typeof result === 'string') {
      data = Buffer.from(result, 'utf8');
    } else {
      throw new ProcpoolError(Code.HANDLER, `a blob handler returned ${typeof result}, not bytes`);
    }
    job._end();
    const n = data.length;
    if (this.region !== null && n >= MIN_PAYLOAD && n <= this.hostMax - SHARED_ENVELOPE) {
      // Allocated and written in one go on the one thread: blocks are
      // numbered in the order their frames are written.
      const off = this.region.put(data);
      if (off >= 0) {
        this.write(wire.frame([wire.responsePrefix(job.id, h.kind | 2), Buffer.from([0x92]), wire.uintBytes(off), wire.uintBytes(n)]), true);
        return;
      }
    }
    if (n + MAX_ENVELOPE > this.hostMax) {
      const size = wire.responsePrefix(job.id, h.kind).length + (h.kind === Payload.BLOB ? wire.binHeader(n).length : 0) + n;
      if (size > this.hostMax) {
        this.writeError(job.id, Code.TOO_LARGE, `the response (${n} bytes of payload) exceeds the host's frame limit of ${this.hostMax} bytes`);
        return;
      }
    }
    if (this.writable()) this.writer.response(job.id, h.kind, data);
  }

  /** Writes an error response; its detail is dropped, then its message cut, when the frame would exceed the host's limit. */
  writeError(id, code, message, detail) {
    let f = wire.errorFrame(id, code, message, detail);
    if (f.length - 4 > this.hostMax && detail) f = wire.errorFrame(id, code, message);
    if (f.length - 4 > this.hostMax) f = wire.errorFrame(id, code, String(message).slice(0, Math.max(0, this.hostMax - 64)));
    this.write(f, true);
  }

  // --- writing ---

  /** True while frames may still be written to the host. */
  writable() {
    return !(this.closedOut || this.out.writableEnded || this.out.destroyed);
  }

  /** Queues a whole frame for the next flush (see FrameWriter); response marks a response. */
  write(f, response = false) {
    if (this.writable()) this.writer.frame(f, response);
  }
}

module.exports = { Answers };
