'use strict';
// The worker's side of the procpool protocol: Worker, and its conversation
// with the host (Conn): setting up fds 3 and 4, the handshake, the host's
// messages, a handler's exception or panic, shutdown and the end. Conn's
// other methods are in intake.js (reading fd 3, requests, running jobs) and
// answers.js (a job's chunks and response, writing frames).

const net = require('node:net');
const wire = require('./wire');
const { openRegion } = require('./shared');
const { FrameWriter } = require('./writer');
const { Job, ProcpoolError } = require('./job');
const { Intake, READ_BUFFER } = require('./intake');
const { Answers } = require('./answers');

const { Kind, Payload, Code, ProtocolError } = wire;

/** Exit codes of Worker.run, as those of the Go SDK's worker.Main. */
const EXIT_OK = 0;
const EXIT_ERROR = 1; // a protocol error, or fds 3 and 4 missing
const EXIT_PANIC = 70; // a handler crashed (EX_SOFTWARE): the host replaces the worker

const PANIC_FRAMES = 10; // frames of its stack in a panic's detail

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

  // --- the host's messages ---

  /** fd 3 reached its end. */
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

  /** Answers job with what its handler threw: its code, the stop's, or a panic that ends the worker. */
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

  // --- ending ---

  /** job is answered: forgets it, and ends a shutdown when it was the last. */
  complete(job) {
    if (job._timer !== undefined) clearTimeout(job._timer);
    this.jobs.delete(job.id);
    this.running--;
    if (this.running === 0 && this.shutdown) this.finish(null, EXIT_OK);
  }

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

// Intake and Answers only carry methods of Conn: they are defined on
// Conn.prototype as they are, non-enumerable as its own. A name defined
// twice is a mistake, caught when the module loads.
for (const part of [Intake, Answers]) {
  for (const name of Object.getOwnPropertyNames(part.prototype)) {
    if (name === 'constructor') continue;
    if (Object.prototype.hasOwnProperty.call(Conn.prototype, name)) throw new Error(`Conn.${name} is defined twice`);
    Object.defineProperty(Conn.prototype, name, Object.getOwnPropertyDescriptor(part.prototype, name));
  }
}

module.exports = { Worker, Job, ProcpoolError, ProtocolError, EXIT_OK, EXIT_ERROR, EXIT_PANIC };
