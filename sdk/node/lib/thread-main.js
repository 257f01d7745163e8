'use strict';
// The entry point of a ThreadPool thread: loads the module and runs its
// exports by name, one task at a time.
const { parentPort, workerData } = require('node:worker_threads');

const mod = require(workerData.filename);

parentPort.on('message', async ({ name, arg }) => {
  try {
    const fn = mod[name];
    if (typeof fn !== 'function') throw new Error(`${workerData.filename} exports no function ${JSON.stringify(name)}`);
    const value = await fn(arg);
    parentPort.postMessage({ ok: true, value });
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    parentPort.postMessage({ ok: false, error: { message: err.message, stack: err.stack, code: err.code, name: err.name } });
  }
});
