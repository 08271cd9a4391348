"""Per-database resources: a pool of storage connections and the writer token.

The writer token (a FIFO asyncio.Lock) orders this scheduler's writers to one database;
every call made while holding it also asks the primary storage for its writer turn
(Execute.take_writer), the one FIFO queue shared by every site, so no client ever meets
SQLite's 'database is locked'. Reads take only a connection, so they run concurrently. Waiting for either is bounded (back-pressure):
a full pool answers 53300, a writer token held too long answers 55P03.
"""
from __future__ import annotations

import asyncio
import functools
import logging

from sqld.common import grpc_client, mux, sqlstate
from sqld.common.sqlstate import SqlError
from sqld.scheduler import metrics
from sqld.scheduler.storage_client import StorageConnection, StorageUnavailable
from sqld.v1 import common_pb2, storage_pb2, storage_pb2_grpc

log = logging.getLogger(__name__)


class DatabasePool:
    def __init__(self, name: str, connections: mux.Channel, max_connections: int,
                 wait_timeout: float, open_timeout: float, read_at: common_pb2.ReadAt | None = None) -> None:
        self.name = name
        self.read_at = read_at
        self._connections = connections
        self._idle: list[StorageConnection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self.writer = asyncio.Lock()
        self.wait_timeout = wait_timeout
        self.open_timeout = open_timeout

    @property
    def busy(self) -> bool:
        """Every connection slot is taken: acquire() will wait."""
        return self._slots.locked()

    async def acquire(self) -> StorageConnection:
        try:
            if self._slots.locked():
                with metrics.POOL_WAIT_SECONDS.time():
                    await asyncio.wait_for(self._slots.acquire(), self.wait_timeout)
            else:  # fast path: no timer task when a slot is free
                await self._slots.acquire()
        except TimeoutError:
            metrics.WAIT_TIMEOUTS.labels("connection").inc()
            raise SqlError(sqlstate.TOO_MANY_CONNECTIONS, f"all storage connections of database {self.name} are busy; "
                       f"waited {self.wait_timeout:.0f}s, try again later") from None
        while self._idle:
            conn = self._idle.pop()
            if conn.alive:
                return conn
            conn.close()
        conn = self._connection()
        try:
            await conn.open(self.open_timeout)
        except BaseException:
            conn.close()
            self._slots.release()
            raise
        return conn

    def _connection(self) -> StorageConnection:
        """A new, unopened connection (tests/integration give the pool one of their own)."""
        return StorageConnection(self._connections, self.name, self.read_at)

    def release(self, conn: StorageConnection, reuse: bool = True) -> None:
        if reuse and conn.alive and not conn.in_transaction:
            self._idle.append(conn)
        else:
            conn.close()
        self._slots.release()

    async def acquire_writer(self) -> None:
        try:
            if self.writer.locked():
                with metrics.WRITE_TOKEN_WAIT_SECONDS.time():
                    await asyncio.wait_for(self.writer.acquire(), self.wait_timeout)
            else:
                await self.writer.acquire()
        except TimeoutError:
            metrics.WAIT_TIMEOUTS.labels("write_token").inc()
            raise SqlError(sqlstate.LOCK_NOT_AVAILABLE, f"could not obtain the write lock on database {self.name} within "
                       f"{self.wait_timeout:.0f}s: another transaction holds it") from None

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


class Pools:
    """Every database's pool, over one shared stream to the storage service (common.mux)."""

    def __init__(self, storage_target: str, max_connections: int, wait_timeout: float,
                 open_timeout: float) -> None:
        self._channel = self.channel = grpc_client.channel(storage_target)
        stub = storage_pb2_grpc.StorageStub(self._channel)
        self._connections = mux.Channel(functools.partial(stub.Multiplex, wait_for_ready=True),
                                        storage_pb2.ConnectRequestFrames, f"storage {storage_target}")
        self._pools: dict[tuple[str, int, int], DatabasePool] = {}
        self._args = (max_connections, wait_timeout, open_timeout)

    async def get(self, database: str, read_at: common_pb2.ReadAt | None = None) -> DatabasePool:
        """The pool for `database` (as of `read_at`, for time travel); raises
        StorageUnavailable (NOT_FOUND) if storage lacks it."""
        if read_at is not None and not (read_at.version or read_at.unix_ms):
            read_at = None
        key = (database, read_at.version, read_at.unix_ms) if read_at is not None else (database, 0, 0)
        pool = self._pools.get(key)
        if pool is None:
            candidate = DatabasePool(database, self._connections, *self._args, read_at=read_at)
            conn = await candidate.acquire()  # proves the database exists
            candidate.release(conn)
            pool = self._pools.setdefault(key, candidate)
        return pool

    def forget(self, database: str) -> None:
        """The database was dropped: its pools go (a database created again under that name
        starts afresh)."""
        for key in [k for k in self._pools if k[0] == database]:
            self._pools.pop(key).close()

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        await self._connections.close()
        await self._channel.close()


__all__ = ["DatabasePool", "Pools", "StorageUnavailable"]
