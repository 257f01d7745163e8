"""The writer of fd 4: frames are queued in order and written by whichever
thread queues one while nobody is writing, so that a lone job writes its
own response at once and, under load, one write carries many."""
import os
import threading

from . import _shared, _wire

# Besides its payload, a response frame holds at most this many bytes: only
# results that would fit in a frame go through the shared region.
SHARED_ENVELOPE = 1 << 10
IOV_MAX = 1024


class Outbox:
    def __init__(self, fd, on_fail):
        self._fd = fd
        self._on_fail = on_fail  # called once with the OSError of a failed write
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._queue = []
        self._writing = False
        self._closed = False
        self._failed = False
        self.host_max_frame = _wire.DEFAULT_MAX_FRAME
        self.shm = None

    def write_now(self, data):
        """Write data at once; only for the handshake, before any send."""
        _write_all(self._fd, [data])

    def send(self, data):
        """Queue a whole frame (bytes) and write it unless someone is."""
        with self._lock:
            if self._closed or self._failed:
                return
            self._queue.append(data)
            if self._writing:
                return
            self._writing = True
        self._drain()

    def send_result(self, job_id, kind, payload):
        """Queue the successful response to job_id: kind is BLOB or VALUE,
        payload the blob's bytes or the value's msgpack encoding (any
        bytes-like object). A large payload goes through the shared region
        if there is room; one too large for the host's frame limit is
        answered too_large."""
        n = len(payload)
        shm = self.shm
        if shm is not None and _shared.MIN_PAYLOAD <= n <= self.host_max_frame - SHARED_ENVELOPE:
            with self._lock:
                if self._closed or self._failed:
                    return
                # Allocated and queued under one lock: blocks are numbered in
                # the order their frames are written.
                off = shm.reserve(n)
                if off is not None:
                    shm.write(off, payload)
                    body = _wire.response_prefix(job_id, kind | 2) + b"\x92" + _pack_uint(off) + _pack_uint(n)
                    self._queue.append(_wire.HEADER.pack(len(body)) + body)
                    if self._writing:
                        return
                    self._writing = True
            if off is not None:
                self._drain()
                return
        head = _wire.response_prefix(job_id, kind)
        if kind == _wire.BLOB:
            head += _wire.bin_header(n)
        size = len(head) + n
        if size > self.host_max_frame:
            self.send(_wire.error_frame(job_id, _wire.CODE_TOO_LARGE,
                                        f"the response ({n} bytes of payload) exceeds the host's frame limit of {self.host_max_frame} bytes"))
            return
        if n <= 4096:
            self.send(_wire.HEADER.pack(size) + head + payload)
            return
        with self._lock:
            if self._closed or self._failed:
                return
            self._queue.append(_wire.HEADER.pack(size) + head)
            self._queue.append(payload)
            if self._writing:
                return
            self._writing = True
        self._drain()

    def _drain(self):
        while True:
            with self._lock:
                batch = self._queue
                if not batch or self._failed:
                    self._writing = False
                    self._idle.notify_all()
                    return
                self._queue = []
            try:
                _write_all(self._fd, batch)
            except OSError as e:
                with self._lock:
                    self._failed = True
                    self._queue = []
                    self._writing = False
                    self._idle.notify_all()
                self._on_fail(e)
                return

    def close(self):
        """Wait for the writer of the moment; nothing is written afterwards."""
        with self._lock:
            self._closed = True
            while self._writing:
                self._idle.wait()


def _pack_uint(n):
    return _wire._pack_int(n)


def _write_all(fd, parts):
    """Write every bytes-like object of parts, in order, whole."""
    i = 0
    while i < len(parts):
        chunk = parts[i:i + IOV_MAX]
        if len(chunk) == 1:
            n = os.write(fd, chunk[0])
        else:
            n = os.writev(fd, chunk)
        # Skip what was written; resume inside a part written in part.
        for p in chunk:
            m = len(p)
            if n >= m:
                n -= m
                i += 1
                continue
            parts = [memoryview(p)[n:]] + list(parts[i + 1:])
            i = 0
            break
