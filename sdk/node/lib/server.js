'use strict';
// The worker's side of the procpool protocol: handshake, reading fd 3,
// handlers, cancel, deadlines, shutdown, panics, writing fd 4.

const net = require('node:net');
const wire = require('./wire');
const { openRegion, MIN_PAYLOAD } = require('./shared');

const { Kind, Payload, Code, ProtocolError } = wire;

/** Exit codes of Worker.run, as those of the Go SDK's worker.Main. */
const EXIT_OK = 0;
const EXIT_ERROR = 1; // a protocol error, or fds 3 and 4 missing
const EXIT_PANIC = 70; // a handler crashed (EX_SOFTWARE): the host replaces the worker

// Besides its payload, a response frame holds at most this many bytes: only
// results that would fit in a frame go through the shared region.
const SHARED_ENVELOPE = 1 << 10;
const PANIC_FRAMES = 10;

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
 * deadline (a Date.now() timestamp, or undefined without a timeout) and
 * signal, an AbortSignal aborted when the host cancels the job, its timeout
 * elapses, the shutdown grace runs out or the host goes away; its reason
 * is a ProcpoolError with code "cancelled" or "deadline".
 */
class Job {
  constructor(id, jobType, timeoutMs) {
    this.id = id;
    this.jobType = jobType;
    this.timeoutMs = timeoutMs;
    this.deadline = timeoutMs > 0 ? Date.now() + timeoutMs : undefined;
    this._reason = undefined;
    this._controller = undefined; // made when signal is first asked for
    this._timer = undefined;
  }
  /** The job's AbortSignal. */
  get signal() {
    if (this._controller === undefined) {
      this._controller = new AbortController();
      if (this._reason !== undefined) this._controller.abort(this._reason);
    }
    return this._controller.signal;
  }
  /** True once the job should stop. */
  get aborted() {
    return this._reason !== undefined;
  }
  /** Throws the abort reason if the job should stop. */
  throwIfAborted() {
    if (this._reason !== undefined) throw this._reason;
  }
  _abort(reason) {
    if (this._reason !== undefined) return;
    this._reason = reason;
    if (this._controller !== undefined) this._controller.abort(reason);
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
    this.chunks = [];
    this.have = 0;
    this.need = 4;
    this.pending = []; // frames to write at the next flush
    this.pendingBytes = 0;
    this.graceTimer = undefined;
    this.flush = () => {
      const bufs = this.pending;
      if (bufs.length === 0 || this.out.destroyed) return;
      this.pending = [];
      const n = this.pendingBytes;
      this.pendingBytes = 0;
      if (bufs.length === 1) this.out.write(bufs[0]);
      else if (n <= 256 << 10) this.out.write(Buffer.concat(bufs, n)); // one write, one copy of small frames
      else {
        this.out.cork();
        for (const b of bufs) this.out.write(b);
        this.out.uncork();
      }
    };
  }

  serve() {
    return new Promise((resolve) => {
      this.resolve = resolve;
      try {
        this.in = new net.Socket({ fd: this.inFd, readable: true, writable: false });
        this.out = new net.Socket({ fd: this.outFd, readable: false, writable: true });
      } catch (e) {
        log(`procpool-worker: file descriptors ${this.inFd} and ${this.outFd} are not usable (${e.message}): ` +
          'a worker must be started by a procpool host, which passes its protocol pipes as fds 3 and 4');
        resolve(EXIT_ERROR);
        return;
      }
      this.out.on('error', (e) => {
        if (e.code !== 'EPIPE') log(`procpool-worker: writing to the host: ${e.message}`);
        this.finish('the host closed the connection', EXIT_OK, true);
      });
      this.in.on('error', (e) => this.protocolError(`reading from the host: ${e.message}`));
      this.in.on('end', () => this.onEnd());
      this.in.on('data', (chunk) => this.onData(chunk));
      this.onUncaught = (e) => this.crash(e);
      process.on('uncaughtException', this.onUncaught);
      process.on('unhandledRejection', this.onUncaught);
    });
  }

  // --- reading ---

  onData(chunk) {
    if (this.finished) return;
    this.chunks.push(chunk);
    this.have += chunk.length;
    if (this.have < this.need) return;
    let b = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.have);
    this.chunks = [];
    this.have = 0;
    let pos = 0;
    try {
      while (b.length - pos >= 4 && !this.finished) {
        const n = b.readUInt32BE(pos);
        if (n > this.w.maxFrame) throw new ProtocolError(`frame of ${n} bytes exceeds our limit of ${this.w.maxFrame}`);
        if (b.length - pos - 4 < n) break;
        const body = b.subarray(pos + 4, pos + 4 + n);
        pos += 4 + n;
        if (this.handshook) this.dispatch(body);
        else this.handshake(body);
      }
    } catch (e) {
      if (e instanceof ProtocolError) this.protocolError(e.message);
      else this.protocolError(`internal error: ${e.stack}`);
      return;
    }
    if (pos < b.length) {
      const rest = b.subarray(pos);
      this.chunks.push(rest);
      this.have = rest.length;
      this.need = rest.length >= 4 ? 4 + rest.readUInt32BE(0) : 4;
    } else {
      this.need = 4;
    }
  }

  onEnd() {
    if (this.chunks.length > 0) return this.protocolError("the host's stream ended inside a frame");
    if (!this.handshook) return this.finish(null, EXIT_OK, true); // gone before hello
    if (this.shutdown) return; // shut down already: keep draining within the grace
    this.finish('the host closed the connection', EXIT_OK);
  }

  handshake(body) {
    const r = new wire.Reader(body);
    const n = r.arrayLen();
    const kind = r.small();
    if (kind !== Kind.HELLO || (n !== 3 && n !== 4)) throw new ProtocolError(`the host's first message is not hello (kind ${kind})`);
    const version = r.small();
    const hostMax = r.small();
    const sharedSize = n === 4 ? r.small() : 0;
    r.end();
    if (version !== wire.VERSION) {
      this.write([wire.readyFrame(this.w.maxFrame, process.pid, this.jobTypes(), 0)]);
      throw new ProtocolError(`the host speaks protocol version ${version}, this worker ${wire.VERSION}`);
    }
    if (hostMax <= 0) throw new ProtocolError('hello announces a frame limit of 0');
    this.hostMax = hostMax;
    if (sharedSize > 0) this.region = openRegion(sharedSize, log);
    this.handshook = true;
    this.write([wire.readyFrame(this.w.maxFrame, process.pid, this.jobTypes(), this.region ? sharedSize : 0)]);
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
        this.write([wire.pongFrame(seq)]);
        return;
      }
      case Kind.REQUEST: {
        if (n !== 6) throw new ProtocolError('malformed request');
        const id = r.uint();
        const jobType = r.str();
        const timeoutMs = r.small();
        const pk = r.small();
        let payload;
        if (pk === Payload.BLOB) {
          payload = r.bin();
          r.end();
        } else if (pk === Payload.VALUE) {
          payload = r.rest(); // the value's encoding, decoded by the job
        } else if (pk === Payload.SHARED_BLOB || pk === Payload.SHARED_VALUE) {
          if (r.arrayLen() !== 2) throw new ProtocolError(`request ${id}: malformed shared memory span`);
          const off = r.small();
          const len = r.small();
          r.end();
          if (this.region === null) throw new ProtocolError(`request ${id} has its payload in shared memory, which the handshake did not set up`);
          try {
            payload = this.region.request(off, len);
          } catch (e) {
            throw new ProtocolError(`request ${id}: ${e.message}`);
          }
        } else {
          throw new ProtocolError(`request ${id}: payload kind ${pk}`);
        }
        this.start(id, jobType, timeoutMs, pk, payload);
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

  // --- running ---

  start(id, jobType, timeoutMs, pk, payload) {
    if (this.panicked) return; // lost with the worker, as on any crash
    if (this.refusing) return this.write([wire.errorFrame(id, Code.SHUTTING_DOWN, 'the worker is shutting down')]);
    const h = this.handlers.get(jobType);
    if (h === undefined) return this.write([wire.errorFrame(id, Code.UNKNOWN_JOB_TYPE, `no handler for job type ${JSON.stringify(jobType)}`)]);
    if (this.jobs.has(id)) throw new ProtocolError(`the host reused the id ${id} of a running job`);
    const job = new Job(id, jobType, timeoutMs);
    if (timeoutMs > 0) {
      job._timer = setTimeout(() => job._abort(new ProcpoolError(Code.DEADLINE, `the job's timeout of ${timeoutMs} ms elapsed`)), timeoutMs);
    }
    this.jobs.set(id, job);
    this.running++;
    this.run(job, h, pk, payload);
  }

  async run(job, h, pk, payload) {
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
      let result = h.fn(arg, job);
      if (result !== null && typeof result === 'object' && typeof result.then === 'function') result = await result;
      this.answer(job, h, result);
    } catch (e) {
      this.answerError(job, e);
    } finally {
      this.complete(job);
    }
  }

  answer(job, h, result) {
    let data;
    if (h.kind === Payload.VALUE) {
      try {
        data = wire.encodeValue(result);
      } catch (e) {
        throw new ProcpoolError(Code.HANDLER, `encoding the result: ${e.message}`);
      }
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
    const n = data.length;
    if (this.region !== null && n >= MIN_PAYLOAD && n <= this.hostMax - SHARED_ENVELOPE) {
      // Allocated and written in one go on the one thread: blocks are
      // numbered in the order their frames are written.
      const off = this.region.put(data);
      if (off >= 0) {
        this.write([wire.frame([wire.responsePrefix(job.id, h.kind | 2), Buffer.from([0x92]), wire.uintBytes(off), wire.uintBytes(n)])]);
        return;
      }
    }
    const prefix = wire.responsePrefix(job.id, h.kind);
    const bin = h.kind === Payload.BLOB ? wire.binHeader(n) : null;
    const size = prefix.length + (bin ? bin.length : 0) + n;
    if (size > this.hostMax) {
      this.write([wire.errorFrame(job.id, Code.TOO_LARGE, `the response (${n} bytes of payload) exceeds the host's frame limit of ${this.hostMax} bytes`)]);
      return;
    }
    if (n <= 4096) {
      // Small: one buffer for the whole frame.
      const f = Buffer.allocUnsafe(4 + size);
      f.writeUInt32BE(size, 0);
      let at = 4 + prefix.copy(f, 4);
      if (bin) at += bin.copy(f, at);
      f.set(data, at);
      this.write([f]);
      return;
    }
    this.write(bin ? [wire.header(size), prefix, bin, data] : [wire.header(size), prefix, data]);
  }

  answerError(job, e) {
    if (e instanceof ProcpoolError || (e instanceof Error && typeof e.code === 'string' && e.name === 'ProcpoolError')) {
      this.write([wire.errorFrame(job.id, e.code, e.message)]);
      return;
    }
    if (job._reason !== undefined) {
      // Stopped, and the handler threw on its way out: the stop's code.
      const msg = e instanceof Error ? e.message : String(e);
      this.write([wire.errorFrame(job.id, job._reason.code, msg === job._reason.message ? msg : `${msg} (${job._reason.message})`)]);
      return;
    }
    const stack = e instanceof Error && e.stack ? e.stack : `${e}`;
    log(`procpool-worker: panic in job ${job.id} of type ${JSON.stringify(job.jobType)}:\n${stack}`);
    const lines = stack.split('\n');
    this.write([wire.errorFrame(job.id, Code.PANIC, `panic: ${lines.slice(0, PANIC_FRAMES + 1).join('\n')}`)]);
    this.onPanic();
  }

  complete(job) {
    if (job._timer !== undefined) clearTimeout(job._timer);
    this.jobs.delete(job.id);
    this.running--;
    if (this.running === 0 && this.shutdown) this.finish(null, EXIT_OK);
  }

  // --- writing ---

  write(bufs) {
    if (this.closedOut || this.out.writableEnded || this.out.destroyed) return;
    if (this.pending.length === 0) setImmediate(this.flush);
    for (const b of bufs) {
      this.pending.push(b);
      this.pendingBytes += b.length;
    }
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
      this.flush();
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
