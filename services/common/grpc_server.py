"""Run a grpc.aio server with health checking and reflection until SIGINT/SIGTERM.

Every sqld service serves grpc.health.v1 (overall and per service name) and
server reflection, so `grpcurl -plaintext HOST:PORT list` works against any of them.
"""
from __future__ import annotations

import asyncio
import logging
import signal
from typing import Awaitable, Callable, Iterable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

log = logging.getLogger(__name__)

SERVER_OPTIONS = [
    # Requests may carry a value as large as SQLite allows (1e9 bytes; query.proto).
    ("grpc.max_receive_message_length", 1100 * 1024 * 1024),
    ("grpc.max_send_message_length", 256 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.so_reuseport", 0),
]


async def serve(listen: str, register: Callable[[grpc.aio.Server], Iterable[str]],
                on_stop: Callable[[], Awaitable[None]] | None = None,
                grace: float = 5.0,
                on_stopping: Callable[[], Awaitable[None]] | None = None) -> None:
    """Serve on `listen` ("host:port" or "unix:/path") until a stop signal.

    `register` adds the service's servicers to the server and returns their full names
    (e.g. "sqld.v1.QueryService"); health and reflection are added here. `on_stopping` runs
    before the server stops (e.g. to end long-lived streams normally), `on_stop` after.
    """
    server = grpc.aio.server(options=SERVER_OPTIONS)
    names = list(register(server))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        names + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server)
    port = server.add_insecure_port(listen)
    if port == 0 and not listen.startswith("unix:"):
        raise SystemExit(f"cannot listen on {listen}: address in use or invalid; choose another with --listen")
    await server.start()
    for name in names + [""]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving grpc on %s services=%s", listen, ",".join(names))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping (grace %.1fs)", grace)
    for name in names + [""]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    if on_stopping is not None:
        await on_stopping()
    await server.stop(grace)
    if on_stop is not None:
        await on_stop()
    log.info("stopped")
