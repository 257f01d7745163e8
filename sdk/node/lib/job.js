'use strict';
// A job as its handler sees it (Job), and the error a handler throws to
// choose its response's code (ProcpoolError).

const wire = require('./wire');

const { Payload, Code } = wire;

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

module.exports = { Job, ProcpoolError };
