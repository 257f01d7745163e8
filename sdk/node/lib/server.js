'use strict';
// The worker's side of the procpool protocol: handshake, reading fd 3,
// handlers, cancel, deadlines, shutdown, panics, writing fd 4.

const net = require('node:net');
const wire = require('./wire');
const { openRegion, MIN_PAYLOAD } = require('./shared');
const { FrameWriter, SMALL_PAYLOAD } = require('./writer');

const { Kind, Payload, Code, ProtocolError } = wire;

/** Exit codes of Worker.run, as those of the Go SDK's worker.Main. */
const EXIT_OK = 0;
const EXIT_ERROR = 1; // a protocol error, or fds 3 and 4 missing
const EXIT_PANIC = 70; // a handler crashed (EX_SOFTWARE): the host replaces the worker

// Besides its payload, a response frame holds at most this many bytes: only
// results that would fit in a frame go through the shared region.
const SHARED_ENVELOPE = 1 << 10;
const PANIC_FRAMES = 10;
// A response's envelope around its payload takes at most this many bytes
// (array head, kind, a 64-bit id, two empty strings, payload kind, bin head).
const MAX_ENVELOPE = 2 + 9 + 3 + 5;

// fd 3 is read into buffers of this size, frame after frame, a new buffer
// only when one is full: the payloads handed to handlers are views of it,
// never overwritten. A frame larger than what is left goes to a buffer of
// its own size.
const READ_BUFFER = 64 << 10;
const MIN_READ = 4 << 10; // less room than this left: the next read goes to a new buffer

/**
 * An error with a code, thrown by a handler to choose the error code of its
 * response; the host's *RemoteError carries code and message as they are.
 * Any other exception a handler throws (or rejects with) is a crash: it is
 * answered with code "panic" and the worker exits non-zero, unless the job
 * was aborted first, in which case it is answered "cancelled" or "deadline".
 */
class ProcpoolError extends Error {
  constructor(code, message = '') {
    super(message);
    this.name = 'ProcpoolError';
    this.code = code || Code.HANDLER;
  }
}

/**
 * A job as its handler sees it: id (a BigInt: ids are 64-bit), jobType,
 * deadline (a Date.now() timestamp, or undefined without a timeout),
 * attempt (1 for the first run, more when the host runs it again after a
 * failure), traceparent and tracestate (the caller's W3C trace context, ''
 * when the host sent none), streaming (the host asked for partial results:
 * send() may be called) and signal, an AbortSignal aborted when the host
 * cancels the job, its timeout elapses, the shutdown grace runs out or the
 * host goes away; its reason is a ProcpoolError with code "cancelled" or
 * "deadline".
 */
class Job {
  constructor(id, jobType, timeoutMs, meta = {}, sink = undefined, kind = Payload.BLOB) {
    this.id = id;
    this.jobType = jobType;
    this.timeoutMs = timeoutMs;
    this.deadline = timeoutMs > 0 ? Date.now() + timeoutMs : undefined;
    this.attempt = Math.max(1, meta.attempt || 1);
    this.traceparent = meta.traceparent || '';
    this.tracestate = meta.tracestate || '';
    this.streaming = sink !== undefined && (meta.credit || 0) > 0;
    this._credit = this.streaming ? meta.credit : 0;
    this._sink = sink; // writes a chunk's bytes; throws if they are too large
    this._kind = kind;
    this._done = false;
    this._waiters = []; // resolvers of send() calls waiting for credit
    this._reason = undefined;
    this._controller = undefined; // made when signal is first asked for
    this._timer = undefined;
  }
  /** The trace context as header names and values, a carrier for a propagator's extract(). */
  traceHeaders() {
    const h = {};
    if (this.traceparent) h.traceparent = this.traceparent;
    if (this.tracestate) h.tracestate = this.tracestate;
    return h;
  }
  /**
   * Sends a partial result before the handler returns: bytes (a Uint8Array
   * or a string) in a BLOB handler, any value in a VALUE handler. Resolves
   * once the chunk is queued; waits while the host's window of chunks is
   * used up, until it grants more. Rejects with the abort reason when the job
   * must stop, and with a ProcpoolError when the host did not ask for partial
   * results or the handler has returned.
   */
  async send(chunk) {
    if (!this.streaming) throw new ProcpoolError(Code.HANDLER, "the host did not ask for this job's partial results");
    let data;
    if (this._kind === Payload.VALUE) data = wire.encodeValue(chunk);
    else if (typeof chunk === 'string') data = Buffer.from(chunk, 'utf8');
    else if (chunk instanceof Uint8Array) data = chunk;
    else throw new ProcpoolError(Code.HANDLER, `a blob chunk must be bytes, not ${typeof chunk}`);
    for (;;) {
      if (this._done) throw new ProcpoolError(Code.HANDLER, "the job's stream ended with its response");
      this.throwIfAborted();
      if (this._credit > 0) {
        this._sink(this, data);
        this._credit--;
        return;
      }
      await new Promise((resolve) => this._waiters.push(resolve));
    }
  }
  _grant(n) {
    if (this._done || !this.streaming) return;
    this._credit += n;
    this._wake();
  }
  _end() {
    this._done = true;
    this._wake();
  }
  _wake() {
    const w = this._waiters;
    this._waiters = [];
    for (const resolve of w) resolve();
  }
  /** The job's AbortSignal. */
  get signal() {
    if (this._controller === undefined) {
      this._checkDeadline();
      this._controller = new AbortController();
      if (this._reason !== undefined) this._controller.abort(this._reason);
    }
    return this._controller.signal;
  }
  /** True once the job should stop. */
  get aborted() {
    this._checkDeadline();
    return this._reason !== undefined;
  }
  /** Throws the abort reason if the job should stop. */
  throwIfAborted() {
    this._checkDeadline();
    if (this._reason !== undefined) throw this._reason;
  }
  /**
   * Aborts the job if its deadline has passed. A handler that runs on the
   * event loop without yielding sees its deadline this way; one that
   * awaits gets a timer (_arm), armed only then, so that a job answered in
   * the turn it arrived costs no timer.
   */
  _checkDeadline() {
    if (this._reason === undefined && this.deadline !== undefined && Date.now() >= this.deadline) this._expire();
  }
  _expire() {
    this._abort(new ProcpoolError(Code.DEADLINE, `the job's timeout of ${this.timeoutMs} ms elapsed`));
  }
  /** Arms the deadline's timer, once the handler has yielded. */
  _arm() {
    if (this.deadline === undefined || this._timer !== undefined || this._reason !== undefined) return;
    const left = this.deadline - Date.now();
    if (left <= 0) this._expire();
    else this._timer = setTimeout(() => this._expire(), left);
  }
  _abort(reason) {
    if (this._reason !== undefined) return;
    this._reason = reason;
    if (this._controller !== undefined) this._controller.abort(reason);
    this._wake();
  }
}

function log(msg) {
  process.stderr.write(`${msg}\n`); // the host logs stderr line by line
}

/**
 * A procpool worker: register handlers by job type, then call run().
 *
 *   const w = new Worker();
 *   w.handle('sha512', (payload) => createHash('sha512').update(payload).digest());
 *   w.handleValue('add', ([a, b]) => a + b);
 *   w.run();
 *
 * Handlers may be async, and run on the event loop: while one awaits, the
 * worker reads the host's frames and answers pings. A handler that keeps the
 * CPU busy for long (more than a fraction of the heartbeat timeout, 5 s by
 * default) blocks them: run such work in worker threads (ThreadPool).
 */
class Worker {
  /**
   * @param {object} [opts]
   * @param {number} [opts.maxFrame] the largest frame accepted from the host (default 64 MiB)
   * @param {number} [opts.drainTimeout] ms to wait for running jobs when serving ends abnormally (default 500)
   */
  constructor({ maxFrame = wire.DEFAULT_MAX_FRAME, drainTimeout = 500 } = {}) {
    if (!(maxFrame > 0 && maxFrame <= 0xffffffff)) throw new RangeError('maxFrame must be in (0, 2^32)');
    this.maxFrame = maxFrame;
    this.drainTimeout = drainTimeout;
    this._handlers = new Map();
  }

  /** Registers a BLOB handler: (payload: Buffer, job: Job) => Uint8Array | string | null, or a promise of one. */
  handle(jobType, fn) {
    return this._register(jobType, fn, Payload.BLOB);
  }

  /** Registers a VALUE handler: (value, job: Job) => any value msgpack encodes, or a promise of one. */
  handleValue(jobType, fn) {
    return this._register(jobType, fn, Payload.VALUE);
  }

  _register(jobType, fn, kind) {
    if (typeof jobType !== 'string' || jobType === '') throw new TypeError('the job type must be a non-empty string');
    if (typeof fn !== 'function') throw new TypeError(`the handler of ${JSON.stringify(jobType)} is not a function`);
    if (this._handlers.has(jobType)) throw new Error(`job type ${JSON.stringify(jobType)} registered twice`);
    this._handlers.set(jobType, { name: jobType, fn, kind });
    return this;
  }

  /** The registered job types, sorted: what ready announces. */
  get jobTypes() {
    return [...this._handlers.keys()].sort();
  }

  /** Serves the host over fds inFd and outFd; resolves to the exit code. */
  serve({ inFd = 3, outFd = 4 } = {}) {
    return new Conn(this, inFd, outFd).serve();
  }

  /** serve(), then exits the process with its exit code. */
  run(opts) {
    this.serve(opts).then(
      (code) => process.exit(code),
      (e) => {
        log(`procpool-worker: ${e && e.stack ? e.stack : e}`);
        process.exit(EXIT_ERROR);
      },
    );
  }
}

class Conn {
  constructor(worker, inFd, outFd) {
    this.w = worker;
    this.handlers = new Map(worker._handlers);
    this.inFd = inFd;
    this.outFd = outFd;
    this.jobs = new Map(); // running jobs by id (BigInt)
    this.running = 0;
    this.refusing = false;
    this.shutdown = false;
    this.panicked = false;
    this.finished = false;
    this.handshook = false;
    this.hostMax = wire.DEFAULT_MAX_FRAME;
    this.region = null;
    this.rbuf = Buffer.allocUnsafeSlow(READ_BUFFER); // fd 3 is read into rbuf[rend:]
    this.rstart = 0; // rbuf[rstart, rend) holds the start of a frame not yet whole
    this.rend = 0;
    this.nextRead = () => this.readInto();
    this.features = []; // the optional features negotiated in the handshake
    this.batching = false;
    this.writer = null; // the FrameWriter of fd 4
    this.graceTimer = undefined;
  }

  serve() {
    return new Promise((resolve) => {
      this.resolve = resolve;
      try {
        this.in = new net.Socket({
          fd: this.inFd, readable: true, writable: false,
          onread: { buffer: this.nextRead, callback: (n) => this.onRead(n) },
        });
        this.out = new net.Socket({ fd: this.outFd, readable: false, writable: true }); // makes fd 4 non-blocking
      } catch (e) {
        log(`procpool-worker: file descriptors ${this.inFd} and ${this.outFd} are not usable (${e.message}): ` +
          'a worker must be started by a procpool host, which passes its protocol pipes as fds 3 and 4');
        resolve(EXIT_ERROR);
        return;
      }
      const onWriteError = (e) => {
        if (e.code !== 'EPIPE') log(`procpool-worker: writing to the host: ${e.message}`);
        this.finish('the host closed the connection', EXIT_OK, true);
      };
      this.writer = new FrameWriter(this.outFd, this.out, onWriteError);
      this.out.on('error', (e) => this.writer.fail(e));
      this.in.on('error', (e) => this.protocolError(`reading from the host: ${e.message}`));
      this.in.on('end', () => this.onEnd());
      this.onUncaught = (e) => this.crash(e);
      process.on('uncaughtException', this.onUncaught);
      process.on('unhandledRejection', this.onUncaught);
    });
  }

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

  onEnd() {
    if (this.rend > this.rstart) return this.protocolError("the host's stream ended inside a frame");
    if (!this.handshook) return this.finish(null, EXIT_OK, true); // gone before hello
    if (this.shutdown) return; // shut down already: keep draining within the grace
    this.finish('the host closed the connection', EXIT_OK);
  }

  handshake(body) {
    const r = new wire.Reader(body);
    const n = r.arrayLen();
    const kind = r.small();
    if (kind !== Kind.HELLO || n < 3 || n > 5) throw new ProtocolError(`the host's first message is not hello (kind ${kind})`);
    const version = r.small();
    const hostMax = r.small();
    const sharedSize = n >= 4 ? r.small() : 0;
    const offered = [];
    if (n === 5) for (let i = r.arrayLenOrNil(); i > 0; i--) offered.push(r.str());
    r.end();
    this.features = wire.FEATURES.filter((f) => offered.includes(f));
    this.batching = this.features.includes('batch');
    this.writer.batching = this.batching;
    if (version !== wire.VERSION) {
      this.write(wire.readyFrame(this.w.maxFrame, process.pid, this.jobTypes(), 0));
      throw new ProtocolError(`the host speaks protocol version ${version}, this worker ${wire.VERSION}`);
    }
    if (hostMax <= 0) throw new ProtocolError('hello announces a frame limit of 0');
    this.hostMax = hostMax;
    this.writer.maxBody = hostMax;
    if (sharedSize > 0) this.region = openRegion(sharedSize, log);
    this.handshook = true;
    this.write(wire.readyFrame(this.w.maxFrame, process.pid, this.jobTypes(), this.region ? sharedSize : 0, this.features));
  }

  jobTypes() {
    return [...this.handlers.keys()].sort();
  }

  dispatch(body) {
    const r = new wire.Reader(body);
    const n = r.arrayLen();
    const kind = r.small();
    switch (kind) {
      case Kind.PING: {
        if (n !== 2) throw new ProtocolError('malformed ping');
        const seq = r.uint();
        r.end();
        this.write(wire.pongFrame(seq));
        return;
      }
      case Kind.REQUEST: {
        this.request(r, n);
        r.end();
        return;
      }
      case Kind.BATCH_REQUEST: {
        if (!this.batching) throw new ProtocolError('the host sent a batch request, but the handshake did not negotiate batches');
        if (n !== 2) throw new ProtocolError('malformed batch request');
        const count = r.arrayLen();
        if (count === 0 || count > wire.MAX_BATCH) throw new ProtocolError(`a batch request of ${count} items`);
        for (let i = 0; i < count; i++) {
          const m = r.arrayLen();
          if (r.small() !== Kind.REQUEST) throw new ProtocolError('a batch request holds something else than a request');
          this.request(r, m);
        }
        r.end();
        return;
      }
      case Kind.CREDIT: {
        if (!this.features.includes('stream')) throw new ProtocolError('the host sent a credit, but the handshake did not negotiate streams');
        if (n !== 3) throw new ProtocolError('malformed credit');
        const job = this.jobs.get(r.uint()); // unknown or answered: ignore
        const credit = r.small();
        r.end();
        if (job !== undefined) job._grant(credit);
        return;
      }
      case Kind.CANCEL: {
        if (n !== 2) throw new ProtocolError('malformed cancel');
        const job = this.jobs.get(r.uint()); // unknown or answered: ignore
        r.end();
        if (job !== undefined) job._abort(new ProcpoolError(Code.CANCELLED, 'cancelled by the host'));
        return;
      }
      case Kind.SHUTDOWN: {
        if (n !== 2) throw new ProtocolError('malformed shutdown');
        const grace = r.small();
        r.end();
        if (this.shutdown) return;
        this.shutdown = this.refusing = true;
        this.graceTimer = setTimeout(() => this.finish('the shutdown grace period expired', EXIT_OK), grace);
        if (this.running === 0) this.finish(null, EXIT_OK);
        return;
      }
      default:
        throw new ProtocolError(`unexpected message of kind ${kind} from the host`);
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

  answerError(job, e) {
    job._end();
    if (e instanceof ProcpoolError || (e instanceof Error && typeof e.code === 'string' && e.name === 'ProcpoolError')) {
      this.writeError(job.id, e.code, e.message);
      return;
    }
    if (job._reason !== undefined) {
      // Stopped, and the handler threw on its way out: the stop's code.
      const msg = e instanceof Error ? e.message : String(e);
      this.writeError(job.id, job._reason.code, msg === job._reason.message ? msg : `${msg} (${job._reason.message})`);
      return;
    }
    const stack = e instanceof Error && e.stack ? e.stack : `${e}`;
    log(`procpool-worker: panic in job ${job.id} of type ${JSON.stringify(job.jobType)}:\n${stack}`);
    // The message is the first line; the detail, the payload, has the error
    // in full and the first frames of its stack.
    const what = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    const nl = what.indexOf('\n');
    const summary = `panic: ${nl < 0 ? what : `${what.slice(0, nl)} [...]`}`;
    const frames = e instanceof Error && e.stack ? e.stack.split('\n').filter((l) => /^\s+at /.test(l)).slice(0, PANIC_FRAMES) : [];
    const detail = Buffer.from(`panic: ${what}\n${frames.length ? `\n${frames.join('\n')}` : ''}`).subarray(0, wire.MAX_ERR_MESSAGE);
    this.writeError(job.id, Code.PANIC, summary, detail);
    this.onPanic();
  }

  complete(job) {
    if (job._timer !== undefined) clearTimeout(job._timer);
    this.jobs.delete(job.id);
    this.running--;
    if (this.running === 0 && this.shutdown) this.finish(null, EXIT_OK);
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

  // --- ending ---

  onPanic() {
    if (this.panicked) return;
    this.panicked = true;
    // The other jobs may finish normally for a while: the panic was not theirs.
    const t = setTimeout(() => this.finish('the worker is stopping after a handler panic', EXIT_PANIC), this.w.drainTimeout);
    this.whenIdle(() => {
      clearTimeout(t);
      this.finish(null, EXIT_PANIC);
    });
  }

  crash(e) {
    log(`procpool-worker: uncaught exception outside a handler: ${e && e.stack ? e.stack : e}`);
    if (!this.panicked) {
      this.panicked = true;
      this.finish('the worker is stopping after an uncaught exception', EXIT_PANIC);
    }
  }

  protocolError(msg) {
    log(`procpool-worker: ${msg}`);
    this.finish('the worker is stopping after a protocol error', EXIT_ERROR);
  }

  whenIdle(fn) {
    if (this.running === 0) return fn();
    const check = setInterval(() => {
      if (this.running === 0) {
        clearInterval(check);
        fn();
      }
    }, 2);
  }

  /** Ends the conversation: stops the running jobs with cause, waits for them up to drainTimeout, flushes fd 4, resolves with code. */
  finish(cause, code, outGone = false) {
    if (this.finished) return;
    this.finished = true;
    this.refusing = true;
    if (this.graceTimer !== undefined) clearTimeout(this.graceTimer);
    this.in.pause();
    if (cause !== null) {
      const reason = new ProcpoolError(Code.CANCELLED, cause);
      for (const job of this.jobs.values()) job._abort(reason);
    }
    const done = () => {
      this.closedOut = true;
      this.in.destroy();
      process.removeListener('uncaughtException', this.onUncaught);
      process.removeListener('unhandledRejection', this.onUncaught);
      this.resolve(code);
    };
    const drained = () => {
      if (outGone || this.out.destroyed) return done();
      this.writer.flush();
      const t = setTimeout(done, this.w.drainTimeout); // the host may not read any more
      this.out.end(() => {
        clearTimeout(t);
        done();
      });
    };
    if (this.running === 0) return drained();
    let waited = false;
    const t = setTimeout(() => {
      waited = true;
      log(`procpool-worker: ${this.running} job(s) still running ${this.w.drainTimeout} ms after cancellation (${cause}); abandoning them`);
      drained();
    }, this.w.drainTimeout);
    this.whenIdle(() => {
      if (waited) return;
      clearTimeout(t);
      drained();
    });
  }
}

module.exports = { Worker, Job, ProcpoolError, ProtocolError, EXIT_OK, EXIT_ERROR, EXIT_PANIC };
