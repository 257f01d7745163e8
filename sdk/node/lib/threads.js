'use strict';
// ThreadPool runs CPU-heavy functions in worker threads, so that the event
// loop stays free to read the host's frames and answer its pings.

const os = require('node:os');
const path = require('node:path');
const { Worker: Thread } = require('node:worker_threads');

const ENTRY = path.join(__dirname, 'thread-main.js');

/**
 * A pool of worker threads, each of which loads one module and runs its
 * exported functions by name:
 *
 *   // hash.js
 *   exports.sha512 = (bytes) => require('node:crypto').createHash('sha512').update(bytes).digest();
 *
 *   const pool = new ThreadPool(require.resolve('./hash.js'), { threads: 2 });
 *   w.handle('sha512', (payload, job) => pool.run('sha512', payload, { signal: job.signal }));
 *
 * Arguments and results cross by structured clone (Buffers arrive as
 * Uint8Arrays); pass transferList to move ArrayBuffers instead of copying
 * them. When signal aborts a task that is still queued, it is dropped; one
 * that is running is stopped by terminating its thread (a new one takes its
 * place): either way run rejects with the signal's reason. An error thrown
 * in the thread rejects run with an Error of the same message (and code,
 * if it had a string code, so a ProcpoolError keeps its code).
 */
class ThreadPool {
  /**
   * @param {string} filename absolute path of the module the threads load
   * @param {object} [opts]
   * @param {number} [opts.threads] at most this many threads (default: the number of CPUs)
   */
  constructor(filename, { threads } = {}) {
    if (!path.isAbsolute(filename)) throw new TypeError('ThreadPool needs an absolute module path (use require.resolve)');
    this.filename = filename;
    this.max = threads || (os.availableParallelism ? os.availableParallelism() : os.cpus().length);
    this.idle = [];
    this.all = new Set();
    this.queue = [];
    this.closed = false;
  }

  /** Runs the module's export name on arg in a thread; resolves to its result. */
  run(name, arg, { signal, transferList } = {}) {
    if (this.closed) return Promise.reject(new Error('ThreadPool is closed'));
    if (signal && signal.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const task = { name, arg, transferList, resolve, reject, signal, thread: null, onAbort: null };
      if (signal) {
        task.onAbort = () => this.abort(task);
        signal.addEventListener('abort', task.onAbort, { once: true });
      }
      this.queue.push(task);
      this.pump();
    });
  }

  /** Terminates every thread; pending tasks reject. */
  async close() {
    this.closed = true;
    for (const t of this.queue.splice(0)) this.settle(t, new Error('ThreadPool closed'));
    await Promise.all([...this.all].map((th) => th.terminate()));
  }

  pump() {
    while (this.queue.length > 0) {
      let th = this.idle.pop();
      if (th === undefined) {
        if (this.all.size >= this.max) return;
        th = this.spawn();
      }
      const task = this.queue.shift();
      task.thread = th;
      th.task = task;
      th.postMessage({ name: task.name, arg: task.arg }, task.transferList);
    }
  }

  spawn() {
    const th = new Thread(ENTRY, { workerData: { filename: this.filename } });
    th.unref(); // never keeps the process alive
    th.task = null;
    th.on('message', (m) => {
      const task = th.task;
      th.task = null;
      if (task) {
        if (m.ok) this.settle(task, null, m.value);
        else this.settle(task, rebuild(m.error));
      }
      if (!this.closed) {
        this.idle.push(th);
        this.pump();
      }
    });
    th.on('error', (e) => this.lost(th, e));
    th.on('exit', () => this.lost(th, new Error('the worker thread exited')));
    this.all.add(th);
    return th;
  }

  lost(th, err) {
    if (!this.all.delete(th)) return;
    const i = this.idle.indexOf(th);
    if (i >= 0) this.idle.splice(i, 1);
    if (th.task) {
      const task = th.task;
      th.task = null;
      this.settle(task, err);
    }
    if (!this.closed) this.pump();
  }

  abort(task) {
    const i = this.queue.indexOf(task);
    if (i >= 0) {
      this.queue.splice(i, 1);
      this.settle(task, task.signal.reason);
      return;
    }
    const th = task.thread;
    if (th && th.task === task) {
      th.task = null;
      this.settle(task, task.signal.reason);
      this.all.delete(th);
      th.terminate();
      if (!this.closed) this.pump();
    }
  }

  settle(task, err, value) {
    if (task.signal && task.onAbort) task.signal.removeEventListener('abort', task.onAbort);
    if (err) task.reject(err);
    else task.resolve(value);
  }
}

function rebuild(e) {
  const err = new Error(e.message);
  if (e.stack) err.stack = e.stack;
  if (typeof e.code === 'string') {
    err.code = e.code;
    if (e.name === 'ProcpoolError') err.name = 'ProcpoolError';
  }
  return err;
}

module.exports = { ThreadPool };
