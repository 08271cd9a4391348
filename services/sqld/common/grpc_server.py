"""Run a grpc.aio server with health checking and reflection until SIGINT/SIGTERM.

Every sqld service serves grpc.health.v1 (overall and per service name) and
server reflection, so `grpcurl HOST:PORT list` works against any of them (with the
deployment's CA, and a client certificate on the internal services).

Security: with an identity, the port is TLS with the service's certificate; `client_certs`
makes the handshake require a client certificate signed by the deployment CA (internal
services), and `common.authz` checks each call's role (or bearer token) against its table.
Without an identity (`--grpc-insecure`, or the FoundationDB test double) the port is plaintext.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from sqld.common import authz, metrics
from sqld.common.grpc_tls import Identity
from sqld.common.tokens import Verifier

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


@dataclasses.dataclass(frozen=True)
class Security:
    """How a server admits callers: its identity (None: plaintext), whether the TLS handshake
    requires a client certificate, and the bearer-token verifier of public methods."""
    identity: Identity | None
    client_certs: bool = True
    verifier: Verifier | None = None


def _credentials(sec: Security) -> grpc.ServerCredentials:
    assert sec.identity is not None
    ident = sec.identity
    return grpc.ssl_server_credentials([(ident.key, ident.cert)],
                                       root_certificates=ident.ca if sec.client_certs else None,
                                       require_client_auth=sec.client_certs)


Register = Callable[[grpc.aio.Server], Iterable[str]]
Port = tuple[str, Register, Security | None]  # listen, register, security


async def _start(listen: str, register: Register,
                 security: Security | None) -> tuple[grpc.aio.Server, health.aio.HealthServicer, list[str]]:
    interceptors: list[grpc.aio.ServerInterceptor] = [metrics.RpcMetrics()]
    if security is not None and (security.identity is not None or security.verifier is not None):
        interceptors.append(authz.Authorizer(security.identity is not None and security.client_certs,
                                             security.verifier))
    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=interceptors)
    names = list(register(server))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        names + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server)
    if security is not None and security.identity is not None:
        port = server.add_secure_port(listen, _credentials(security))
    else:
        port = server.add_insecure_port(listen)
    if port == 0 and not listen.startswith("unix:"):
        raise SystemExit(f"cannot listen on {listen}: address in use or invalid; choose another with --listen")
    await server.start()
    for name in names + [""]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving grpc listen=%s services=%s tls=%s", listen, ",".join(names),
             "off" if security is None or security.identity is None
             else "mutual" if security.client_certs else "server")
    return server, health_servicer, names


async def serve(listen: str, register: Register,
                on_stop: Callable[[], Awaitable[None]] | None = None,
                grace: float = 5.0,
                on_stopping: Callable[[], Awaitable[None]] | None = None, *,
                security: Security | None, also: Sequence[Port] = ()) -> None:
    """Serve on `listen` ("host:port" or "unix:/path") until a stop signal.

    `register` adds the service's servicers to the server and returns their full names
    (e.g. "sqld.v1.QueryService"); health and reflection are added here. `on_stopping` runs
    before the server stops (e.g. to end long-lived streams normally), `on_stop` after.
    `security=None` is plaintext with no checks: only for the FoundationDB test double.
    `also`: more ports, each a server of its own (its servicers, its security), started and
    stopped with this one (the replication service's public port).
    """
    servers = [await _start(listen, register, security)]
    for extra_listen, extra_register, extra_security in also:
        servers.append(await _start(extra_listen, extra_register, extra_security))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping grace_seconds=%.1f", grace)
    for _, health_servicer, names in servers:
        for name in names + [""]:
            await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    if on_stopping is not None:
        await on_stopping()
    await asyncio.gather(*(server.stop(grace) for server, _, _ in servers))
    if on_stop is not None:
        await on_stop()
    log.info("stopped")
    _exit_after(EXIT_DEADLINE)


# After "stopped", a process exits once its threads end; a thread blocked on a peer that is gone
# (a FoundationDB read retrying, a call waiting for the replication service) must not keep it
# alive until a supervisor's SIGKILL. Everything is closed by then, and what such a thread was
# doing (a read, an Append the log cuts or takes again) is safe to drop, as after kill -9.
EXIT_DEADLINE = 5.0


def _exit_after(seconds: float) -> None:
    def exit_now() -> None:
        stuck = [t.name for t in threading.enumerate()
                 if t is not threading.current_thread() and not t.daemon and t is not threading.main_thread()]
        log.warning("exiting with threads still blocked threads=%s", ",".join(stuck) or "-")
        logging.shutdown()
        os._exit(0)
    timer = threading.Timer(seconds, exit_now)
    timer.daemon = True
    timer.start()
