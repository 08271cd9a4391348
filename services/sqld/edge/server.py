"""The edge's listening socket and its registry of live connections (for CancelRequest).

It is the connections' Host (connection.py): the config, TLS context, auth policy and
scheduler stream they share (common.mux: every session on one stream), and `cancel`, which a CancelRequest arriving on a new connection
uses to reach the connection it names.
"""
from __future__ import annotations

import asyncio
import logging

import grpc

from sqld.common import grpc_client, grpc_tls, mux
from sqld.edge import commands, metrics, tls
from sqld.edge.auth import exchange
from sqld.edge.config import Config
from sqld.edge.connection import Connection
from sqld.v1 import activity_pb2, activity_pb2_grpc, admin_pb2_grpc, query_pb2, query_pb2_grpc

log = logging.getLogger(__name__)


def _address(peer: object) -> tuple[str, str]:
    """(host, port) of a socket peer, as log_connections shows them ("[local]" for a unix socket)."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        return str(peer[0]), str(peer[1])
    return "[local]", ""


class EdgeServer:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.auth = exchange.policy(cfg.auth, cfg.users)  # raises ValueError subclasses on bad config
        self.tls = tls.server_context(cfg)
        self.channel = grpc_client.channel(cfg.scheduler, grpc_tls.read_token(cfg.scheduler_token_file, "edge"))
        stub = query_pb2_grpc.QueryServiceStub(self.channel)
        self.sessions = mux.Channel(stub.Multiplex, query_pb2.SessionRequestFrames, "scheduler")
        self.admin = admin_pb2_grpc.DatabaseAdminStub(self.channel)
        self.activity = activity_pb2_grpc.SessionAdminStub(self.channel)
        self.superusers = frozenset(u.strip() for u in cfg.superusers.split(",") if u.strip())
        if commands.Settings("", {}, {"statement_timeout": cfg.statement_timeout}).statement_timeout_s() == 0 \
                and cfg.statement_timeout.strip() not in ("0", "0ms", "0s"):
            raise ValueError(f"--statement-timeout {cfg.statement_timeout!r}: expected a duration such as 500ms or 30s")
        self.setting_defaults = {"statement_timeout": cfg.statement_timeout.strip(),
                                 "log_min_duration_statement": str(cfg.log_min_duration_statement)}
        self.live: dict[int, Connection] = {}  # by pid (the scheduler's, see activity.proto)
        self._tasks: set[asyncio.Task] = set()
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        host, _, port = self.cfg.listen.rpartition(":")
        self._server = await asyncio.start_server(self._accept, host or "127.0.0.1", int(port),
                                                  reuse_address=True)
        log.info("listening for postgres clients listen=%s", self.cfg.listen)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(self, reader, writer)
        metrics.CONNECTIONS.inc()
        if self.cfg.log_connections:
            host, port = _address(conn.transport.peer)
            log.info("connection received host=%s port=%s", host, port)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await conn.run()
        finally:
            if self.live.get(conn.pid) is conn:
                del self.live[conn.pid]
            if task is not None:
                self._tasks.discard(task)

    async def cancel(self, pid: int, key: int) -> None:
        """A CancelRequest: stop the running statement of connection `pid` if `key` matches.
        A pid that is not this edge's may be another edge's of the site (clients behind a load
        balancer): the scheduler checks the key and cancels it there."""
        conn = self.live.get(pid)
        if conn is not None:
            if conn.secret == key:
                conn.cancel()
            return
        if key:
            try:
                await self.activity.SignalSession(activity_pb2.SignalSessionRequest(
                    pid=pid, signal=activity_pb2.SIGNAL_CANCEL, cancel_key=key), timeout=10)
            except grpc.aio.AioRpcError as exc:
                log.info("cancel request not passed on pid=%d err=%s", pid, exc.code().name)

    async def stop(self, grace: float) -> None:
        if self._server is not None:
            self._server.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        await self.sessions.close()
        await self.channel.close()
