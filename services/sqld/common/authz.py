"""Who may call what: one table of gRPC methods and the roles allowed to call them.

Internal callers are identified by their client certificate (mutual TLS; the role is the
certificate's `sqld:role:<role>` SAN URI, see `common.pki`). A caller without a valid
certificate never gets here: the TLS handshake refuses it (the client sees UNAVAILABLE), which
is how "unauthenticated" looks on an internal port. Should a call arrive without a verified
peer identity all the same, it is answered UNAUTHENTICATED. A verified caller whose role is not
in the method's row gets PERMISSION_DENIED naming the method and its role; a method missing from
the table is refused the same way (deny by default).

The public QueryService authenticates with bearer tokens instead (`common.tokens`): its rows say
TOKEN; the interceptor answers UNAUTHENTICATED without a valid token, and the scheduler checks
the token's database list and access (it knows the database being opened).

DATABASE_TOKEN: the replication service's public port (`--public-listen`: TLS without client
certificates) serves the read side of the log to applications' embedded replicas (sqldclient
`replica=`). There a call of one of these methods needs a bearer token (UNAUTHENTICATED without a
valid one) that may open the request's `database` (PERMISSION_DENIED otherwise; read-only tokens
do); nothing else is served there. The internal port never accepts tokens: its rows stay roles.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from sqld.common import pki
from sqld.common.tokens import Claims, TokenError, Verifier

log = logging.getLogger(__name__)

TOKEN = "bearer token"                 # the row of a public method
ANY_MEMBER = "any deployment member"   # any certificate of the CA (health, reflection)

POLICY: dict[str, frozenset[str] | str] = {
    "/sqld.v1.Storage/Connect": frozenset({"scheduler"}),
    "/sqld.v1.Storage/Multiplex": frozenset({"scheduler"}),
    "/sqld.v1.Replication/Hello": frozenset({"storage-primary", "storage-replica"}),
    # admin too: the operator's way out of a forked log (README, Replication).
    "/sqld.v1.Replication/ResetLog": frozenset({"storage-primary", "admin"}),
    "/sqld.v1.Replication/Append": frozenset({"storage-primary"}),
    # admin too: continuous backup follows the log (python -m sqld.backup save --continuous)
    "/sqld.v1.Replication/Frames": frozenset({"storage-replica", "admin"}),
    # storage-primary: point-in-time restore (CREATE DATABASE ... AS_OF_*) reads a past snapshot
    "/sqld.v1.Replication/Snapshot": frozenset({"storage-replica", "storage-primary", "admin"}),
    "/sqld.v1.Replication/Ack": frozenset({"storage-replica"}),
    # storage-replica: which databases exist (a replica follows them as they are created and dropped)
    "/sqld.v1.Replication/Status": frozenset({"scheduler", "admin", "storage-replica"}),
    "/sqld.v1.Replication/DropLog": frozenset({"storage-primary", "admin"}),
    "/sqld.v1.Storage/CreateDatabase": frozenset({"scheduler"}),
    "/sqld.v1.Storage/DropDatabase": frozenset({"scheduler"}),
    "/sqld.v1.Storage/ListDatabases": frozenset({"scheduler"}),
    "/sqld.v1.Storage/Backup": frozenset({"scheduler"}),
    "/sqld.v1.QueryService/Session": TOKEN,
    "/sqld.v1.QueryService/Execute": TOKEN,
    "/sqld.v1.QueryService/Multiplex": TOKEN,
    # the scheduler checks that the token may reach every database and write (scheduler/admin.py)
    "/sqld.v1.DatabaseAdmin/CreateDatabase": TOKEN,
    "/sqld.v1.DatabaseAdmin/DropDatabase": TOKEN,
    "/sqld.v1.DatabaseAdmin/ListDatabases": TOKEN,
    "/sqld.v1.DatabaseAdmin/Backup": TOKEN,
    # the same check (scheduler/activity.py); the edge acts for its clients (activity.proto)
    "/sqld.v1.SessionAdmin/ListSessions": TOKEN,
    "/sqld.v1.SessionAdmin/SignalSession": TOKEN,
}
DATABASE_TOKEN: frozenset[str] = frozenset({
    "/sqld.v1.Replication/Hello", "/sqld.v1.Replication/Frames", "/sqld.v1.Replication/Snapshot",
})
EMBEDDED_PREFIX = "embedded:"  # a token holder's Frames replica_id starts so (never an internal replica's)
PREFIX_POLICY: dict[str, str] = {
    "/grpc.health.v1.Health/": ANY_MEMBER,
    "/grpc.reflection.v1alpha.ServerReflection/": ANY_MEMBER,
    "/grpc.reflection.v1.ServerReflection/": ANY_MEMBER,
}


def rule(method: str) -> frozenset[str] | str | None:
    found = POLICY.get(method)
    if found is not None:
        return found
    for prefix, value in PREFIX_POLICY.items():
        if method.startswith(prefix):
            return value
    return None


def peer_role(context: grpc.aio.ServicerContext) -> str | None:
    """The role in the caller's verified certificate, or None if it presented none."""
    auth = context.auth_context()
    if auth.get("transport_security_type") != [b"ssl"] or not auth.get("x509_pem_cert"):
        return None
    for uri in auth.get("peer_uri", ()):
        text = uri.decode(errors="replace")
        if text.startswith(pki.ROLE_URI_PREFIX):
            return text[len(pki.ROLE_URI_PREFIX):]
    return ""  # a certificate of the CA that carries no role


Check = Callable[[object, grpc.aio.ServicerContext], Awaitable[None]]
EXPIRED = "the token expired; connect again with a new one"


def _wrap(handler: grpc.RpcMethodHandler, check: Check, expires: float | None = None) -> grpc.RpcMethodHandler:
    """The same handler, running `check(context)` before the method. A stream opened with a
    token that expires (`expires`, Unix time) ends with UNAUTHENTICATED when it does, sending
    or idle: an embedded replica's Frames stream does not outlive its credential."""
    def guarded(inner):
        if inspect.isasyncgenfunction(inner):
            async def gen(request, context):
                await check(request, context)
                items = inner(request, context)
                try:
                    while True:
                        try:
                            item = await (anext(items) if expires is None else _until(anext(items), expires, context))
                        except StopAsyncIteration:
                            return
                        yield item
                finally:
                    await items.aclose()
            return gen

        async def call(request, context):
            await check(request, context)
            result = inner(request, context)
            if not inspect.isawaitable(result):
                return result
            return await (result if expires is None else _until(result, expires, context))  # e.g. a query Session
        return call

    kw = {"request_deserializer": handler.request_deserializer,
          "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(guarded(handler.unary_unary), **kw)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(guarded(handler.unary_stream), **kw)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(guarded(handler.stream_unary), **kw)
    return grpc.stream_stream_rpc_method_handler(guarded(handler.stream_stream), **kw)


class Authorizer(grpc.aio.ServerInterceptor):
    """Enforces POLICY on a TLS server. `client_certs`: the server requires client certificates
    (internal services); without them (the scheduler's public port) only TOKEN and ANY_MEMBER
    methods can be called. `verifier`: checks bearer tokens; None accepts TOKEN methods without
    one (a scheduler started without --auth-public-key, in development)."""

    def __init__(self, client_certs: bool, verifier: Verifier | None) -> None:
        self.client_certs = client_certs
        self.verifier = verifier

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        allowed = rule(method)
        if allowed == TOKEN:
            if self.verifier is None:
                return handler
            try:
                claims = self.verifier.from_metadata(handler_call_details.invocation_metadata)
            except TokenError as exc:
                return _wrap(handler, _refuse(grpc.StatusCode.UNAUTHENTICATED, f"{method}: {exc}"))
            return handler if claims.exp is None else _wrap(handler, _nothing, claims.exp)
        if allowed == ANY_MEMBER and not self.client_certs:
            return handler  # health and reflection on the public port stay open
        if method in DATABASE_TOKEN and not self.client_certs and self.verifier is not None:
            try:
                claims = self.verifier.from_metadata(handler_call_details.invocation_metadata)
            except TokenError as exc:
                return _wrap(handler, _refuse(grpc.StatusCode.UNAUTHENTICATED, f"{method}: {exc}"))
            return _wrap(handler, _database_check(method, claims), claims.exp)
        if not self.client_certs:
            return _wrap(handler, _refuse(grpc.StatusCode.PERMISSION_DENIED,
                                          f"{method} is not served on this port"))
        return _wrap(handler, _role_check(method, allowed))


def _database_check(method: str, claims: Claims) -> Check:
    async def check(request: Any, context: grpc.aio.ServicerContext) -> None:
        if not claims.allows(request.database):
            log.info("refused rpc=%s peer=%s sub=%s db=%s", method, context.peer(), claims.sub, request.database)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"{method}: the token does not open database {request.database!r}")
        if hasattr(request, "replica_id"):  # shown in pg_stat_replication: never as an internal replica
            request.replica_id = f"{EMBEDDED_PREFIX}{claims.sub}:{request.replica_id}"
    return check


async def _until(step: Awaitable[Any], expires: float, context: grpc.aio.ServicerContext) -> Any:
    """`step`'s result, unless the token expires first: then it is cancelled and the call ends
    with UNAUTHENTICATED (whatever the method made of its cancellation)."""
    task = asyncio.ensure_future(step)
    try:
        done, _ = await asyncio.wait({task}, timeout=max(expires - time.time(), 0.0))
    finally:
        if not task.done():  # the token expired, or this call was cancelled
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await task
    if not done:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, EXPIRED)
    return task.result()


async def _nothing(request: Any, context: grpc.aio.ServicerContext) -> None:
    """No check beyond the token's, done already (a stream still ends when the token expires)."""


def _refuse(code: grpc.StatusCode, message: str) -> Check:
    async def check(request: Any, context: grpc.aio.ServicerContext) -> None:
        log.info("refused rpc=%s peer=%s code=%s", message.split(":")[0], context.peer(), code.name)
        await context.abort(code, message)
    return check


def _role_check(method: str, allowed: frozenset[str] | str | None) -> Check:
    async def check(request: Any, context: grpc.aio.ServicerContext) -> None:
        role = peer_role(context)
        if role is None:
            log.info("refused rpc=%s peer=%s: no verified client certificate", method, context.peer())
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                f"{method}: no verified client certificate of this deployment")
        if allowed == ANY_MEMBER:
            return
        if allowed is None or role not in allowed:
            log.info("refused rpc=%s peer=%s role=%s", method, context.peer(), role or "(none)")
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                f"{method} is not allowed for role {role or '(none)'!r}")
    return check
