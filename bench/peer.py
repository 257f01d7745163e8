# The peer of procpool's bench: Python's concurrent.futures.ProcessPoolExecutor
# running the same jobs as the Go pools. Written to a temporary file and run by
# bench/peer.go; reads its tests as JSON on stdin, writes results as JSON.
#
# For each test: start an executor with `workers` processes and warm it up
# (every process started), then time `jobs` submits (one submit per job;
# or, with "mode": "map", one Executor.map over the jobs with the test's
# chunksize), the results collected in order, and the executor's shutdown.
# `check` is
# the SHA-256 of the concatenated results, which the bench compares with
# the expected digests.
import concurrent.futures
import hashlib
import json
import sys
import time

PATTERN = bytes(range(256))


def make(size, seed):
    """The buffer of the test worker's sha512v job: byte i = seed+i mod 256."""
    rot = PATTERN[seed:] + PATTERN[:seed]
    return (rot * (size // 256 + 1))[:size]


def sha512_value(size, seed):
    return hashlib.sha512(make(size, seed)).digest()


def sha512_blob(buf):
    return hashlib.sha512(buf).digest()


def noop_value(size, seed):
    return b""


def noop_blob(buf):
    return b""


def warm(delay):
    time.sleep(delay)


def run(test, workers, seeds):
    size, n, kind = test["size"], test["jobs"], test["kind"]
    if test["hash"]:
        fn = sha512_value if kind == "VALUE" else sha512_blob
    else:
        fn = noop_value if kind == "VALUE" else noop_blob
    bufs = [make(size, s) for s in range(seeds)] if kind == "BLOB" else None
    ex = concurrent.futures.ProcessPoolExecutor(max_workers=workers)
    try:
        # Busy warm-up jobs make the executor start every process now.
        for f in [ex.submit(warm, 0.05) for _ in range(workers)]:
            f.result()
        t0 = time.perf_counter()
        check = hashlib.sha256()
        if test.get("mode") == "map":
            chunk = test["chunksize"]
            if kind == "BLOB":
                results = ex.map(fn, (bufs[i % seeds] for i in range(n)), chunksize=chunk)
            else:
                results = ex.map(fn, [size] * n, [i % seeds for i in range(n)], chunksize=chunk)
            for r in results:
                check.update(r)
        else:
            if kind == "BLOB":
                futures = [ex.submit(fn, bufs[i % seeds]) for i in range(n)]
            else:
                futures = [ex.submit(fn, size, i % seeds) for i in range(n)]
            for f in futures:
                check.update(f.result())
        ex.shutdown(wait=True)
        elapsed = time.perf_counter() - t0
    finally:
        ex.shutdown(wait=True)
    return {"key": test["key"], "jobs": n, "seconds": elapsed, "check": check.hexdigest()}


def main():
    cfg = json.load(sys.stdin)
    out = [run(t, cfg["workers"], cfg["seeds"]) for t in cfg["tests"]]
    json.dump({"version": sys.version.split()[0], "results": out}, sys.stdout)


if __name__ == "__main__":
    main()
