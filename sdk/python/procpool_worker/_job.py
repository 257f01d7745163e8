"""A running job as its handler sees it, and the errors a handler raises."""
import threading
import time

from . import _wire


class Error(Exception):
    """An error with a code, raised by a handler to choose the error code of
    its response; the host's *RemoteError carries code and message as they
    are. Codes are free-form strings; those of the protocol (see
    docs/protocol.md, section 9) have fixed meanings. Any other exception a
    handler raises is a crash: it is answered with code "panic" and the
    worker exits non-zero."""

    def __init__(self, code, message=""):
        super().__init__(message)
        self.code = code or _wire.CODE_HANDLER
        self.message = str(message)

    def __str__(self):
        return f"{self.code}: {self.message}" if self.message else self.code


class Cancelled(Error):
    """Raised by Job.check() once the host cancelled the job (or is gone, or
    the shutdown grace ran out): answered with code "cancelled"."""

    def __init__(self, message="cancelled by the host"):
        super().__init__(_wire.CODE_CANCELLED, message)


class DeadlineExceeded(Error):
    """Raised by Job.check() once the job's timeout has elapsed: answered
    with code "deadline"."""

    def __init__(self, message="the job's timeout elapsed"):
        super().__init__(_wire.CODE_DEADLINE, message)


class Job:
    """One request, as its handler sees it: its id (an int, up to 2**64-1),
    job type, deadline, attempt (1 for the first run, more when the host runs
    it again after a failure), the caller's W3C trace context (traceparent
    and tracestate, "" when the host sent none), and the cancel token. When
    the host asked for partial results (streaming is True), send() (in async
    handlers: await asend()) sends one before the handler returns.

    A job is stopped when the host cancels it, when its timeout (the
    request's timeoutMs, counted from the request's arrival) elapses, when
    the shutdown grace period runs out and when the host goes away. A sync
    handler learns of it through cancelled, check(), wait() and sleep(); an
    async handler's task is also cancelled (asyncio.CancelledError is raised
    at its current await)."""

    __slots__ = ("id", "job_type", "timeout", "deadline", "attempt", "traceparent", "tracestate", "streaming",
                 "_event", "_cause", "_lock", "_task", "_loop", "_credit", "_cv", "_done", "_waiters", "_sink", "_kind")

    def __init__(self, job_id, job_type, timeout_ms, meta=None, sink=None, kind=_wire.BLOB):
        self.id = job_id
        self.job_type = job_type
        meta = meta or {}
        #: 1 for the job's first run, more when the host runs it again.
        self.attempt = max(1, meta.get("attempt") or 1)
        #: The caller's W3C trace context, "" when the host sent none.
        self.traceparent = meta.get("traceparent") or ""
        self.tracestate = meta.get("tracestate") or ""
        credit = meta.get("credit") or 0
        #: True when the host asked for partial results: send() may be called.
        self.streaming = sink is not None and credit > 0
        self._credit = credit if self.streaming else 0
        self._sink = sink  # sends a chunk: sink(job, data), called under self._lock
        self._kind = kind
        self._done = False
        self._waiters = []  # futures of asend() calls waiting for credit
        #: The job's time budget in seconds, or None for none.
        self.timeout = timeout_ms / 1000 if timeout_ms > 0 else None
        #: time.monotonic() at which the job's timeout elapses, or None.
        self.deadline = time.monotonic() + self.timeout if timeout_ms > 0 else None
        self._event = threading.Event()
        self._cause = None
        self._lock = threading.Lock()
        self._task = None
        self._loop = None
        self._cv = threading.Condition(self._lock)

    @property
    def cancelled(self):
        """True once the job should stop: cancelled, past its deadline, or
        the worker is stopping."""
        return self._event.is_set() or (self.deadline is not None and time.monotonic() >= self.deadline)

    @property
    def cause(self):
        """Why the job should stop ("deadline" once its deadline passed), or
        None while it may go on."""
        if self._event.is_set():
            return self._cause
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return _wire.CODE_DEADLINE
        return None

    def remaining(self):
        """Seconds left before the deadline (never negative), or None."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def check(self):
        """Raise Cancelled or DeadlineExceeded if the job should stop."""
        if self._event.is_set():
            raise self._stop_error()
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise DeadlineExceeded(f"the job's timeout of {self.timeout * 1000:.0f} ms elapsed")

    def wait(self, timeout=None):
        """Block until the job should stop or timeout seconds passed; return
        True if it should stop."""
        rem = self.remaining()
        if rem is not None and (timeout is None or rem < timeout):
            timeout = rem
        self._event.wait(timeout)
        return self.cancelled

    def sleep(self, seconds):
        """time.sleep(seconds), cut short (by raising as check() does) when
        the job should stop."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            if self.wait(left):
                self.check()

    def trace_headers(self):
        """The trace context as a dict of header names to values, for a
        propagator's extract() (OpenTelemetry's TraceContextTextMapPropagator
        takes it as its carrier)."""
        h = {}
        if self.traceparent:
            h["traceparent"] = self.traceparent
        if self.tracestate:
            h["tracestate"] = self.tracestate
        return h

    def send(self, chunk):
        """Send a partial result before the handler returns: bytes in a BLOB
        handler, any msgpack-encodable value in a VALUE handler. Blocks while
        the host's window of chunks is used up, until it grants more; raises
        Cancelled or DeadlineExceeded when the job must stop meanwhile, and
        Error when the host did not ask for partial results (streaming is
        False) or the handler has returned."""
        data = self._encode_chunk(chunk)
        with self._lock:
            while True:
                self._check_send()
                if self._credit > 0:
                    drain = self._sink(self, data)
                    self._credit -= 1
                    break
                rem = self.remaining()
                self._cv.wait(rem)
        if drain:
            drain()

    async def asend(self, chunk):
        """send() for async handlers: awaits credit instead of blocking."""
        import asyncio
        data = self._encode_chunk(chunk)
        while True:
            with self._lock:
                self._check_send()
                if self._credit > 0:
                    drain = self._sink(self, data)
                    self._credit -= 1
                    break
                fut = asyncio.get_running_loop().create_future()
                self._waiters.append((asyncio.get_running_loop(), fut))
            try:
                await asyncio.wait_for(fut, self.remaining())
            except asyncio.TimeoutError:
                pass
        if drain:
            drain()

    def _encode_chunk(self, chunk):
        if not self.streaming:
            raise Error(_wire.CODE_HANDLER, "the host did not ask for this job's partial results")
        if self._kind == _wire.VALUE:
            import msgpack
            return msgpack.packb(chunk, use_bin_type=True)
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise Error(_wire.CODE_HANDLER, f"a blob chunk must be bytes, not {type(chunk).__name__}")
        return chunk

    def _check_send(self):
        """Under self._lock: raise if no chunk may be sent now."""
        if self._done:
            raise Error(_wire.CODE_HANDLER, "the job's stream ended with its response")
        self.check()

    def _grant(self, n):
        """The host grants n more chunks."""
        with self._lock:
            if self._done or not self.streaming:
                return
            self._credit += n
            self._wake()

    def _end(self):
        """The handler returned: no chunk from now on. The response is
        queued after this, so after every chunk."""
        with self._lock:
            self._done = True
            self._wake()

    def _wake(self):
        """Under self._lock: wake the senders waiting for credit."""
        self._cv.notify_all()
        waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_resolve, fut)

    def _stop_error(self):
        if self._cause == _wire.CODE_DEADLINE:
            return DeadlineExceeded(f"the job's timeout of {self.timeout * 1000:.0f} ms elapsed")
        return Cancelled(self._cause or "cancelled by the host")

    def _cancel(self, cause):
        """Stop the job with cause (a description); the first cause wins."""
        with self._lock:
            if self._event.is_set():
                return
            self._cause = cause
            self._event.set()
            self._wake()
            task, loop = self._task, self._loop
        if task is not None:
            loop.call_soon_threadsafe(task.cancel)

    def _bind_task(self, task, loop):
        """Attach an async handler's task, cancelling it at once if the job
        was stopped before."""
        with self._lock:
            self._task, self._loop = task, loop
            stopped = self._event.is_set()
        if stopped:
            task.cancel()

    def __repr__(self):
        return f"Job(id={self.id}, job_type={self.job_type!r})"


def _resolve(fut):
    if not fut.done():
        fut.set_result(None)
