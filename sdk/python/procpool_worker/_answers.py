"""_Conn's answers (see _server.py): a job's chunks, its response or error
response, handed to the outbox that writes fd 4."""
import msgpack

from . import _wire
from ._job import Error


class _Answers:
    """_Conn's methods that answer jobs."""

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
