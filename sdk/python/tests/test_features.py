"""The optional features (docs/protocol.md section 14) over a pair of pipes:
the handshake's negotiation, request meta, batches, streamed results; and
the shape of a panic's answer."""
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import msgpack  # noqa: E402

import procpool_worker  # noqa: E402
from procpool_worker import _outbox, _wire  # noqa: E402
from test_serve import Host  # noqa: E402

ALL = ["meta", "batch", "stream"]


def answers(h, ids):
    """The answers to ids, responses taken out of batch responses; the
    number of batch responses; the other messages."""
    got, batches, other = {}, 0, []
    while len(got) < len(ids):
        m = h.recv()
        items = [m] if m[0] == 4 else m[1] if m[0] == 10 else None
        if items is None:
            other.append(m)
            continue
        batches += m[0] == 10
        for it in items:
            assert it[1] in ids and it[1] not in got, it
            got[it[1]] = it
    return got, batches, other


class HandshakeTest(unittest.TestCase):
    def ready(self, hello):
        w = procpool_worker.Worker()
        w.blob("echo")(lambda p: p)
        h = Host(w)
        h.send(hello)
        r = h.recv()
        os.close(h.to_w)
        h.t.join(10)
        return r

    def test_forms(self):
        pid = os.getpid()
        self.assertEqual(self.ready([1, 1, 1 << 20]), [2, 1, 64 << 20, pid, ["echo"]], "no features: as before")
        self.assertEqual(self.ready([1, 1, 1 << 20, 0, ALL + ["telepathy"]]), [2, 1, 64 << 20, pid, ["echo"], 0, ALL])
        self.assertEqual(self.ready([1, 1, 1 << 20, 0, ["batch"]]), [2, 1, 64 << 20, pid, ["echo"], 0, ["batch"]])
        self.assertEqual(self.ready([1, 1, 1 << 20, 0, ["telepathy"]]), [2, 1, 64 << 20, pid, ["echo"]])
        self.assertEqual(self.ready([1, 1, 1 << 20, 0, None]), [2, 1, 64 << 20, pid, ["echo"]])


def stop_cleanly(test, h):
    """Shut the worker down and check that it exits with status 0."""
    h.send([8, 1000])
    h.t.join(10)
    test.assertEqual(h.code, procpool_worker.EXIT_OK)


def serve(w, features):
    h = Host(w)
    h.send([1, 1, 1 << 20, 0, features])
    h.ready = h.recv()
    return h


class MetaTest(unittest.TestCase):
    def test_job_meta(self):
        w = procpool_worker.Worker()

        @w.value("info")
        def info(_, job):
            return [job.id, job.attempt, job.traceparent, job.tracestate, job.streaming, job.trace_headers()]

        h = serve(w, ALL)
        tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        h.send([3, 7, "info", 0, {"attempt": 3, "traceparent": tp, "tracestate": "a=b", "future": [1, {"x": None}]}, 1, None])
        self.assertEqual(h.recv(), [4, 7, "", "", 1, [7, 3, tp, "a=b", False, {"traceparent": tp, "tracestate": "a=b"}]])
        h.send([3, 8, "info", 0, 1, None])
        self.assertEqual(h.recv(), [4, 8, "", "", 1, [8, 1, "", "", False, {}]])
        h.send([3, 9, "info", 0, {"attempt": "x"}, 1, None])  # a protocol error
        h.t.join(10)
        self.assertEqual(h.code, procpool_worker.EXIT_ERROR)


class BatchTest(unittest.TestCase):
    def test_mixed_batch(self):
        w = procpool_worker.Worker()
        w.blob("echo")(lambda p: p)
        w.value("double")(lambda x: 2 * x)

        @w.blob("fail")
        def fail(p):
            raise procpool_worker.Error("teapot", bytes(p).decode())

        @w.blob("wait")
        def wait(p, job):
            job.sleep(60)

        h = serve(w, ["batch"])
        self.assertEqual(h.ready[6], ["batch"])
        h.send([9, [[3, 1, "echo", 0, 0, b"one"], [3, 2, "double", 0, 1, 21], [3, 3, "nope", 0, 0, b""],
                    [3, 4, "fail", 0, 0, b"stout"], [3, 5, "wait", 0, 0, b""], [3, 6, "wait", 20, 0, b""]]])
        got, _, _ = answers(h, {1, 2, 3, 4, 6})
        self.assertEqual(got[1], [4, 1, "", "", 0, b"one"])
        self.assertEqual(got[2], [4, 2, "", "", 1, 42])
        self.assertEqual(got[3][2], "unknown_job_type")
        self.assertEqual(got[4][2:4], ["teapot", "stout"])
        self.assertEqual(got[6][2], "deadline")
        h.send([5, 5])  # cancel one item
        got, _, _ = answers(h, {5})
        self.assertEqual(got[5][2], "cancelled")
        stop_cleanly(self, h)

    def test_batch_runs_on_bounded_threads(self):
        # A batch's sync jobs run on at most batch_concurrency threads: with
        # a thread per job, all six would sleep at once.
        w = procpool_worker.Worker(batch_concurrency=2)
        lock = threading.Lock()
        now, most = [0], [0]

        @w.blob("nap")
        def nap(p):
            with lock:
                now[0] += 1
                most[0] = max(most[0], now[0])
            time.sleep(0.05)
            with lock:
                now[0] -= 1
            return p

        h = serve(w, ["batch"])
        h.send([9, [[3, i, "nap", 0, 0, b"%d" % i] for i in range(1, 7)]])
        got, _, _ = answers(h, set(range(1, 7)))
        self.assertEqual({i: got[i][5] for i in got}, {i: b"%d" % i for i in range(1, 7)})
        self.assertEqual(most[0], 2)
        stop_cleanly(self, h)

    def test_batch_job_cancelled_while_waiting(self):
        # With one thread for the batch, jobs 2 and 3 wait behind job 1: the
        # cancel of 2, and the 20 ms deadline of 3, answer them without
        # running their handler.
        w = procpool_worker.Worker(batch_concurrency=1)
        ran = []

        @w.blob("wait")
        def wait(p, job):
            ran.append(job.id)
            job.sleep(60)

        h = serve(w, ["batch"])
        h.send([9, [[3, 1, "wait", 0, 0, b""], [3, 2, "wait", 0, 0, b""], [3, 3, "wait", 20, 0, b""]]])
        h.send([5, 2])
        time.sleep(0.1)  # past job 3's deadline
        h.send([5, 1])
        got, _, _ = answers(h, {1, 2, 3})
        self.assertEqual([got[i][2] for i in (1, 2, 3)], ["cancelled", "cancelled", "deadline"])
        self.assertEqual(ran, [1], "the jobs answered while waiting did not run")
        stop_cleanly(self, h)

    def test_batch_job_waiting_at_a_panic_never_starts(self):
        w = procpool_worker.Worker(batch_concurrency=1)
        ran = []

        @w.blob("boom")
        def boom(p):
            ran.append(bytes(p))
            if p == b"1":
                raise RuntimeError("boom")
            return p

        h = serve(w, ["batch"])
        h.send([9, [[3, 1, "boom", 0, 0, b"1"], [3, 2, "boom", 0, 0, b"2"]]])
        got, _, _ = answers(h, {1})
        self.assertEqual(got[1][2], "panic")
        h.t.join(10)
        self.assertEqual(h.code, procpool_worker.EXIT_PANIC)
        self.assertEqual(ran, [b"1"], "job 2, lost with the worker, did not run")

    def test_batch_concurrency_is_checked(self):
        for bad in (0, -1, 1.5, None):
            with self.assertRaises(ValueError):
                procpool_worker.Worker(batch_concurrency=bad)

    def test_batch_without_negotiation(self):
        w = procpool_worker.Worker()
        w.blob("echo")(lambda p: p)
        h = serve(w, ["meta"])
        h.send([9, [[3, 1, "echo", 0, 0, b"x"]]])
        h.t.join(10)
        self.assertEqual(h.code, procpool_worker.EXIT_ERROR)

    def test_runs_of_responses_coalesce(self):
        r, wfd = os.pipe()
        o = _outbox.Outbox(wfd, lambda e: None)
        o.batching = True
        o._writing = True  # another thread writes: queue only
        o.send_result(1, _wire.BLOB, b"a")
        o.send_error(2, "teapot", "no")
        o.send(_wire.pong_frame(9))
        o.send_result(3, _wire.VALUE, msgpack.packb([1]))
        o.send_result(4, _wire.BLOB, b"x" * 5000)  # header and payload in two parts
        o.send_result(5, _wire.BLOB, b"e")
        o.drain()
        os.close(wfd)
        data = b""
        while True:
            b = os.read(r, 1 << 20)
            if not b:
                break
            data += b
        os.close(r)
        msgs, pos = [], 0
        while pos < len(data):
            (n,) = _wire.HEADER.unpack_from(data, pos)
            msgs.append(msgpack.unpackb(data[pos + 4:pos + 4 + n]))
            pos += 4 + n
        self.assertEqual(msgs[0], [10, [[4, 1, "", "", 0, b"a"], [4, 2, "teapot", "no", 0, b""]]])
        self.assertEqual(msgs[1], [7, 9])
        self.assertEqual(msgs[2][0], 10)
        self.assertEqual([it[1] for it in msgs[2][1]], [3, 4, 5])
        self.assertEqual(msgs[2][1][1][5], b"x" * 5000)
        self.assertEqual(len(msgs), 3)


class StreamTest(unittest.TestCase):
    def test_credit_cancel_and_async(self):
        w = procpool_worker.Worker()
        errors = []

        @w.blob("stream")
        def stream(p, job):
            try:
                for i in range(int(bytes(p))):
                    job.send(b"chunk-%d" % i)
            except procpool_worker.Error as e:
                errors.append(e)
                raise
            return b"done"

        @w.value("rows")
        async def rows(n, job):
            for i in range(n):
                await job.asend({"row": i})
            return "end"

        h = serve(w, ALL)
        h.send([3, 1, "stream", 0, {"credit": 2}, 0, b"5"])
        self.assertEqual([h.recv() for _ in range(2)], [[11, 1, 0, b"chunk-0"], [11, 1, 0, b"chunk-1"]])
        h.send([6, 3])
        self.assertEqual(h.recv(), [7, 3], "out of credit, pings still answered")
        h.send([12, 1, 3])
        self.assertEqual([h.recv()[3] for _ in range(3)], [b"chunk-2", b"chunk-3", b"chunk-4"])
        self.assertEqual(h.recv(), [4, 1, "", "", 0, b"done"])

        h.send([3, 2, "stream", 0, {"credit": 1}, 0, b"100"])
        self.assertEqual(h.recv()[:2], [11, 2])
        h.send([5, 2])  # cancel mid-stream
        m = h.recv()
        self.assertEqual(m[:3], [4, 2, "cancelled"])
        self.assertIsInstance(errors[-1], procpool_worker.Cancelled)

        h.send([3, 3, "stream", 0, 0, b"1"])  # not streamed
        m = h.recv()
        self.assertEqual(m[:3], [4, 3, "handler"])
        self.assertIn("did not ask", m[3])

        h.send([3, 4, "rows", 0, {"credit": 1}, 1, 3])
        self.assertEqual(h.recv(), [11, 4, 1, {"row": 0}])
        h.send([12, 4, 5])
        self.assertEqual([h.recv() for _ in range(2)], [[11, 4, 1, {"row": 1}], [11, 4, 1, {"row": 2}]])
        self.assertEqual(h.recv(), [4, 4, "", "", 1, "end"])
        stop_cleanly(self, h)


class PanicTest(unittest.TestCase):
    def test_first_line_and_detail(self):
        w = procpool_worker.Worker(drain_timeout=0.05)

        @w.blob("boom")
        def boom(payload):
            raise RuntimeError("line one\nline two")

        h = Host(w)
        h.send([1, 1, 1 << 20])
        h.recv()
        h.send([3, 1, "boom", 0, 0, b""])
        m = h.recv()
        self.assertEqual(m[:4], [4, 1, "panic", "panic: RuntimeError: line one [...]"])
        detail = m[5].decode()
        self.assertTrue(detail.startswith("panic: RuntimeError: line one\nline two\n"), detail)
        self.assertIn("in boom", detail)
        h.t.join(10)
        self.assertEqual(h.code, procpool_worker.EXIT_PANIC)


if __name__ == "__main__":
    unittest.main()
