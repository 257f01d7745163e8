"""Unit tests of procpool_worker's pure parts: python3 -m unittest discover -s sdk/python/tests"""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import msgpack  # noqa: E402

from procpool_worker import _wire  # noqa: E402
from procpool_worker._job import Job  # noqa: E402
from procpool_worker._shared import Region  # noqa: E402


class WireTest(unittest.TestCase):
    def test_response_prefix_keeps_64_bit_ids(self):
        for job_id in (0, 127, 128, 2**32, 2**63 + 5, 2**64 - 1):
            body = _wire.response_prefix(job_id, _wire.BLOB) + _wire.bin_header(3) + b"abc"
            self.assertEqual(msgpack.unpackb(body), [4, job_id, "", "", 0, b"abc"])

    def test_error_frame(self):
        f = _wire.error_frame(9, "teapot", "x" * (_wire.MAX_ERR_MESSAGE + 10))
        (n,) = _wire.HEADER.unpack(f[:4])
        self.assertEqual(n, len(f) - 4)
        m = msgpack.unpackb(f[4:])
        self.assertEqual(m[:3], [4, 9, "teapot"])
        self.assertEqual(len(m[3]), _wire.MAX_ERR_MESSAGE + 3)
        self.assertEqual(m[4:], [0, b""])


class JobTest(unittest.TestCase):
    def test_deadline(self):
        j = Job(1, "t", 1)
        j.wait(1)
        self.assertTrue(j.cancelled)
        self.assertEqual(j.cause, "deadline")

    def test_cancel_first_cause_wins(self):
        j = Job(1, "t", 0)
        self.assertFalse(j.wait(0.001))
        j._cancel("first")
        j._cancel("second")
        self.assertEqual(j.cause, "first")
        with self.assertRaises(Exception) as cm:
            j.check()
        self.assertEqual(cm.exception.code, "cancelled")


class RegionAllocatorTest(unittest.TestCase):
    """The result half's allocator, on a region object built without fd 5."""

    def region(self, size=4096 + 2 * 65536):
        r = Region.__new__(Region)
        r.size = size
        buf = bytearray(size)
        r._mem = memoryview(buf)
        r._consumed = r._mem[0:8].cast("Q")
        half = (size - 4096) // 2 // 4096 * 4096
        r.req_lo, r.req_hi, r.resp_lo, r.resp_hi = 4096, 4096 + half, 4096 + half, size
        r._blocks, r._next, r._freed = [], 0, 0
        return r

    def test_first_fit_and_in_order_release(self):
        r = self.region()
        a = r.reserve(30000)
        b = r.reserve(30000)
        self.assertEqual(a, r.resp_lo)
        self.assertEqual(b, r.resp_lo + 30016)
        self.assertIsNone(r.reserve(30000))  # full until the host consumes
        r._consumed[0] = 1  # the host read the first response
        self.assertEqual(r.reserve(30000), a)

    def test_request_bounds(self):
        r = self.region()
        self.assertEqual(len(r.request(4096, 10)), 10)
        for off, n in ((0, 1), (r.req_hi - 1, 2), (r.resp_lo, 1)):
            with self.assertRaises(ValueError):
                r.request(off, n)


if __name__ == "__main__":
    unittest.main()
