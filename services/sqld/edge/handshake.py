"""Everything before the session opens: SSL/GSS negotiation, TLS, cancel requests, authentication.

The connection calls `begin`; it reads startup packets until the StartupMessage (or a
CancelRequest, which it hands back for the connection to act on), switches to TLS when asked
and configured, checks the user with the configured method (auth/), and gives the startup
packet back, or None when the connection must end (a failed login, a timeout: the FATAL has
been queued). The whole of it is bounded by --startup-timeout, so a client that stalls
half-way holds nothing for long. It uses only the transport's public API.
"""
from __future__ import annotations

import asyncio
import logging
import ssl

from sqld.common import sqlstate
from sqld.edge.auth import AuthFailed, exchange
from sqld.edge.config import Config
from sqld.edge.pgwire import codec
from sqld.edge.transport import Transport

log = logging.getLogger(__name__)

MAX_AUTH_MESSAGE = 10_000  # a password or SCRAM message is about 100 bytes


async def begin(t: Transport, cfg: Config, tls: ssl.SSLContext | None,
                auth: exchange.Policy) -> codec.Startup | None:
    """The StartupMessage of an authenticated client, a CancelRequest (code CANCEL_REQUEST),
    or None when the connection must end."""
    timeout = cfg.startup_timeout
    try:
        async with asyncio.timeout(timeout if timeout > 0 else None):
            start = await _negotiate(t, tls)
            if start is None or start.code == codec.CANCEL_REQUEST:
                return start
            user = start.params.get("user", "")
            if not user:
                t.fatal(sqlstate.INVALID_AUTHORIZATION_SPECIFICATION,
                        "no PostgreSQL user name specified in startup packet")
                return None
            if cfg.tls_required and not t.is_tls():
                log.info("refused a connection without TLS peer=%s user=%s", t.peer, user)
                t.fatal(sqlstate.INVALID_AUTHORIZATION_SPECIFICATION,
                        "connection without TLS refused: this server accepts TLS connections only",
                        hint="connect with sslmode=require")
                return None
            if not await _authenticate(t, auth, user):
                return None
            return start
    except TimeoutError:
        log.info("startup timed out peer=%s after=%ss", t.peer, timeout)
        t.fatal(sqlstate.PROTOCOL_VIOLATION, "canceling authentication due to timeout")
        return None


async def _negotiate(t: Transport, tls: ssl.SSLContext | None) -> codec.Startup | None:
    """Startup packets until the StartupMessage or a CancelRequest; None after a failed TLS handshake."""
    while True:
        length = codec.startup_length(await t.read(4))
        start = codec.parse_startup(await t.read(length))
        if start.code == codec.SSL_REQUEST:
            if t.is_tls():
                raise codec.ProtocolError("SSLRequest on a connection that already uses TLS")
            t.send(b"N" if tls is None else b"S")
            await t.flush()
            if tls is not None and not await _start_tls(t, tls):
                return None
        elif start.code == codec.GSSENC_REQUEST:
            t.send(b"N")
            await t.flush()
        else:
            return start


async def _start_tls(t: Transport, ctx: ssl.SSLContext) -> bool:
    try:
        await t.start_tls(ctx)
    except (ssl.SSLError, ConnectionError, OSError) as exc:
        log.info("TLS handshake failed peer=%s err=%s", t.peer, exc)
        return False
    return True


async def _authenticate(t: Transport, auth: exchange.Policy, user: str) -> bool:
    """Run the configured method's exchange; False (FATAL queued) when the client fails it."""
    ex = exchange.start(auth, user)
    out = ex.first()
    try:
        while not ex.done:
            t.send(out)
            await t.flush()
            kind, body = await t.read_message(MAX_AUTH_MESSAGE)
            if kind == b"X":
                return False  # psql hangs up to ask its user for the password, then reconnects
            if kind != b"p":
                raise codec.ProtocolError(f"expected password response, got message type {kind!r}")
            out = ex.step(body)
    except AuthFailed as exc:
        log.info("authentication failed peer=%s user=%s method=%s reason=%s",
                 t.peer, user, ex.method, exc.reason)
        t.fatal(sqlstate.INVALID_PASSWORD, str(exc))
        return False
    t.send(out)  # SCRAM's server-final, ahead of AuthenticationOk
    return True
