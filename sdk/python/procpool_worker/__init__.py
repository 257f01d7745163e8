"""procpool_worker: the Python SDK for procpool worker processes.

A worker registers a handler per job type and serves the procpool host that
started it, over the pipes the host passes as file descriptors 3 and 4
(docs/protocol.md in the procpool repository is the protocol):

    import hashlib
    import procpool_worker

    worker = procpool_worker.Worker()

    @worker.blob("sha512")              # BLOB: bytes in, bytes out
    def sha512(payload):
        return hashlib.sha512(payload).digest()

    @worker.value("sha512v")            # VALUE: a msgpack value in and out
    def sha512v(arg, job):              # a Go struct arrives as a dict
        if arg["Size"] < 0:
            raise procpool_worker.Error("bad_size", f"size {arg['Size']}")
        job.check()                     # raises once cancelled or past the deadline
        return hashlib.sha512(bytes(arg["Size"])).digest()

    worker.run()                        # serve until the host stops us, then exit

Handlers run off the reading thread (sync ones on a thread pool, async ones
on an asyncio loop), so pings are answered while they run. A handler stops
a job by raising Error (its code reaches the caller's *RemoteError), or
Cancelled / DeadlineExceeded (job.check() raises them); any other exception
is a crash: the job is answered with code "panic" and the traceback, and
the worker exits with EXIT_PANIC (70) so that the host replaces it.

Payloads of 64 KiB and more cross through the shared memory region the host
passes as fd 5 (mmap), both ways. The only dependency is msgpack.
"""
from ._job import Cancelled, DeadlineExceeded, Error, Job
from ._server import EXIT_ERROR, EXIT_OK, EXIT_PANIC, ProtocolError, Worker
from ._wire import (
    CODE_BAD_PAYLOAD,
    CODE_CANCELLED,
    CODE_DEADLINE,
    CODE_HANDLER,
    CODE_PANIC,
    CODE_SHUTTING_DOWN,
    CODE_TOO_LARGE,
    CODE_UNKNOWN_JOB_TYPE,
    VERSION,
)

__all__ = [
    "Worker", "Job", "Error", "Cancelled", "DeadlineExceeded", "ProtocolError",
    "EXIT_OK", "EXIT_ERROR", "EXIT_PANIC", "VERSION",
    "CODE_HANDLER", "CODE_PANIC", "CODE_CANCELLED", "CODE_DEADLINE", "CODE_UNKNOWN_JOB_TYPE",
    "CODE_BAD_PAYLOAD", "CODE_TOO_LARGE", "CODE_SHUTTING_DOWN",
]
__version__ = "0.1.0"
