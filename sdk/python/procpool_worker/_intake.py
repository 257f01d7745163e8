"""_Conn's intake (see _server.py): the reading of fd 3 frame by frame on
the reading thread, and the host's requests, alone or in a batch, becoming
jobs whose handlers run on a thread pool or the asyncio loop."""
import asyncio
import os
import queue
import threading
import traceback

import msgpack

from . import _wire
from ._job import Cancelled, Error, Job
from ._wire import ProtocolError

_READ_SIZE = 256 << 10
_THREAD_IDLE = 10.0  # seconds an idle handler thread waits for a job before it ends


class _Pool:
    """Threads that run sync handlers: a job goes to an idle thread, or to a
    new one when none is idle (the host bounds the jobs in flight)."""

    def __init__(self):
        self._q = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, fn, *args):
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1
        if spawn:
            threading.Thread(target=self._run, args=(fn, args), daemon=True, name="procpool-job").start()
        else:
            self._q.put((fn, args))

    def _run(self, fn, args):
        while True:
            fn(*args)
            fn = args = None
            with self._lock:
                self._idle += 1
            try:
                fn, args = self._q.get(timeout=_THREAD_IDLE)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # nobody claimed us: end
                        self._idle -= 1
                        return
                fn, args = self._q.get()  # claimed just now: the job is coming


class _Intake:
    """_Conn's methods that read fd 3 and start and run the jobs it asks for."""

    # --- reading ---

    def read_exact(self, n, buf):
        """Read n bytes, starting with what buf already holds; b"" at a
        clean end of stream before any."""
        if len(buf) >= n:
            return buf
        out = bytearray(n)
        have = len(buf)
        out[:have] = buf
        mv = memoryview(out)
        while have < n:
            got = os.readv(self.in_fd, [mv[have:]])
            if got == 0:
                if have == 0:
                    return b""
                raise ProtocolError("the host's stream ended inside a frame")
            have += got
        return out

    def read_loop(self):
        try:
            self._read_loop()
        except ProtocolError as e:
            self.events.put(("protocol", str(e)))
        except OSError as e:
            self.events.put(("protocol", f"reading from the host: {e}"))
        except Exception as e:  # a bug of ours: say so, and stop
            self.events.put(("protocol", f"internal error reading from the host: {traceback.format_exc()}"))

    def _read_loop(self):
        buf = bytearray()
        limit = self.w.max_frame
        while True:
            chunk = os.read(self.in_fd, _READ_SIZE)
            if not chunk:
                if buf:
                    raise ProtocolError("the host's stream ended inside a frame")
                self.events.put(("eof", None))
                return
            buf += chunk
            pos, end = 0, len(buf)
            while end - pos >= 4:
                (n,) = _wire.HEADER.unpack_from(buf, pos)
                if n > limit:
                    raise ProtocolError(f"frame of {n} bytes exceeds our limit of {limit}")
                if end - pos - 4 < n:
                    if n > _READ_SIZE:  # a large frame: read the rest into a buffer of its own
                        body = self.read_exact(n, bytes(buf[pos + 4:end]))
                        pos = end
                        self.dispatch(_wire.unpack(body))
                    break
                msg = _wire.unpack(memoryview(buf)[pos + 4:pos + 4 + n])
                pos += 4 + n
                self.dispatch(msg)
            del buf[:pos]

    def start(self, msg, batch=None):
        """Start the job that request msg asks for, or answer it at once.
        With batch (a deque), a sync handler's job is appended to it for
        the batch's runners (run_batch) instead of getting a thread."""
        if len(msg) == 6:
            _, job_id, job_type, timeout_ms, pkind, payload = msg
            meta = None
        elif len(msg) == 7:
            _, job_id, job_type, timeout_ms, meta, pkind, payload = msg
            if meta is not None and not isinstance(meta, dict):
                raise ProtocolError("malformed request: its meta is not a map")
            for key, typ in (("attempt", int), ("credit", int), ("traceparent", str), ("tracestate", str)):
                if meta and key in meta and not isinstance(meta[key], typ):
                    raise ProtocolError(f"malformed request: meta {key} {meta[key]!r:.40}")
        else:
            raise ProtocolError("malformed request")
        if not isinstance(job_id, int) or not isinstance(timeout_ms, int) or pkind not in (0, 1, 2, 3):
            raise ProtocolError("malformed request")
        if pkind >= 2:
            if self.shm is None:
                raise ProtocolError(f"request {job_id} has its payload in shared memory, which the handshake did not set up")
            if not (isinstance(payload, list) and len(payload) == 2 and all(isinstance(x, int) and x >= 0 for x in payload)):
                raise ProtocolError(f"request {job_id}: malformed shared memory span")
            try:
                payload = self.shm.request(payload[0], payload[1])
            except ValueError as e:
                raise ProtocolError(f"request {job_id}: {e}") from None
        elif pkind == _wire.BLOB:
            if payload is None:
                payload = b""
            elif isinstance(payload, str):
                payload = payload.encode("utf-8", "surrogateescape")
            elif not isinstance(payload, bytes):
                raise ProtocolError(f"request {job_id}: a blob payload that is not bin")
        h = self.handlers.get(job_type)
        with self.lock:
            if self.panicked:
                return  # lost with the worker, as on any crash
            if self.refusing:
                err = (_wire.CODE_SHUTTING_DOWN, "the worker is shutting down")
            elif h is None:
                err = (_wire.CODE_UNKNOWN_JOB_TYPE, f"no handler for job type {job_type!r}")
            elif job_id in self.jobs:
                raise ProtocolError(f"the host reused the id {job_id} of a running job")
            else:
                err = None
                sink = self.send_chunk if _wire.FEATURE_STREAM in self.features else None
                job = Job(job_id, job_type, timeout_ms, meta, sink, h.kind)
                self.jobs[job_id] = job
                self.running += 1
        if err is not None:
            self.out.send_error(job_id, *err)
            return
        if h.is_async:
            asyncio.run_coroutine_threadsafe(self.run_async(job, h, pkind, payload), self.loop)
        elif batch is not None:
            batch.append((job, h, pkind, payload))
        else:
            self.pool.submit(self.run_sync, job, h, pkind, payload)

    # --- running ---

    def argument(self, h, pkind, payload):
        """The handler's argument, or raises Error(bad_payload). As in the Go
        SDK, the request's payload kind is not checked: a BLOB handler given
        a value gets its msgpack encoding, a VALUE handler given a blob
        decodes its bytes as msgpack."""
        if h.kind == _wire.BLOB:
            if pkind == _wire.VALUE:  # decoded with the frame: encode it again
                return msgpack.packb(payload, use_bin_type=True)
            return payload
        if pkind == _wire.VALUE:
            return payload  # decoded with the frame
        try:
            return _wire.unpack(payload)
        except Exception as e:
            raise Error(_wire.CODE_BAD_PAYLOAD, f"decoding the value: {e}") from None

    def run_batch(self, items):
        """One of a batch's runners: take the batch's jobs in order until
        none is left (see Worker's batch_concurrency). A job cancelled or
        past its deadline while it waited is answered so without running;
        after a panic no waiting job starts: it is lost with the worker, as
        the requests it never read are, for the host to fail or retry."""
        while True:
            try:
                job, h, pkind, payload = items.popleft()
            except IndexError:
                return
            if self.panicked:
                self.complete(job)
                continue
            try:
                job.check()
            except Error as e:
                self.answer_error(job, e)
                self.complete(job)
                continue
            self.run_sync(job, h, pkind, payload)

    def run_sync(self, job, h, pkind, payload):
        try:
            arg = self.argument(h, pkind, payload)
            result = h.fn(arg, job) if h.wants_job else h.fn(arg)
            self.answer(job, h, result)
        except Error as e:
            self.answer_error(job, e)
        except BaseException as e:
            self.answer_panic(job, e)
        finally:
            self.complete(job)

    async def run_async(self, job, h, pkind, payload):
        job._bind_task(asyncio.current_task(), self.loop)
        timer = None
        if job.deadline is not None:
            timer = self.loop.call_at(self.loop.time() + job.remaining(), job._cancel, _wire.CODE_DEADLINE)
        try:
            arg = self.argument(h, pkind, payload)
            result = await (h.fn(arg, job) if h.wants_job else h.fn(arg))
            self.answer(job, h, result)
        except Error as e:
            self.answer_error(job, e)
        except asyncio.CancelledError:
            self.answer_error(job, job._stop_error() if job._event.is_set() else Cancelled())
        except BaseException as e:
            self.answer_panic(job, e)
        finally:
            if timer is not None:
                timer.cancel()
            self.complete(job)
