// The Node.js peer of procpool's bench: piscina, a pool of worker threads
// (not processes) inside one Node.js process, running the same jobs as the
// Go pools. Written to a temporary file and run by bench/sdk.go with
// NODE_PATH pointing at sdk/node/node_modules (piscina is a devDependency of
// the Node SDK); reads its tests as JSON on stdin, writes results as JSON.
//
// For each test: start a pool of `threads` threads and warm it up (every
// thread started), then time `jobs` runs (one pool.run per job, all
// submitted at once), the results collected in order, and the pool's
// destroy. `check` is the SHA-256 of the concatenated results.
'use strict';
const crypto = require('node:crypto');
const Piscina = require('piscina');

function make(size, seed) {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) b[i] = (seed + i) & 0xff;
  return b;
}

async function run(test, cfg) {
  const pool = new Piscina({ filename: cfg.task, minThreads: cfg.threads, maxThreads: cfg.threads, idleTimeout: 60000 });
  const name = !test.hash ? 'noop' : test.kind === 'VALUE' ? 'sha512v' : 'sha512';
  const bufs = test.kind === 'BLOB' ? Array.from({ length: cfg.seeds }, (_, s) => make(test.size, s)) : null;
  await Promise.all(Array.from({ length: cfg.threads * 4 }, () => pool.run({ size: 16, seed: 0 }, { name: 'sha512v' })));
  const t0 = process.hrtime.bigint();
  const jobs = [];
  for (let i = 0; i < test.jobs; i++) {
    const arg = test.kind === 'BLOB' ? bufs[i % cfg.seeds] : { size: test.size, seed: i % cfg.seeds };
    jobs.push(pool.run(arg, { name }));
  }
  const out = await Promise.all(jobs);
  const check = crypto.createHash('sha256');
  for (const r of out) check.update(r);
  await pool.destroy();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { key: test.key, jobs: test.jobs, seconds, check: check.digest('hex') };
}

async function main() {
  let input = '';
  for await (const chunk of process.stdin) input += chunk;
  const cfg = JSON.parse(input);
  const results = [];
  for (const t of cfg.tests) results.push(await run(t, cfg));
  process.stdout.write(JSON.stringify({ version: process.version, results }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
