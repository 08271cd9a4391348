"""gRPC adapter for the public DatabaseAdmin service (admin.proto): databases as objects.

The storage primary keeps the registry (storage/registry.py); this scheduler forwards to it
and owns what only it knows: the sessions open on a database (activity.Registry: the sessions of
every edge of this site and of gRPC Session callers). DROP DATABASE is refused with 55006 while
any of them uses the database, unless FORCE, which ends them (57P01, a running statement
interrupted, as pg_terminate_backend) before storage drops it; sessions at another site (the replica site's scheduler) lose their
storage connections when storage drops the database, and their next statement fails with
3D000. A caller needs a token that may write to every database (no `dbs` list, not
read-only). Refusals are StatementErrors in the response, as statement errors are.
"""
from __future__ import annotations

import logging

import grpc

from sqld.common import dbnames, sqlstate
from sqld.common.sqlstate import SqlError
from sqld.common.tokens import Verifier
from sqld.scheduler import access
from sqld.scheduler.pool import Pools
from sqld.scheduler.servicer import QueryServicer
from sqld.v1 import admin_pb2, admin_pb2_grpc, storage_pb2_grpc

log = logging.getLogger(__name__)

STORAGE_TIMEOUT = 60.0  # seconds: a fork copies the whole template
BACKUP_TIMEOUT = 3600.0  # seconds: a backup streams the whole database


class DatabaseAdminServicer(admin_pb2_grpc.DatabaseAdminServicer):
    def __init__(self, pools: Pools, queries: QueryServicer, verifier: Verifier | None,
                 replica_pools: Pools | None = None) -> None:
        self.pools = pools
        self.replica_pools = replica_pools
        self.queries = queries
        self.verifier = verifier
        self.storage = storage_pb2_grpc.StorageStub(pools.channel)

    async def _authorize(self, context: grpc.aio.ServicerContext) -> None:
        await access.require_operator(self.verifier, context, "managing databases")

    async def CreateDatabase(self, request: admin_pb2.CreateDatabaseRequest,  # noqa: N802
                             context: grpc.aio.ServicerContext) -> admin_pb2.DatabaseResponse:
        await self._authorize(context)
        problem = dbnames.problem(request.name)
        if problem is None and request.template:
            problem = dbnames.problem(request.template)
        if problem is not None:
            return admin_pb2.DatabaseResponse(error=problem.to_proto())
        response = await self.storage.CreateDatabase(request, timeout=STORAGE_TIMEOUT)
        if not response.HasField("error"):
            log.info("database created db=%s template=%s", request.name, request.template or "-")
        return response

    async def DropDatabase(self, request: admin_pb2.DropDatabaseRequest,  # noqa: N802
                           context: grpc.aio.ServicerContext) -> admin_pb2.DatabaseResponse:
        await self._authorize(context)
        if (problem := dbnames.problem(request.name)) is not None:
            return admin_pb2.DatabaseResponse(error=problem.to_proto())
        ended = 0
        users = self.queries.sessions_on(request.name)
        if users and not request.force:
            return admin_pb2.DatabaseResponse(error=SqlError(
                sqlstate.OBJECT_IN_USE, f'database "{request.name}" is being accessed by other users: there '
                f"{'is 1 other session' if users == 1 else f'are {users} other sessions'} using the database "
                "(DROP DATABASE ... WITH (FORCE) ends them)").to_proto())
        if users:
            ended = self.queries.terminate(request.name)
        response = await self.storage.DropDatabase(request, timeout=STORAGE_TIMEOUT)
        self.pools.forget(request.name)
        if self.replica_pools is not None:
            self.replica_pools.forget(request.name)
        response.sessions_ended = ended
        if not response.HasField("error") and not response.notices:
            log.info("database dropped db=%s sessions_ended=%d", request.name, ended)
        return response

    async def Backup(self, request: admin_pb2.BackupRequest,  # noqa: N802
                     context: grpc.aio.ServicerContext):
        await self._authorize(context)
        if (problem := dbnames.problem(request.name)) is not None:
            yield admin_pb2.BackupChunk(error=problem.to_proto())
            return
        async for chunk in self.storage.Backup(request, timeout=BACKUP_TIMEOUT):
            yield chunk

    async def ListDatabases(self, request: admin_pb2.ListDatabasesRequest,  # noqa: N802
                            context: grpc.aio.ServicerContext) -> admin_pb2.ListDatabasesResponse:
        await self._authorize(context)
        return await self.storage.ListDatabases(request, timeout=STORAGE_TIMEOUT)
