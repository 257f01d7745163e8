'use strict';
// Conn's intake (see server.js): the reading of fd 3 frame by frame, and
// the host's requests, alone or in a batch, becoming jobs whose handlers
// run.

const wire = require('./wire');
const { Job, ProcpoolError } = require('./job');

const { Payload, Code, ProtocolError } = wire;

// fd 3 is read into buffers of this size, frame after frame, a new buffer
// only when one is full: the payloads handed to handlers are views of it,
// never overwritten. A frame larger than what is left goes to a buffer of
// its own size.
const READ_BUFFER = 64 << 10;
const MIN_READ = 4 << 10; // less room than this left: the next read goes to a new buffer

/** Conn's methods that read fd 3 and start and run the jobs it asks for. */
class Intake {
  // --- reading ---

  /** The buffer the next read of fd 3 goes to: the free end of rbuf, or a new rbuf. */
  readInto() {
    const room = this.rbuf.length - this.rend;
    if (room < MIN_READ) {
      // Little room: enough if it is the rest of a frame started here
      // (one of its own size), else a new buffer.
      const part = this.rend - this.rstart;
      const whole = part >= 4 ? 4 + Math.min(this.rbuf.readUInt32BE(this.rstart), this.w.maxFrame) : 0;
      if (room === 0 || whole === 0 || this.rstart + whole > this.rbuf.length) this.moveRead(Math.max(READ_BUFFER, whole));
    }
    return this.rbuf.subarray(this.rend);
  }

  /** Moves the partial frame at rbuf[rstart, rend) to the start of a new buffer of at least size bytes. */
  moveRead(size) {
    const part = this.rend - this.rstart;
    const next = Buffer.allocUnsafeSlow(Math.max(size, part + MIN_READ));
    this.rbuf.copy(next, 0, this.rstart, this.rend);
    this.rbuf = next;
    this.rstart = 0;
    this.rend = part;
  }

  /** n more bytes of fd 3 are at rbuf[rend:]: handles every whole frame. */
  onRead(n) {
    if (this.finished) return false;
    this.rend += n;
    const b = this.rbuf;
    let pos = this.rstart;
    try {
      while (this.rend - pos >= 4 && !this.finished) {
        const len = b.readUInt32BE(pos);
        if (len > this.w.maxFrame) throw new ProtocolError(`frame of ${len} bytes exceeds our limit of ${this.w.maxFrame}`);
        if (this.rend - pos - 4 < len) {
          // Not whole: a frame larger than the room left gets a buffer of its size.
          if (pos + 4 + len > b.length) {
            this.rstart = pos;
            this.moveRead(4 + len);
            return;
          }
          break;
        }
        const body = b.subarray(pos + 4, pos + 4 + len);
        pos += 4 + len;
        if (this.handshook) this.dispatch(body);
        else this.handshake(body);
      }
    } catch (e) {
      if (e instanceof ProtocolError) this.protocolError(e.message);
      else this.protocolError(`internal error: ${e.stack}`);
      return false;
    }
    this.rstart = pos;
    if (pos === this.rend && this.rbuf.length - pos < MIN_READ) {
      // Nothing pending and little room left: start the next buffer.
      this.rbuf = Buffer.allocUnsafeSlow(READ_BUFFER);
      this.rstart = this.rend = 0;
    }
  }

  /** Reads the request of n elements at r (after its kind) and starts it. */
  request(r, n) {
    if (n !== 6 && n !== 7) throw new ProtocolError('malformed request');
    const id = r.uint();
    const jobType = r.str();
    const timeoutMs = r.small();
    const meta = n === 7 ? this.meta(r, id) : {};
    const pk = r.small();
    let payload;
    if (pk === Payload.BLOB) {
      payload = r.bin();
    } else if (pk === Payload.VALUE) {
      const start = r.pos;
      r.skip();
      payload = r.buf.subarray(start, r.pos); // the value's encoding, decoded by the job
    } else if (pk === Payload.SHARED_BLOB || pk === Payload.SHARED_VALUE) {
      if (r.arrayLen() !== 2) throw new ProtocolError(`request ${id}: malformed shared memory span`);
      const off = r.small();
      const len = r.small();
      if (this.region === null) throw new ProtocolError(`request ${id} has its payload in shared memory, which the handshake did not set up`);
      try {
        payload = this.region.request(off, len);
      } catch (e) {
        throw new ProtocolError(`request ${id}: ${e.message}`);
      }
    } else {
      throw new ProtocolError(`request ${id}: payload kind ${pk}`);
    }
    this.start(id, jobType, timeoutMs, pk, payload, meta);
  }

  /** Reads a request's meta map: attempt, traceparent, tracestate, credit; other keys skipped. */
  meta(r, id) {
    const meta = {};
    for (let i = r.mapLen(); i > 0; i--) {
      const key = r.str();
      if (key === 'attempt' || key === 'credit') meta[key] = r.small();
      else if (key === 'traceparent' || key === 'tracestate') meta[key] = r.str();
      else r.skip();
    }
    if (meta.credit > 0xffffffff || meta.attempt > 0xffffffff) throw new ProtocolError(`request ${id}: meta out of range`);
    return meta;
  }

  // --- running ---

  start(id, jobType, timeoutMs, pk, payload, meta = {}) {
    if (this.panicked) return; // lost with the worker, as on any crash
    if (this.refusing) return this.writeError(id, Code.SHUTTING_DOWN, 'the worker is shutting down');
    const h = this.handlers.get(jobType);
    if (h === undefined) return this.writeError(id, Code.UNKNOWN_JOB_TYPE, `no handler for job type ${JSON.stringify(jobType)}`);
    if (this.jobs.has(id)) throw new ProtocolError(`the host reused the id ${id} of a running job`);
    const sink = this.features.includes('stream') ? (j, data) => this.writeChunk(j, data) : undefined;
    const job = new Job(id, jobType, timeoutMs, meta, sink, h.kind);
    this.jobs.set(id, job);
    this.running++;
    this.run(job, h, pk, payload);
  }

  /**
   * Runs job's handler. One that returns a value is answered at once, in
   * the same turn of the event loop; one that returns a promise gets its
   * deadline's timer and is answered when the promise settles.
   */
  run(job, h, pk, payload) {
    let result;
    try {
      // As in the Go SDK, the request's payload kind is not checked: a BLOB
      // handler given a value gets its msgpack encoding, a VALUE handler
      // given a blob decodes its bytes as msgpack.
      let arg;
      if (h.kind === Payload.BLOB) {
        arg = payload;
      } else {
        try {
          arg = wire.decodeValue(payload);
        } catch (e) {
          throw new ProcpoolError(Code.BAD_PAYLOAD, `decoding the value: ${e.message}`);
        }
      }
      result = h.fn(arg, job);
      if (result !== null && typeof result === 'object' && typeof result.then === 'function') {
        job._arm();
        this.settle(job, h, result);
        return;
      }
      this.answer(job, h, result);
    } catch (e) {
      this.answerError(job, e);
    }
    this.complete(job);
  }

  /** Answers job once the promise its handler returned settles. */
  async settle(job, h, promise) {
    try {
      this.answer(job, h, await promise);
    } catch (e) {
      this.answerError(job, e);
    } finally {
      this.complete(job);
    }
  }
}

module.exports = { Intake, READ_BUFFER };
