'use strict';
// CPU-bound functions the conformance worker runs in its ThreadPool.
exports.spin = (ms) => {
  const end = Date.now() + ms;
  let n = 0;
  while (Date.now() < end) n++;
  return n;
};
