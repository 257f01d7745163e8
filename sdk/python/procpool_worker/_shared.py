"""The worker's side of the shared memory region on file descriptor 5
(docs/protocol.md section 13): requests are read in place from the request
half, large results are written into the result half and freed in order as
the host's `consumed` counter grows."""
import mmap
import os
import stat

FD = 5
HEADER_SIZE = 4096
PAGE = 4096
ALIGN = 64
MIN_PAYLOAD = 64 << 10  # smaller payloads travel in their frame
MIN_SIZE = HEADER_SIZE + 2 * PAGE


class Region:
    """A mapped region. request() may be called from any thread; reserve()
    only under the lock that orders the worker's frames on fd 4."""

    def __init__(self, size):
        if size < MIN_SIZE or size % PAGE or size > 1 << 40:
            raise ValueError(f"region size {size} is not a whole number of pages between {MIN_SIZE} and 2^40")
        st = os.fstat(FD)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"file descriptor {FD} is not a memory file")
        if st.st_size < size:
            raise ValueError(f"the region's file has {st.st_size} bytes, the host announced {size}")
        self._mm = mmap.mmap(FD, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.size = size
        self._mem = memoryview(self._mm)
        # A native-endian uint64 at offset 0, updated atomically by the host:
        # an aligned 8-byte load through a 'Q' view is a single load.
        self._consumed = self._mem[0:8].cast("Q")
        half = (size - HEADER_SIZE) // 2 // PAGE * PAGE
        self.req_lo, self.req_hi = HEADER_SIZE, HEADER_SIZE + half
        self.resp_lo, self.resp_hi = HEADER_SIZE + half, size
        self._blocks = []  # [offset, end, seq] of the result blocks in use, by offset
        self._next = 0  # sequence number of the next result block
        self._freed = 0  # result blocks given back

    def request(self, off, n):
        """The request payload at [off, off+n), read-only, in place."""
        if off < self.req_lo or off > self.req_hi or n > self.req_hi - off:
            raise ValueError(f"request span [{off}, +{n}) is not within [{self.req_lo}, {self.req_hi})")
        return self._mem[off:off + n].toreadonly()

    def reserve(self, n):
        """The offset of n bytes of the result half for the next response
        written, or None when there is no room."""
        consumed = self._consumed[0]
        while self._freed < consumed and self._freed < self._next:
            seq = self._freed
            for i, b in enumerate(self._blocks):
                if b[2] == seq:
                    del self._blocks[i]
                    break
            self._freed += 1
        size = self.resp_hi - self.resp_lo
        if n > size:
            return None
        n = max(ALIGN, (n + ALIGN - 1) & ~(ALIGN - 1))
        at, i = 0, 0
        for i, b in enumerate(self._blocks):
            if b[0] - at >= n:
                break
            at = b[1]
        else:
            i = len(self._blocks)
            if size - at < n:
                return None
        self._blocks.insert(i, [at, at + n, self._next])
        self._next += 1
        return self.resp_lo + at

    def write(self, off, data):
        self._mem[off:off + len(data)] = data


def map_region(size, log):
    """The host's region of size bytes, mapped, with fd 5 closed; or None
    (fd 5 left alone) when it is not a memory file of that size."""
    try:
        r = Region(size)
    except (OSError, ValueError) as e:
        log(f"procpool_worker: not using the shared memory region: {e}")
        return None
    os.close(FD)  # the mapping stays; processes the handlers start do not inherit it
    return r
