"""The worker's side of the procpool protocol: Worker, and its conversation
with the host (_Conn): the control loop, the handshake, the host's messages,
panics, shutdown and the end. _Conn's other methods are in _intake.py
(reading fd 3, requests, running handlers) and _answers.py (a job's chunks
and response)."""
import asyncio
import errno
import inspect
import os
import collections
import queue
import sys
import threading
import time
import traceback

from . import _shared, _wire
from ._answers import _Answers
from ._intake import _Intake, _Pool
from ._outbox import Outbox
from ._wire import ProtocolError

# Exit codes of Worker.run, as those of the Go SDK's worker.Main.
EXIT_OK = 0
EXIT_ERROR = 1  # a protocol error, or fds 3 and 4 missing
EXIT_PANIC = 70  # a handler crashed (EX_SOFTWARE): the host replaces the worker
_PANIC_FRAMES = 10  # frames of its traceback in a panic's detail


def _log(msg):
    print(msg, file=sys.stderr, flush=True)  # the host logs stderr line by line


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
    The sync jobs of one batch request (the host's Map) run in order on at
    most batch_concurrency threads at once (default 4): a thread per job
    would cost each of a thousand small jobs a hand-off and a share of the
    GIL's contention. A job whose cancel or deadline comes while it waits
    for its turn is answered without running.

    max_frame is the largest frame the worker accepts from the host
    (default 64 MiB); drain_timeout bounds each wait for running jobs when
    serving ends abnormally (the host went away, the grace ran out, a
    panic), default 0.5 s."""

    def __init__(self, max_frame=_wire.DEFAULT_MAX_FRAME, drain_timeout=0.5, batch_concurrency=4):
        if not 0 < max_frame <= 0xFFFFFFFF:
            raise ValueError("max_frame must be in (0, 2**32)")
        if not isinstance(batch_concurrency, int) or batch_concurrency < 1:
            raise ValueError("batch_concurrency must be an int of at least 1")
        self.batch_concurrency = batch_concurrency
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


class _Conn(_Intake, _Answers):
    """One conversation with the host. Its methods are in three files: the
    conversation here, the intake in _intake.py, the answers in
    _answers.py."""

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

    # --- the host's messages ---

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
        msg = _wire.unpack(body)
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
            batch = collections.deque()
            for item in msg[1]:
                if not isinstance(item, list) or not item or item[0] != _wire.REQUEST:
                    raise ProtocolError(f"a batch request holds something else than a request: {item!r:.80}")
                self.start(item, batch)
            for _ in range(min(len(batch), self.w.batch_concurrency)):
                self.pool.submit(self.run_batch, batch)
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

    # --- ending ---

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
