"""The writer of fd 4: frames are queued in order and written by whichever
thread queues one while nobody is writing, so that a lone job writes its
own response at once and, under load, one write carries many. With the
"batch" feature, consecutive responses in the queue leave in batch
responses; the queue's order is kept on the wire, so that the result blocks
of the shared region are numbered in the order they were reserved."""
import os
import threading

from . import _shared, _wire

# Besides its payload, a response frame holds at most this many bytes: only
# results that would fit in a frame go through the shared region.
SHARED_ENVELOPE = 1 << 10
IOV_MAX = 1024


class _Entry:
    """A queued frame: its parts (bytes-like, the first starting with the
    4-byte header) and whether it is a response."""

    __slots__ = ("parts", "size", "response")

    def __init__(self, parts, response):
        self.parts = parts
        self.size = sum(len(p) for p in parts)
        self.response = response


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
        self.batching = False  # the "batch" feature was negotiated

    def write_now(self, data):
        """Write data at once; only for the handshake, before any send."""
        _write_all(self._fd, [data])

    def send(self, data):
        """Queue a whole frame (bytes) that is not a response, and write it
        unless someone is."""
        if self.enqueue(_Entry((data,), False)):
            self.drain()

    def send_error(self, job_id, code, message, detail=b""):
        """Queue an error response; its detail is dropped, and then its
        message cut, when the frame would exceed the host's limit."""
        f = _wire.error_frame(job_id, code, message, detail)
        if len(f) - 4 > self.host_max_frame and detail:
            f = _wire.error_frame(job_id, code, message)
        if len(f) - 4 > self.host_max_frame:
            f = _wire.error_frame(job_id, code, message[:max(0, self.host_max_frame - 64)])
        if self.enqueue(_Entry((f,), True)):
            self.drain()

    def send_result(self, job_id, kind, payload):
        """Queue the successful response to job_id: kind is BLOB or VALUE,
        payload the blob's bytes or the value's msgpack encoding (any
        bytes-like object). A large payload goes through the shared region
        if there is room; one too large for the host's frame limit is
        answered too_large."""
        entry = self._entry(_wire.response_prefix(job_id, kind), kind, payload, True)
        if entry is None:
            self.send_error(job_id, _wire.CODE_TOO_LARGE,
                            f"the response ({len(payload)} bytes of payload) exceeds the host's frame limit of {self.host_max_frame} bytes")
        elif self.enqueue(entry):
            self.drain()

    def chunk(self, job_id, kind, payload):
        """The queue entry of a chunk of job_id (its bytes copied when it
        does not go through the shared region), or None when it is too
        large for the host's frame limit. The caller queues it with
        enqueue, then drains if told to."""
        return self._entry(_wire.chunk_prefix(job_id, kind), kind, bytes(payload), False)

    def _entry(self, prefix, kind, payload, response):
        n = len(payload)
        shm = self.shm
        if shm is not None and _shared.MIN_PAYLOAD <= n <= self.host_max_frame - SHARED_ENVELOPE:
            # Reserved here and queued under the same lock by enqueue:
            # blocks are numbered in the order their frames are written.
            return _SharedEntry(prefix, kind, payload, response)
        head = prefix[:-1] + bytes((kind,))
        if kind == _wire.BLOB:
            head += _wire.bin_header(n)
        size = len(head) + n
        if size > self.host_max_frame:
            return None
        if n <= 4096:
            return _Entry((_wire.HEADER.pack(size) + head + payload,), response)
        return _Entry((_wire.HEADER.pack(size) + head, payload), response)

    def enqueue(self, entry):
        """Queue entry; True if the caller became the writer and must call
        drain."""
        with self._lock:
            if self._closed or self._failed:
                return False
            if isinstance(entry, _SharedEntry):
                entry = entry.place(self.shm)
            self._queue.append(entry)
            if self._writing:
                return False
            self._writing = True
            return True

    def drain(self):
        while True:
            with self._lock:
                batch = self._queue
                if not batch or self._failed:
                    self._writing = False
                    self._idle.notify_all()
                    return
                self._queue = []
            try:
                _write_all(self._fd, self._parts(batch))
            except OSError as e:
                with self._lock:
                    self._failed = True
                    self._queue = []
                    self._writing = False
                    self._idle.notify_all()
                self._on_fail(e)
                return

    def _parts(self, entries):
        """The parts to write for entries, runs of responses as batch
        responses when batching."""
        if not self.batching:
            return [p for e in entries for p in e.parts]
        out, run = [], []
        for e in entries:
            if e.response:
                run.append(e)
                continue
            self._batch(run, out)
            run = []
            out.extend(e.parts)
        self._batch(run, out)
        return out

    def _batch(self, run, out):
        """Append run's responses to out in as few batch responses as the
        host's frame limit and MAX_BATCH allow; a lone one as it is."""
        i = 0
        while i < len(run):
            j, body = i, 0
            while j < len(run) and j - i < _wire.MAX_BATCH:
                nb = body + run[j].size - 4
                if 3 + 2 + nb > self.host_max_frame:  # header of the items' array: 3 bytes at most
                    break
                body, j = nb, j + 1
            if j - i <= 1:
                out.extend(run[i].parts)
                i += 1
                continue
            out.append(_wire.batch_prefix(j - i, body))
            for e in run[i:j]:
                out.append(memoryview(e.parts[0])[4:])
                out.extend(e.parts[1:])
            i = j

    def close(self):
        """Wait for the writer of the moment; nothing is written afterwards."""
        with self._lock:
            self._closed = True
            while self._writing:
                self._idle.wait()


class _SharedEntry:
    """A payload for the shared region, placed when it is queued."""

    __slots__ = ("prefix", "kind", "payload", "response")

    def __init__(self, prefix, kind, payload, response):
        self.prefix, self.kind, self.payload, self.response = prefix, kind, payload, response

    def place(self, shm):
        """The entry to queue: its payload in the region, or in the frame when
        the region has no room."""
        n = len(self.payload)
        off = shm.reserve(n)
        if off is None:
            head = self.prefix[:-1] + bytes((self.kind,))
            if self.kind == _wire.BLOB:
                head += _wire.bin_header(n)
            return _Entry((_wire.HEADER.pack(len(head) + n) + head, self.payload), self.response)
        shm.write(off, self.payload)
        body = self.prefix[:-1] + bytes((self.kind | 2,)) + b"\x92" + _wire._pack_int(off) + _wire._pack_int(n)
        return _Entry((_wire.HEADER.pack(len(body)) + body,), self.response)


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
