"""Client of the FoundationDB TEST DOUBLE (testing/fdbdouble/server.py); for tests and local runs only.

Buffers mutations and read-conflict ranges like a real FoundationDB client and sends them
with Commit; reads go to the double at the transaction's read version.
"""
from __future__ import annotations

import json
from collections.abc import Sequence

import grpc

from sqld.common.grpc_client import CHANNEL_OPTIONS
from sqld.storage.mvsqlite.kv import KeyValues, KvError, Range
from sqld.testing.v1 import fdbdouble_pb2 as pb
from sqld.testing.v1 import fdbdouble_pb2_grpc as pb_grpc

RPC_TIMEOUT = 60.0
WAIT_FOR_READY = ("grpc.service_config", json.dumps({"methodConfig": [{"name": [{}], "waitForReady": True}]}))


class DoubleTransaction:
    def __init__(self, stub: pb_grpc.FdbDoubleStub) -> None:
        self._stub = stub
        self._version = 0
        self._conflicts: list[pb.KeyRange] = []
        self._mutations: list[pb.Mutation] = []

    def read_version(self) -> int:
        if not self._version:
            self._version = self._stub.GetReadVersion(pb.GetReadVersionRequest(), timeout=RPC_TIMEOUT).version
        return self._version

    def get_ranges(self, ranges: Sequence[Range], snapshot: bool = False) -> list[KeyValues]:
        req = pb.ReadRequest(read_version=self.read_version(), ranges=[
            pb.KeyRange(begin=b, end=e, limit=limit, reverse=rev) for b, e, limit, rev in ranges])
        resp = self._stub.Read(req, timeout=RPC_TIMEOUT)
        if resp.error:
            raise KvError(resp.error, "read")
        out = []
        for (begin, end, limit, reverse), result in zip(ranges, resp.results):
            kvs = [(kv.key, kv.value) for kv in result.kvs]
            if not snapshot:
                # Like FoundationDB: a read cut short by its limit conflicts only on what it covered.
                if limit and len(kvs) >= limit:
                    if reverse:
                        begin = kvs[-1][0]
                    else:
                        end = kvs[-1][0] + b"\x00"
                self._conflicts.append(pb.KeyRange(begin=begin, end=end))
            out.append(kvs)
        return out

    def set(self, key: bytes, value: bytes) -> None:
        self._mutations.append(pb.Mutation(type=pb.Mutation.SET, key=key, value=value))

    def clear(self, key: bytes) -> None:
        self._mutations.append(pb.Mutation(type=pb.Mutation.CLEAR, key=key))

    def clear_range(self, begin: bytes, end: bytes) -> None:
        self._mutations.append(pb.Mutation(type=pb.Mutation.CLEAR_RANGE, key=begin, end=end))

    def set_versionstamped_key(self, key: bytes, offset: int, value: bytes) -> None:
        self._mutations.append(pb.Mutation(type=pb.Mutation.SET_VERSIONSTAMPED_KEY, key=key,
                                           offset=offset, value=value))

    def set_versionstamped_value(self, key: bytes, value: bytes, offset: int) -> None:
        self._mutations.append(pb.Mutation(type=pb.Mutation.SET_VERSIONSTAMPED_VALUE, key=key,
                                           offset=offset, value=value))

    def add_read_conflict_range(self, begin: bytes, end: bytes) -> None:
        self._conflicts.append(pb.KeyRange(begin=begin, end=end))

    def commit(self) -> bytes:
        if not self._mutations:
            return b""  # as in FoundationDB: a read-only transaction commits without the cluster
        resp = self._stub.Commit(pb.CommitRequest(read_version=self.read_version(),
                                                  read_conflicts=self._conflicts,
                                                  mutations=self._mutations), timeout=RPC_TIMEOUT)
        if resp.error:
            raise KvError(resp.error, "commit")
        return resp.versionstamp


class DoubleKv:
    """A connection to the FoundationDB test double at `target` ("host:port")."""

    def __init__(self, target: str) -> None:
        # Calls wait for the double to be reachable (bounded by RPC_TIMEOUT), as a FoundationDB
        # client waits for its cluster, instead of failing at once on a first connection refused.
        self._channel = grpc.insecure_channel(target, options=[*CHANNEL_OPTIONS, WAIT_FOR_READY])
        self._stub = pb_grpc.FdbDoubleStub(self._channel)

    def transaction(self) -> DoubleTransaction:
        return DoubleTransaction(self._stub)

    def close(self) -> None:
        self._channel.close()
