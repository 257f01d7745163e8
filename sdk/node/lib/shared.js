'use strict';
// The worker's side of the shared memory region on file descriptor 5
// (docs/protocol.md, section 13). Core Node has no mmap: the region is a
// memory file, so positioned reads and writes on fd 5 (pread and pwrite,
// through fs.readSync and fs.writeSync with a position) reach the very
// pages the host maps. A request payload costs one copy out of the region
// (into a Buffer the handler owns), a result one copy into it.

const fs = require('node:fs');
const os = require('node:os');

const FD = 5;
const HEADER_SIZE = 4096;
const PAGE = 4096;
const ALIGN = 64;
const MIN_PAYLOAD = 64 << 10; // smaller payloads travel in their frame
const MIN_SIZE = HEADER_SIZE + 2 * PAGE;

class Region {
  /** Opens the region of size bytes the host passed as fd 5; throws if fd 5 is not a memory file that large. */
  constructor(size) {
    if (!Number.isSafeInteger(size) || size < MIN_SIZE || size % PAGE !== 0 || size > 2 ** 40) {
      throw new Error(`region size ${size} is not a whole number of pages between ${MIN_SIZE} and 2^40`);
    }
    const st = fs.fstatSync(FD);
    if (!st.isFile()) throw new Error(`file descriptor ${FD} is not a memory file`);
    if (st.size < size) throw new Error(`the region's file has ${st.size} bytes, the host announced ${size}`);
    this.size = size;
    const half = Math.floor((size - HEADER_SIZE) / 2 / PAGE) * PAGE;
    this.reqLo = HEADER_SIZE;
    this.reqHi = HEADER_SIZE + half;
    this.respLo = HEADER_SIZE + half;
    this.respHi = size;
    this.blocks = []; // {off, end, seq} of the result blocks in use, by offset
    this.next = 0; // sequence number of the next result block
    this.freed = 0; // result blocks given back
    this.counter = Buffer.alloc(8);
    this.le = os.endianness() === 'LE';
  }

  /** The request payload at [off, off+n), copied out of the region. */
  request(off, n) {
    if (off < this.reqLo || off > this.reqHi || n > this.reqHi - off) {
      throw new Error(`request span [${off}, +${n}) is not within [${this.reqLo}, ${this.reqHi})`);
    }
    const buf = Buffer.allocUnsafe(n);
    let done = 0;
    while (done < n) {
      const got = fs.readSync(FD, buf, done, n - done, off + done);
      if (got === 0) throw new Error('the region ended early');
      done += got;
    }
    return buf;
  }

  /** The host's count of consumed results (a native-endian uint64 at offset 0). */
  consumed() {
    // An 8-byte pread is not promised to be one load: read until two agree.
    for (let prev = -1; ;) {
      fs.readSync(FD, this.counter, 0, 8, 0);
      const v = Number(this.le ? this.counter.readBigUInt64LE(0) : this.counter.readBigUInt64BE(0));
      if (v === prev) return v;
      prev = v;
    }
  }

  /** Reserves n bytes of the result half for the next response written and copies data there; returns the offset or -1 when there is no room. Call it in the order the responses are written. */
  put(data) {
    const n = data.length;
    const c = this.consumed();
    while (this.freed < c && this.freed < this.next) {
      const seq = this.freed++;
      const i = this.blocks.findIndex((b) => b.seq === seq);
      if (i >= 0) this.blocks.splice(i, 1);
    }
    const size = this.respHi - this.respLo;
    if (n > size) return -1;
    const need = Math.max(ALIGN, Math.ceil(n / ALIGN) * ALIGN);
    let at = 0;
    let i = 0;
    for (; i < this.blocks.length; i++) {
      if (this.blocks[i].off - at >= need) break;
      at = this.blocks[i].end;
    }
    if (i === this.blocks.length && size - at < need) return -1;
    this.blocks.splice(i, 0, { off: at, end: at + need, seq: this.next++ });
    const off = this.respLo + at;
    let done = 0;
    while (done < n) done += fs.writeSync(FD, data, done, n - done, off + done);
    return off;
  }
}

/** The region of size bytes, or null (fd 5 left alone) when fd 5 is not a memory file of that size. */
function openRegion(size, log) {
  try {
    return new Region(size);
  } catch (e) {
    log(`procpool-worker: not using the shared memory region: ${e.message}`);
    return null;
  }
}

module.exports = { Region, openRegion, MIN_PAYLOAD, FD };
