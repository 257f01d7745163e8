"""Worker.serve over a pair of pipes, with the host played by the test:
async handlers, cancel, shutdown. The conformance suite (Go) covers the rest
under the real host."""
import asyncio
import os
import struct
import sys
import threading
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import msgpack  # noqa: E402

import procpool_worker  # noqa: E402


class Host:
    def __init__(self, worker):
        self.to_w_r, self.to_w = os.pipe()
        self.from_w, self.from_w_w = os.pipe()
        self.code = None
        self.t = threading.Thread(target=self._serve, args=(worker,), daemon=True)
        self.t.start()

    def _serve(self, worker):
        self.code = worker.serve(self.to_w_r, self.from_w_w)
        os.close(self.from_w_w)

    def send(self, msg):
        body = msgpack.packb(msg, use_bin_type=True)
        os.write(self.to_w, struct.pack(">I", len(body)) + body)

    def recv(self):
        head = self._read(4)
        (n,) = struct.unpack(">I", head)
        return msgpack.unpackb(self._read(n), strict_map_key=False)

    def _read(self, n):
        b = b""
        while len(b) < n:
            chunk = os.read(self.from_w, n - len(b))
            if not chunk:
                raise EOFError
            b += chunk
        return b


class AsyncHandlerTest(unittest.TestCase):
    def test_async_result_cancel_and_shutdown(self):
        w = procpool_worker.Worker()
        started = threading.Event()

        @w.value("double")
        async def double(x):
            await asyncio.sleep(0.01)
            return x * 2

        @w.blob("wait")
        async def wait(payload, job):
            started.set()
            await asyncio.sleep(60)
            return payload

        holding, release = threading.Event(), threading.Event()

        @w.blob("hold")
        async def hold(payload):
            holding.set()
            while not release.is_set():
                await asyncio.sleep(0.005)
            return payload

        h = Host(w)
        h.send([1, 1, 1 << 20])
        ready = h.recv()
        self.assertEqual(ready[:2], [2, 1])
        self.assertEqual(ready[4], ["double", "hold", "wait"])
        h.send([3, 2**64 - 1, "double", 0, 1, 21])
        self.assertEqual(h.recv(), [4, 2**64 - 1, "", "", 1, 42])
        h.send([3, 7, "wait", 0, 0, b"x"])
        self.assertTrue(started.wait(10))
        h.send([5, 7])
        m = h.recv()
        self.assertEqual(m[:3], [4, 7, "cancelled"])
        h.send([3, 8, "wait", 50, 0, b"x"])  # a 50 ms timeout
        self.assertEqual(h.recv()[:3], [4, 8, "deadline"])
        h.send([6, 2**62 + 7])
        self.assertEqual(h.recv(), [7, 2**62 + 7])
        # A job runs across the shutdown, so that the worker, not idle, is
        # still reading when the request after the shutdown arrives (idle,
        # it may finish first: that request then goes unanswered).
        h.send([3, 10, "hold", 0, 0, b"h"])
        self.assertTrue(holding.wait(10))
        h.send([8, 5000])
        h.send([3, 9, "double", 0, 1, 1])
        self.assertEqual(h.recv()[:3], [4, 9, "shutting_down"])
        release.set()
        self.assertEqual(h.recv(), [4, 10, "", "", 0, b"h"])
        h.t.join(10)
        self.assertEqual(h.code, procpool_worker.EXIT_OK)

    def test_uncaught_exception_is_a_panic(self):
        w = procpool_worker.Worker(drain_timeout=0.05)

        @w.blob("boom")
        def boom(payload):
            raise ValueError("kaput")

        h = Host(w)
        h.send([1, 1, 1 << 20])
        h.recv()
        h.send([3, 1, "boom", 0, 0, b""])
        m = h.recv()
        self.assertEqual(m[:3], [4, 1, "panic"])
        self.assertIn("ValueError: kaput", m[3])
        h.t.join(10)
        self.assertEqual(h.code, procpool_worker.EXIT_PANIC)


if __name__ == "__main__":
    unittest.main()
