"""The worker's side of the procpool protocol: handshake, the reading
thread, handlers on a thread pool (or an asyncio loop), cancel, deadlines,
shutdown, panics."""
import asyncio
import errno
import inspect
import os
import queue
import sys
import threading
import time
import traceback

import msgpack

from . import _shared, _wire
from ._job import Cancelled, DeadlineExceeded, Error, Job
from ._outbox import Outbox

# Exit codes of Worker.run, as those of the Go SDK's worker.Main.
EXIT_OK = 0
EXIT_ERROR = 1  # a protocol error, or fds 3 and 4 missing
EXIT_PANIC = 70  # a handler crashed (EX_SOFTWARE): the host replaces the worker

_READ_SIZE = 256 << 10
_THREAD_IDLE = 10.0  # seconds an idle handler thread waits for a job before it ends
_PANIC_FRAMES = 10


def _log(msg):
    print(msg, file=sys.stderr, flush=True)  # the host logs stderr line by line


class ProtocolError(Exception):
    """The host sent something the protocol does not allow."""


class _Handler:
    __slots__ = ("name", "fn", "kind", "is_async", "wants_job")

    def __init__(self, name, fn, kind):
        self.name, self.fn, self.kind = name, fn, kind
        self.is_async = inspect.iscoroutinefunction(fn)
        self.wants_job = _positional_params(fn) >= 2


def _positional_params(fn):
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 2
    n = 0
    for p in sig.parameters.values():
        if p.kind == p.VAR_POSITIONAL:
            return 2
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return n


class Worker:
    """A procpool worker: register a handler per job type, then call run().

        worker = Worker()

        @worker.blob("sha512")
        def sha512(payload, job):
            return hashlib.sha512(payload).digest()

        @worker.value("add")
        def add(pair):
            return pair[0] + pair[1]

        worker.run()

    A BLOB handler receives the caller's bytes (a bytes-like object: bytes,
    or a read-only memoryview into the shared memory region, valid until the
    handler returns; copy it with bytes() to keep it) and returns a
    bytes-like object (None means empty). A VALUE handler receives the
    request's msgpack value decoded (a Go struct arrives as a dict keyed by
    its field names, []byte as bytes) and returns any value msgpack can
    encode. A handler may take a second argument, the Job: its cancel token
    and deadline. Async handlers (async def) run on one asyncio loop in a
    thread of its own; sync handlers on a pool of threads, a job per thread,
    so the reading thread keeps answering pings and cancels while they run.

    max_frame is the largest frame the worker accepts from the host
    (default 64 MiB); drain_timeout bounds each wait for running jobs when
    serving ends abnormally (the host went away, the grace ran out, a
    panic), default 0.5 s."""

    def __init__(self, max_frame=_wire.DEFAULT_MAX_FRAME, drain_timeout=0.5):
        if not 0 < max_frame <= 0xFFFFFFFF:
            raise ValueError("max_frame must be in (0, 2**32)")
        self.max_frame = max_frame
        self.drain_timeout = drain_timeout
        self._handlers = {}

    def handle(self, job_type, fn, kind):
        """Register fn for job_type; kind is "blob" or "value"."""
        if not isinstance(job_type, str) or not job_type:
            raise ValueError("the job type must be a non-empty string")
        if job_type in self._handlers:
            raise ValueError(f"job type {job_type!r} registered twice")
        if kind not in ("blob", "value"):
            raise ValueError(f"kind must be 'blob' or 'value', not {kind!r}")
        if not callable(fn):
            raise TypeError(f"the handler of {job_type!r} is not callable")
        self._handlers[job_type] = _Handler(job_type, fn, _wire.BLOB if kind == "blob" else _wire.VALUE)
        return fn

    def blob(self, job_type):
        """Decorator: register a BLOB handler, bytes in, bytes out."""
        return lambda fn: self.handle(job_type, fn, "blob")

    def value(self, job_type):
        """Decorator: register a VALUE handler, a msgpack value in and out."""
        return lambda fn: self.handle(job_type, fn, "value")

    @property
    def job_types(self):
        """The registered job types, sorted: what ready announces."""
        return sorted(self._handlers)

    def serve(self, in_fd=3, out_fd=4):
        """Serve the host over its pipes until it shuts the worker down or
        goes away; return the exit code (EXIT_OK, EXIT_ERROR, EXIT_PANIC).
        Both fds are made close-on-exec."""
        for fd in (in_fd, out_fd):
            try:
                os.fstat(fd)
            except OSError as e:
                _log(f"procpool_worker: file descriptor {fd} is not open ({e}): a worker must be started by a "
                     "procpool host, which passes its protocol pipes as fds 3 and 4")
                return EXIT_ERROR
            os.set_inheritable(fd, False)
        return _Conn(self, in_fd, out_fd).serve()

    def run(self):
        """serve(), then exit the process with its exit code."""
        code = self.serve()
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except Exception:
                pass
        sys.exit(code)


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


class _Conn:
    """One conversation with the host."""

    def __init__(self, worker, in_fd, out_fd):
        self.w = worker
        self.handlers = dict(worker._handlers)
        self.in_fd = in_fd
        self.events = queue.SimpleQueue()  # for the control loop: (kind, arg)
        self.out = Outbox(out_fd, lambda e: self.events.put(("write_failed", e)))
        self.lock = threading.Lock()
        self.jobs = {}  # running jobs by id
        self.running = 0  # jobs whose response is not yet queued
        self.refusing = False  # later requests are answered shutting_down
        self.shutdown = False
        self.panicked = False
        self.idle = threading.Condition(self.lock)
        self.pool = _Pool()
        self.loop = None
        self.shm = None
        self.features = ()  # the optional features negotiated in the handshake

    # --- control ---

    def serve(self):
        try:
            if not self.handshake():
                return EXIT_OK
        except ProtocolError as e:
            _log(f"procpool_worker: {e}")
            return EXIT_ERROR
        except OSError as e:
            if e.errno == errno.EPIPE:
                return EXIT_OK
            _log(f"procpool_worker: handshake: {e}")
            return EXIT_ERROR
        if any(h.is_async for h in self.handlers.values()):
            self.loop = asyncio.new_event_loop()
            threading.Thread(target=self.loop.run_forever, daemon=True, name="procpool-asyncio").start()
        threading.Thread(target=self.read_loop, daemon=True, name="procpool-reader").start()
        grace_end = None
        while True:
            if self.shutdown:
                with self.lock:
                    drained = self.running == 0
                if drained:
                    return self.finish(None, EXIT_OK)
            timeout = None if grace_end is None else max(0.0, grace_end - time.monotonic())
            try:
                kind, arg = self.events.get(timeout=timeout)
            except queue.Empty:
                return self.finish("the shutdown grace period expired", EXIT_OK)
            if kind == "eof":
                if self.shutdown:
                    continue  # shut down already: keep draining within the grace
                return self.finish("the host closed the connection", EXIT_OK)
            if kind == "protocol":
                _log(f"procpool_worker: {arg}")
                return self.finish("the worker is stopping after a protocol error", EXIT_ERROR)
            if kind == "write_failed":
                if arg.errno != errno.EPIPE:
                    _log(f"procpool_worker: writing to the host: {arg}")
                return self.finish("the host closed the connection", EXIT_OK)
            if kind == "panic":
                self.wait_idle(self.w.drain_timeout)  # the panic was not the other jobs'
                return self.finish("the worker is stopping after a handler panic", EXIT_PANIC)
            if kind == "shutdown" and grace_end is None:
                grace_end = time.monotonic() + arg
            # "idle": loop and look again

    def finish(self, cause, code):
        with self.lock:
            self.refusing = True
            jobs = list(self.jobs.values())
        if cause is not None:
            for j in jobs:
                j._cancel(cause)
            if not self.wait_idle(self.w.drain_timeout):
                with self.lock:
                    n = self.running
                _log(f"procpool_worker: {n} job(s) still running {self.w.drain_timeout}s after cancellation ({cause}); abandoning them")
        self.out.close()
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
        return code

    def wait_idle(self, timeout):
        end = time.monotonic() + timeout
        with self.lock:
            while self.running > 0:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.idle.wait(left)
        return True

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

    def handshake(self):
        header = self.read_exact(4, b"")
        if not header:
            return False  # the host went away before saying hello
        (n,) = _wire.HEADER.unpack(header)
        if n > self.w.max_frame:
            raise ProtocolError(f"hello of {n} bytes exceeds our frame limit of {self.w.max_frame}")
        body = self.read_exact(n, b"")
        if len(body) < n:
            raise ProtocolError("the host's stream ended inside hello")
        msg = _unpack(body)
        if not isinstance(msg, list) or len(msg) not in (3, 4, 5) or msg[0] != _wire.HELLO:
            raise ProtocolError(f"the host's first message is not hello: {msg!r:.80}")
        version, host_max = msg[1], msg[2]
        shared_size = msg[3] if len(msg) >= 4 else 0
        offered = msg[4] if len(msg) == 5 else None
        if offered is not None and not isinstance(offered, list):
            raise ProtocolError(f"hello's features are not a list: {offered!r:.80}")
        offered = [f.decode("utf-8", "replace") if isinstance(f, bytes) else f for f in offered or ()]
        ready = [_wire.READY, _wire.VERSION, self.w.max_frame, os.getpid(), self.job_types()]
        if version != _wire.VERSION:
            self.out.write_now(_wire.frame(ready))  # tells the host which version we speak
            raise ProtocolError(f"the host speaks protocol version {version}, this worker {_wire.VERSION}")
        if not isinstance(host_max, int) or host_max <= 0:
            raise ProtocolError(f"bad maxFrame {host_max!r} in hello")
        self.out.host_max_frame = host_max
        if isinstance(shared_size, int) and shared_size > 0:
            self.shm = _shared.map_region(shared_size, _log)
            if self.shm is not None:
                ready.append(shared_size)
                self.out.shm = self.shm
        # Answer the features offered that we support; none: ready as before.
        self.features = tuple(f for f in _wire.FEATURES if f in offered)
        if self.features:
            if len(ready) == 5:
                ready.append(0)  # no region, but features follow
            ready.append(list(self.features))
        self.out.batching = _wire.FEATURE_BATCH in self.features
        self.out.write_now(_wire.frame(ready))
        return True

    def job_types(self):
        return sorted(self.handlers)

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
                        self.dispatch(_unpack(body))
                    break
                msg = _unpack(memoryview(buf)[pos + 4:pos + 4 + n])
                pos += 4 + n
                self.dispatch(msg)
            del buf[:pos]

    def dispatch(self, msg):
        if not isinstance(msg, list) or not msg:
            raise ProtocolError(f"malformed message {msg!r:.80}")
        kind = msg[0]
        if kind == _wire.PING:
            if len(msg) != 2:
                raise ProtocolError("malformed ping")
            self.out.send(_wire.pong_frame(msg[1]))
        elif kind == _wire.REQUEST:
            self.start(msg)
        elif kind == _wire.BATCH_REQUEST:
            if _wire.FEATURE_BATCH not in self.features:
                raise ProtocolError("the host sent a batch request, but the handshake did not negotiate batches")
            if len(msg) != 2 or not isinstance(msg[1], list) or not 0 < len(msg[1]) <= _wire.MAX_BATCH:
                raise ProtocolError("malformed batch request")
            for item in msg[1]:
                if not isinstance(item, list) or not item or item[0] != _wire.REQUEST:
                    raise ProtocolError(f"a batch request holds something else than a request: {item!r:.80}")
                self.start(item)
        elif kind == _wire.CREDIT:
            if _wire.FEATURE_STREAM not in self.features:
                raise ProtocolError("the host sent a credit, but the handshake did not negotiate streams")
            if len(msg) != 3 or not isinstance(msg[2], int) or msg[2] < 0:
                raise ProtocolError("malformed credit")
            with self.lock:
                job = self.jobs.get(msg[1])  # unknown or answered: ignore
            if job is not None:
                job._grant(msg[2])
        elif kind == _wire.CANCEL:
            if len(msg) != 2:
                raise ProtocolError("malformed cancel")
            with self.lock:
                job = self.jobs.get(msg[1])  # unknown or answered: ignore
            if job is not None:
                job._cancel("cancelled by the host")
        elif kind == _wire.SHUTDOWN:
            if len(msg) != 2 or not isinstance(msg[1], int):
                raise ProtocolError("malformed shutdown")
            with self.lock:
                first = not self.shutdown
                self.shutdown = self.refusing = True
            if first:
                self.events.put(("shutdown", max(0, msg[1]) / 1000))
        else:
            raise ProtocolError(f"unexpected message of kind {kind!r} from the host")

    def start(self, msg):
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
            return _unpack(payload)
        except Exception as e:
            raise Error(_wire.CODE_BAD_PAYLOAD, f"decoding the value: {e}") from None

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

    def send_chunk(self, job, data):
        """Queue a chunk of job (called under the job's lock, so before its
        response); return the outbox's drain when the caller must write."""
        entry = self.out.chunk(job.id, job._kind, data)
        if entry is None:
            raise Error(_wire.CODE_HANDLER, f"a chunk of {len(data)} bytes exceeds the host's frame limit of {self.out.host_max_frame} bytes")
        return self.out.drain if self.out.enqueue(entry) else None

    def answer(self, job, h, result):
        if h.kind == _wire.VALUE:
            try:
                data = msgpack.packb(result, use_bin_type=True)
            except Exception as e:
                raise Error(_wire.CODE_HANDLER, f"encoding the result: {e}") from None
        elif result is None:
            data = b""
        elif isinstance(result, (bytes, bytearray, memoryview)):
            data = result
        else:
            raise Error(_wire.CODE_HANDLER, f"a blob handler returned {type(result).__name__}, not bytes")
        job._end()
        self.out.send_result(job.id, h.kind, data)

    def answer_error(self, job, e):
        job._end()
        self.out.send_error(job.id, e.code, e.message)

    def answer_panic(self, job, e):
        tb = traceback.format_exception(type(e), e, e.__traceback__)
        _log(f"procpool_worker: panic in job {job.id} of type {job.job_type!r}:\n{''.join(tb).rstrip()}")
        frames = traceback.format_tb(e.__traceback__)[-_PANIC_FRAMES:]
        what = "".join(traceback.format_exception_only(type(e), e)).strip()
        # The message is the first line; the detail, the payload, has the
        # exception in full and the last frames of its traceback.
        summary = "panic: " + what.split("\n", 1)[0] + (" [...]" if "\n" in what else "")
        detail = "panic: " + what + "\n"
        if frames:
            detail += "\nTraceback (most recent call last):\n" + "".join(frames).rstrip()
        detail = detail.encode("utf-8", "replace")[:_wire.MAX_ERR_MESSAGE]
        with self.lock:
            first = not self.panicked
            self.panicked = True
        job._end()
        self.out.send_error(job.id, _wire.CODE_PANIC, summary, detail)
        if first:
            self.events.put(("panic", None))

    def complete(self, job):
        with self.lock:
            self.jobs.pop(job.id, None)
            self.running -= 1
            if self.running == 0:
                self.idle.notify_all()
                notify = self.shutdown
            else:
                notify = False
        if notify:
            self.events.put(("idle", None))


def _unpack(body):
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=False, unicode_errors="surrogateescape")
    except Exception as e:
        raise ProtocolError(f"malformed frame: {e}") from None
