#!/usr/bin/env python3
"""The job types of procpool's conformance suite (package conformance of the
procpool module, whose doc comment is the contract), served with
procpool_worker. The suite runs it with the interpreter it finds
(/usr/bin/python3 on Debian, where python3-msgpack installs msgpack)."""
import hashlib
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import procpool_worker  # noqa: E402

worker = procpool_worker.Worker()
PATTERN = bytes(range(256))


@worker.blob("echo")
def echo(payload):
    return payload


@worker.blob("sha512")
def sha512(payload):
    return hashlib.sha512(payload).digest()


@worker.value("sha512v")
def sha512v(arg, job):
    size, seed = arg["Size"], arg["Seed"]
    if size < 0:
        raise procpool_worker.Error("bad_size", f"size {size} is negative")
    rot = PATTERN[seed:] + PATTERN[:seed]
    h = hashlib.sha512()
    chunk = rot * 256  # 64 KiB, a whole number of patterns
    for off in range(0, size, len(chunk)):
        job.check()
        h.update(chunk[:min(len(chunk), size - off)])
    return h.digest()


@worker.value("record")
def record(r):
    attrs = dict(r["Attrs"] or {})
    attrs["tags"] = len(r["Tags"] or [])
    return {
        "Name": "hello, " + r["Name"],
        "Count": r["Count"] + 1,
        "Ratio": r["Ratio"] * 2,
        "Floor": math.floor(r["Ratio"]),  # an int where the Go field is a float64
        "Data": bytes(reversed(r["Data"])),
        "Tags": (r["Tags"] or []) + ["seen"],
        "Flag": not r["Flag"],
        "Big": r["Big"],
        "Attrs": attrs,
    }


@worker.blob("sleep")
def sleep(payload, job):
    job.sleep(int(bytes(payload)) / 1000)  # raises Cancelled or DeadlineExceeded when stopped
    return payload


@worker.blob("spin")
def spin(payload, job):
    end = time.monotonic() + int(bytes(payload)) / 1000
    n = 0
    while time.monotonic() < end:  # pure Python holding the GIL: the reader still gets its turns
        n += 1
    return payload


@worker.blob("fail")
def fail(payload):
    code, _, message = bytes(payload).decode().partition(":")
    raise procpool_worker.Error(code, message)


@worker.blob("crash")
def crash(payload):
    raise RuntimeError(bytes(payload).decode())


@worker.blob("grow")
def grow(payload):
    n = int(bytes(payload))
    pattern = bytes(i % 251 for i in range(251))
    return (pattern * (n // 251 + 1))[:n]


@worker.value("info")
def info(_, job):
    return {"ID": job.id, "JobType": job.job_type, "Attempt": job.attempt, "TraceParent": job.traceparent,
            "TraceState": job.tracestate, "Streaming": job.streaming}


@worker.blob("stream")
def stream(payload, job):
    n, size = (int(x) for x in bytes(payload).split(b":"))
    for i in range(n):
        job.send(bytes((i % 256,)) * size)  # blocks while out of credit
    return b"done:%d" % n


if __name__ == "__main__":
    worker.run()
