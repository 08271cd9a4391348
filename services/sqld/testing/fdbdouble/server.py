"""TEST DOUBLE of FoundationDB, for tests and local runs only — never a storage engine.

`python -m sqld.testing.fdbdouble.server --listen 127.0.0.1:PORT` serves the FdbDouble gRPC API
(proto/sqld/testing/v1/fdbdouble.proto): the FoundationDB semantics the page store relies on, kept
in memory, so that several storage processes can share one "cluster" in tests where no
FoundationDB can be installed. It implements: read versions (about 1,000,000 per second, as
FoundationDB's), multi-version reads at a read version, range reads with limits in both
directions, read-conflict ranges checked at commit against every later commit (1020
not_committed), versionstamped keys and values, transaction_too_old (1007) for read versions
older than 5 s and transaction_too_large (2101) above 10 MB. Test instrumentation: Stats, and
InjectUnknownResult, which makes the next commits answer 1021 (commit_unknown_result) after
being applied or not, as a real cluster can. Not implemented: durability (data lives in
memory until the process ends), read-your-writes, watches, other atomic ops, tenants.

Memory: like FoundationDB, the double keeps a key's old values only as long as a read may
ask for them (MVCC_WINDOW, 5 s): as commits go on, each key keeps its newest value from
before the window and the later ones, and a key cleared before the window is forgotten
(dead keys leave the sorted key list in batches). So it holds what the page store keeps
(the retention window's versions, storage --fdb-retention-seconds, until GC) plus 5 s of
writes, not every value ever written.
"""
from __future__ import annotations

import argparse
import bisect
import collections
import logging
import struct
import time

from sqld.common import grpc_server
from sqld.common import log as logsetup
from sqld.common import loop as event_loop
from sqld.testing.v1 import fdbdouble_pb2 as pb
from sqld.testing.v1 import fdbdouble_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

TOO_OLD, NOT_COMMITTED, UNKNOWN_RESULT, TOO_LARGE = 1007, 1020, 1021, 2101
MVCC_WINDOW = 5_000_000      # versions: FoundationDB keeps 5 s of history at 1e6 versions/s
MAX_BYTES = 10_000_000


class Store:
    """Multi-version keys; every method runs on one event loop, so commits are serial."""

    def __init__(self) -> None:
        self.keys: list[bytes] = []                               # sorted, every key ever written
        self.history: dict[bytes, list[tuple[int, bytes | None]]] = {}  # key → [(version, value)]
        self.last_write: dict[bytes, int] = {}
        self.range_clears: list[tuple[int, bytes, bytes]] = []     # recent clear_range writes
        self.version = self._clock()
        self.written: collections.deque[tuple[int, bytes]] = collections.deque()  # (version, key), in order
        self.dead: set[bytes] = set()  # keys cleared before the MVCC window, to leave `keys` in a batch
        self.commits = 0
        self.unknown_results = 0
        self.inject = pb.InjectUnknownResultRequest()  # armed by a test: answer 1021

    @staticmethod
    def _clock() -> int:
        return time.time_ns() // 1000

    def read_version(self) -> int:
        """Like FoundationDB's, read versions advance with time even without commits."""
        self.version = max(self.version, self._clock())
        return self.version

    def _value_at(self, key: bytes, version: int) -> bytes | None:
        hist = self.history[key]
        for v, value in reversed(hist):
            if v <= version:
                return value
        return None

    def read(self, version: int, rng: pb.KeyRange) -> list[pb.KeyValue]:
        lo = bisect.bisect_left(self.keys, rng.begin)
        hi = bisect.bisect_left(self.keys, rng.end)
        indexes = range(hi - 1, lo - 1, -1) if rng.reverse else range(lo, hi)
        out = []
        for i in indexes:
            key = self.keys[i]
            value = self._value_at(key, version)
            if value is not None:
                out.append(pb.KeyValue(key=key, value=value))
                if rng.limit and len(out) >= rng.limit:
                    break
        return out

    def too_old(self, version: int) -> bool:
        return version < self._clock() - MVCC_WINDOW

    def conflicts(self, read_version: int, begin: bytes, end: bytes) -> bool:
        lo = bisect.bisect_left(self.keys, begin)
        hi = bisect.bisect_left(self.keys, end)
        for i in range(lo, hi):
            if self.last_write.get(self.keys[i], 0) > read_version:
                return True
        return any(v > read_version and b < end and begin < e for v, b, e in self.range_clears)

    def _put(self, key: bytes, version: int, value: bytes | None) -> None:
        if key not in self.history:
            bisect.insort(self.keys, key)
            self.history[key] = []
        self.history[key].append((version, value))
        self.last_write[key] = version
        self.written.append((version, key))

    def _compact(self, horizon: int) -> None:
        """Drop the values no read may ask for: before `horizon`, all but each key's newest."""
        while self.written and self.written[0][0] < horizon:
            _, key = self.written.popleft()
            hist = self.history.get(key)
            if hist is None:
                continue
            old = 0
            while old + 1 < len(hist) and hist[old + 1][0] < horizon:
                old += 1
            del hist[:old]
            if len(hist) == 1 and hist[0][1] is None and hist[0][0] < horizon:
                self.dead.add(key)
        if len(self.dead) > 1000 + len(self.keys) // 10:  # amortized: one pass over the key list
            gone = {k for k in self.dead if len(self.history[k]) == 1 and self.history[k][0][1] is None}
            for key in gone:
                del self.history[key]
                del self.last_write[key]
            self.keys = [k for k in self.keys if k not in gone]
            self.dead = set()

    def _unknown_result(self, req: pb.CommitRequest) -> bool:
        """Whether this commit is one a test asked to answer with 1021."""
        if not self.inject.count or not any(m.key.startswith(self.inject.key_prefix) for m in req.mutations):
            return False
        self.inject.count -= 1
        self.unknown_results += 1
        return True

    def commit(self, req: pb.CommitRequest) -> pb.CommitResponse:
        if not self.inject.apply and self._unknown_result(req):
            return pb.CommitResponse(error=UNKNOWN_RESULT)  # lost on the way: not applied
        size = sum(len(m.key) + len(m.value) + len(m.end) for m in req.mutations)
        size += sum(len(r.begin) + len(r.end) for r in req.read_conflicts)
        if size > MAX_BYTES:
            return pb.CommitResponse(error=TOO_LARGE)
        if req.read_conflicts and self.too_old(req.read_version):
            return pb.CommitResponse(error=TOO_OLD)
        if any(self.conflicts(req.read_version, r.begin, r.end) for r in req.read_conflicts):
            return pb.CommitResponse(error=NOT_COMMITTED)
        version = max(self.version + 1, self._clock())
        stamp = struct.pack(">QH", version, 0)
        for m in req.mutations:
            if m.type == pb.Mutation.SET:
                self._put(m.key, version, m.value)
            elif m.type == pb.Mutation.CLEAR:
                if m.key in self.history:
                    self._put(m.key, version, None)
            elif m.type == pb.Mutation.CLEAR_RANGE:
                lo, hi = bisect.bisect_left(self.keys, m.key), bisect.bisect_left(self.keys, m.end)
                for key in self.keys[lo:hi]:
                    self._put(key, version, None)
                self.range_clears.append((version, m.key, m.end))
            elif m.type == pb.Mutation.SET_VERSIONSTAMPED_KEY:
                self._put(m.key[:m.offset] + stamp + m.key[m.offset + 10:], version, m.value)
            elif m.type == pb.Mutation.SET_VERSIONSTAMPED_VALUE:
                self._put(m.key, version, m.value[:m.offset] + stamp + m.value[m.offset + 10:])
        self.version = version
        self.commits += 1
        horizon = self._clock() - MVCC_WINDOW
        self.range_clears = [c for c in self.range_clears if c[0] >= horizon]
        self._compact(horizon)
        if self.inject.apply and self._unknown_result(req):
            return pb.CommitResponse(error=UNKNOWN_RESULT)  # applied, but the answer was lost
        return pb.CommitResponse(version=version, versionstamp=stamp)


class DoubleServicer(pb_grpc.FdbDoubleServicer):
    def __init__(self) -> None:
        self.store = Store()

    async def GetReadVersion(self, request, context):  # noqa: N802
        return pb.GetReadVersionResponse(version=self.store.read_version())

    async def Read(self, request: pb.ReadRequest, context):  # noqa: N802
        version = request.read_version or self.store.read_version()
        if self.store.too_old(version):
            return pb.ReadResponse(error=TOO_OLD)
        return pb.ReadResponse(results=[pb.RangeResult(kvs=self.store.read(version, r)) for r in request.ranges])

    async def Commit(self, request: pb.CommitRequest, context):  # noqa: N802
        return self.store.commit(request)

    async def Stats(self, request, context):  # noqa: N802
        return pb.StatsResponse(commits=self.store.commits, unknown_results=self.store.unknown_results)

    async def InjectUnknownResult(self, request: pb.InjectUnknownResultRequest, context):  # noqa: N802
        self.store.inject.CopyFrom(request)
        log.warning("test instrumentation: the next %d commits writing %r answer 1021 (applied: %s)",
                    request.count, request.key_prefix, request.apply)
        return pb.InjectUnknownResultResponse()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sqld.testing.fdbdouble.server",
                                     description="TEST DOUBLE of FoundationDB (in memory; tests only)")
    parser.add_argument("--listen", default="127.0.0.1:4500", help="gRPC address host:port")
    args = parser.parse_args(argv)
    logsetup.setup("fdbdouble")
    servicer = DoubleServicer()

    def register(server):
        pb_grpc.add_FdbDoubleServicer_to_server(servicer, server)
        return [pb.DESCRIPTOR.services_by_name["FdbDouble"].full_name]

    log.warning("serving the FoundationDB TEST DOUBLE on %s: in memory, for tests only", args.listen)
    # A test double on loopback: plaintext on purpose (security=None); never a deployment member.
    event_loop.run(grpc_server.serve(args.listen, register, security=None))


if __name__ == "__main__":
    main()
