#!/usr/bin/env python3
"""A procpool worker in Python, written with procpool_worker (sdk/python).
It serves the job types of the Go example (examples/sha512worker):

    sha512     BLOB:  the payload's bytes -> their 64-byte SHA-512 digest
    sha512v    VALUE: {"Size": n, "Seed": s} -> the digest of n bytes that the
               worker makes itself (byte i is s+i mod 256)
    wordcount  VALUE: a text -> how often each word occurs in it
    noop       BLOB:  anything -> nothing (the bench's no-load job)
    noopv      VALUE: anything -> nil (the bench's no-load VALUE job)

A host starts it with its protocol pipes as fds 3 and 4:

    procpool.JobType{Name: "sha512", Command: "/usr/bin/python3",
                     Args: []string{"examples/python-worker/worker.py"}}

It needs procpool_worker (pip install ./sdk/python) and msgpack (pip, or
Debian's python3-msgpack for /usr/bin/python3). Run from the repository
without installing, it finds the SDK next to it.
"""
import hashlib
import os
import sys

try:
    import procpool_worker
except ImportError:  # not installed: use the repository's copy
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sdk", "python"))
    import procpool_worker

worker = procpool_worker.Worker()
PATTERN = bytes(range(256))
MAX_GENERATE = 64 << 30


@worker.blob("sha512")
def sha512(payload):
    # payload is bytes, or a read-only memoryview of the shared memory region
    # for 64 KiB and more: valid until the handler returns.
    return hashlib.sha512(payload).digest()


@worker.value("sha512v")
def sha512v(arg, job):
    # A Go struct Generate{Size int; Seed byte} arrives as a dict keyed by its
    # field names.
    size, seed = arg["Size"], arg["Seed"]
    if not 0 <= size <= MAX_GENERATE:
        # An Error chooses the code the caller's *RemoteError carries.
        raise procpool_worker.Error("bad_size", f"size {size} outside [0, {MAX_GENERATE}]")
    rot = PATTERN[seed:] + PATTERN[:seed]
    h = hashlib.sha512()
    chunk = rot * max(1, min(256, (size + 255) // 256))  # up to 64 KiB, no larger than needed
    for off in range(0, size, len(chunk)):
        job.check()  # stop early, as "cancelled" or "deadline", when told to
        h.update(chunk[:min(len(chunk), size - off)])
    return h.digest()  # bytes: a msgpack bin, a []byte for the Go caller


@worker.value("wordcount")
def wordcount(text):
    counts = {}
    for w in text.lower().split():
        w = w.strip(".,;:!?\"'()[]")
        if w:
            counts[w] = counts.get(w, 0) + 1
    return counts


@worker.blob("noop")
def noop(payload):
    return b""


@worker.value("noopv")
def noopv(arg):
    return None  # msgpack nil


if __name__ == "__main__":
    worker.run()  # serve until the host stops us, then exit
