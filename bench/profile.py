"""Where the time goes per query: py-spy samples of each of our service processes.

`record` attaches py-spy (non-blocking, raw "collapsed stack" output) to every service for the
length of one workload; `summarize` (pure, unit-tested) sorts each sample into a bucket: pg-wire
codec, gRPC, protobuf (de)serialisation, SQLite, SQL text handling, asyncio and sockets, other
service code, and the event loop waiting for work (idle). Time inside C extensions (grpc's
Cython core, apsw) is charged to the Python line that called it.
"""
from __future__ import annotations

import collections
import dataclasses
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable

# (bucket, substrings of a frame's "function (file:line)"), checked from the innermost frame out.
BUCKETS: list[tuple[str, tuple[str, ...]]] = [
    ("pg-wire codec", ("edge/pgwire/",)),
    ("protobuf", ("google/protobuf/", "_pb2.py", "grpc/_common.py", "SerializeToString", "FromString")),
    ("gRPC", ("grpc/", "grpc_health/", "cygrpc")),
    ("SQLite (apsw)", ("storage/sqlite/", "apsw")),
    ("PG types/values", ("edge/types.py",)),
    ("SQL text handling", ("common/sqltext.py", "common/statement.py")),
]
IDLE = "idle (event loop waiting)"
ASYNCIO = "asyncio + sockets"
OTHER = "other service code"
IDLE_LEAVES = ("selectors.py", "threading.py", "EpollSelector.select",
               "_worker (concurrent/futures/thread.py")  # an executor thread blocked on its queue
# A leaf in our code on one of these lines is in grpc's Cython core (with the message it builds).
GRPC_LINES = ("context.write(", "context.read(", "_call.write(", "_call.read(")


def py_spy() -> str | None:
    here = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return here if os.path.exists(here) else shutil.which("py-spy")


def record(pids: dict[str, int], seconds: int, out_dir: str, log_dir: str) -> dict[str, subprocess.Popen]:
    """Start one py-spy per service; wait on the returned processes. Raw files: <out>/<svc>.txt"""
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    os.makedirs(out_dir, exist_ok=True)
    os.makedirs(log_dir, exist_ok=True)
    spies = {}
    for name, pid in pids.items():
        spies[name] = subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250",
             "--nonblocking", "--format", "raw", "--output", os.path.join(out_dir, f"{name}.txt")],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(log_dir, f"{name}.py-spy.log"), "wb"))
    return spies


def _frames(stack: str) -> list[str]:
    return [f for f in stack.split(";") if f]


def bucket_of(frames: list[str], source_line: Callable[[str], str] | None = None) -> str:
    """The bucket of one sample. `source_line(frame)` gives the frame's line of source, so a leaf
    in our code that awaits a gRPC stream call (whose Cython frames py-spy cannot see) counts as gRPC."""
    leaf = frames[-1] if frames else ""
    if any(s in leaf for s in IDLE_LEAVES):
        return IDLE
    for frame in reversed(frames):
        for name, needles in BUCKETS:
            if any(n in frame for n in needles):
                return name
    if "asyncio/" in leaf:
        return ASYNCIO
    if source_line is not None and any(g in source_line(leaf) for g in GRPC_LINES):
        return "gRPC"
    return OTHER


_FRAME = re.compile(r"\((.+):(\d+)\)$")


def source_reader(root: str) -> Callable[[str], str]:
    """source_line for frames of files under `root` (our services), e.g. `f (storage/servicer.py:63)`."""
    cache: dict[str, list[str]] = {}

    def line(frame: str) -> str:
        m = _FRAME.search(frame)
        if not m:
            return ""
        path = os.path.join(root, m.group(1))
        if path not in cache:
            try:
                with open(path) as f:
                    cache[path] = f.read().splitlines()
            except OSError:
                cache[path] = []
        lines, n = cache[path], int(m.group(2))
        return lines[n - 1] if 0 < n <= len(lines) else ""
    return line


@dataclasses.dataclass
class Summary:
    samples: int
    busy: int                               # samples not idle
    buckets: dict[str, int]                 # bucket -> samples (busy buckets only)
    top_self: list[tuple[str, int]]         # innermost frames of busy samples, most frequent first

    def share(self, bucket: str) -> float:
        return self.buckets.get(bucket, 0) / self.busy if self.busy else 0.0


def summarize(raw: str, top: int = 6, source_line: Callable[[str], str] | None = None) -> Summary:
    """Read py-spy's raw output: one line per distinct stack, `frame;frame;... count`."""
    buckets: collections.Counter[str] = collections.Counter()
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = _frames(stack)
        total += n
        b = bucket_of(frames, source_line)
        if b == IDLE:
            continue
        buckets[b] += n
        leaves[frames[-1]] += n
    busy = sum(buckets.values())
    return Summary(total, busy, dict(buckets.most_common()), leaves.most_common(top))
