"""gRPC adapter for the replication service: translates; `replication.service` decides.

A LogError (a replication state: NEED_SNAPSHOT, LOG_ID_MISMATCH, FRAME_GAP, LOG_FORKED) becomes
FAILED_PRECONDITION carrying the ReplicationState in trailing metadata (common.replication_state),
its short name also starting the details, as in sqld's replication protocol.
"""
from __future__ import annotations

import asyncio

import grpc
from grpc._cython import cygrpc

from sqld.common import replication_state
from sqld.replication.frame_log import LogError
from sqld.replication.service import OutOfRange, ReplicationCore
from sqld.v1 import replication_pb2 as pb
from sqld.v1 import replication_pb2_grpc

# What grpc raises for a write to a call that has ended (its own class, in its Cython core).
_SEND_FAILED: type[Exception] = getattr(cygrpc, "ExecuteBatchError", asyncio.InvalidStateError)


class ReplicationServicer(replication_pb2_grpc.ReplicationServicer):
    def __init__(self, core: ReplicationCore) -> None:
        self.core = core

    async def _fail(self, context: grpc.aio.ServicerContext, exc: Exception) -> None:
        if isinstance(exc, LogError):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc),
                                trailing_metadata=replication_state.trailer(exc.state))
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    async def Hello(self, request, context):
        try:
            return await self.core.hello(request)
        except (LogError, ValueError) as exc:
            await self._fail(context, exc)

    async def ResetLog(self, request, context):
        try:
            return await self.core.reset(request)
        except (LogError, ValueError) as exc:
            await self._fail(context, exc)

    async def Append(self, request, context):
        try:
            return await self.core.append(request)
        except (LogError, ValueError) as exc:
            await self._fail(context, exc)

    async def Frames(self, request, context):
        try:
            async for batch in self.core.frames(request):
                yield batch
        except asyncio.CancelledError:
            return  # the replica went away or the server is stopping: a normal end
        except (LogError, ValueError) as exc:
            await self._fail(context, exc)

    async def Snapshot(self, request, context):
        # written, not yielded: a client that cancels mid-copy (an embedded replica closing)
        # fails the write here, a normal end, instead of an error grpc logs for the method
        try:
            async for chunk in self.core.snapshot(request):
                try:
                    await context.write(chunk)
                except _SEND_FAILED:
                    return  # the call ended (the client cancelled it): nobody to send the rest to
        except OutOfRange as exc:
            await context.abort(grpc.StatusCode.OUT_OF_RANGE, str(exc))
        except (LogError, ValueError) as exc:
            await self._fail(context, exc)

    async def Ack(self, request, context):
        return await self.core.ack(request)

    async def Status(self, request, context):
        return self.core.status(request)

    async def DropLog(self, request, context):
        try:
            return await self.core.drop(request)
        except ValueError as exc:
            await self._fail(context, exc)


# Snapshot streams at once on the public port. Each copies the database to a file (held until
# its reader is done) while holding the database's lock, which the primary's Append waits for:
# unbounded, a token holder's loop of Snapshots would fill the disk and stall the primary's commits.
PUBLIC_SNAPSHOTS = 4


class PublicReplicationServicer(ReplicationServicer):
    """The public port (--public-listen): applications' embedded replicas with a bearer token.
    common.authz lets only Hello, Frames and Snapshot through, for the token's databases; Hello
    there never creates a log (a token holder cannot make databases appear). A Snapshot there is
    of the database as it is (a past point is the operator's restore, not a reader's: rows
    deleted since stay out of reach), and at most PUBLIC_SNAPSHOTS run at once
    (RESOURCE_EXHAUSTED beyond: the embedded replica retries)."""

    def __init__(self, core: ReplicationCore) -> None:
        super().__init__(core)
        self.snapshots = 0

    async def Hello(self, request, context):
        try:
            return await self.core.hello(request, existing=True)
        except (LogError, ValueError) as exc:
            await self._fail(context, exc)

    async def Snapshot(self, request, context):
        if request.upto_frame_no or request.as_of_unix_ms:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                "a snapshot of a past point is not served on this port")
        if self.snapshots >= PUBLIC_SNAPSHOTS:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"{PUBLIC_SNAPSHOTS} snapshots are being sent on this port; retry later")
        self.snapshots += 1
        try:
            await super().Snapshot(request, context)
        finally:
            self.snapshots -= 1


SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Replication"].full_name
