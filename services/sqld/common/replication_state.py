"""Replication states on the wire: a FAILED_PRECONDITION whose trailing metadata names a
`ReplicationState` (replication.proto). The service sets it with `trailer`; its clients (the
storage primary's log client, the replica's follower) read it with `of`, never from the
details text, which is for people.
"""
from __future__ import annotations

import grpc

from sqld.v1 import replication_pb2 as pb

KEY = "sqld-replication-state"

State = pb.ReplicationState
NEED_SNAPSHOT = pb.REPLICATION_STATE_NEED_SNAPSHOT
LOG_ID_MISMATCH = pb.REPLICATION_STATE_LOG_ID_MISMATCH
FRAME_GAP = pb.REPLICATION_STATE_FRAME_GAP
LOG_FORKED = pb.REPLICATION_STATE_LOG_FORKED

_PREFIX = "REPLICATION_STATE_"


def short_name(state: int) -> str:
    """NEED_SNAPSHOT for REPLICATION_STATE_NEED_SNAPSHOT: how the details text names it."""
    return pb.ReplicationState.Name(state).removeprefix(_PREFIX)


def trailer(state: int) -> tuple[tuple[str, str], ...]:
    """The trailing metadata that carries `state` on a FAILED_PRECONDITION."""
    return ((KEY, pb.ReplicationState.Name(state)),)


def of(exc: grpc.Call | grpc.aio.AioRpcError) -> int:
    """The ReplicationState a failed call carries (UNSPECIFIED when it carries none); `exc` is
    the RpcError a blocking stub raised (also a grpc.Call) or an asyncio one."""
    if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
        return pb.REPLICATION_STATE_UNSPECIFIED
    for key, value in exc.trailing_metadata() or ():
        if key == KEY and isinstance(value, str) and value in pb.ReplicationState.keys():
            return pb.ReplicationState.Value(value)
    return pb.REPLICATION_STATE_UNSPECIFIED
