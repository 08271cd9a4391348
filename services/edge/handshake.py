"""Everything before the session opens: SSL/GSS negotiation, TLS, cancel requests, authentication.

Connection._startup calls `begin`; it reads startup packets until the StartupMessage,
switches to TLS when asked and configured, checks the user with the configured method
(auth/), and gives the startup parameters back, or None when the connection must end
(a CancelRequest, a failed login, a timeout: the FATAL has been queued). The whole of it
is bounded by --startup-timeout, so a client that stalls half-way holds nothing for long.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING

from edge.auth import AuthFailed, exchange
from edge.pgwire import codec

if TYPE_CHECKING:
    from edge.connection import Connection

log = logging.getLogger(__name__)

MAX_AUTH_MESSAGE = 10_000  # a password or SCRAM message is about 100 bytes


async def begin(conn: Connection) -> codec.Startup | None:
    timeout = conn.server.cfg.startup_timeout
    try:
        async with asyncio.timeout(timeout if timeout > 0 else None):
            start = await _negotiate(conn)
            if start is None:
                return None
            user = start.params.get("user", "")
            if not user:
                conn._fatal("28000", "no PostgreSQL user name specified in startup packet")
                return None
            if conn.server.cfg.tls_required and not is_tls(conn):
                log.info("refused a connection without TLS peer=%s user=%s", conn.peer, user)
                conn._fatal("28000", "connection without TLS refused: this server accepts TLS connections only",
                            hint="connect with sslmode=require")
                return None
            if not await _authenticate(conn, user):
                return None
            return start
    except TimeoutError:
        log.info("startup timed out peer=%s after=%ss", conn.peer, timeout)
        conn._fatal("08P01", "canceling authentication due to timeout")
        return None


def is_tls(conn: Connection) -> bool:
    return conn.writer.get_extra_info("sslcontext") is not None


async def _negotiate(conn: Connection) -> codec.Startup | None:
    """Startup packets until the StartupMessage; None after a CancelRequest or a failed TLS handshake."""
    while True:
        length = codec.startup_length(await conn._read(4))
        start = codec.parse_startup(await conn._read(length))
        if start.code == codec.SSL_REQUEST:
            if is_tls(conn):
                raise codec.ProtocolError("SSLRequest on a connection that already uses TLS")
            ctx = conn.server.tls
            conn.send(b"N" if ctx is None else b"S")
            await conn.flush_socket()
            if ctx is not None and not await _start_tls(conn, ctx):
                return None
        elif start.code == codec.GSSENC_REQUEST:
            conn.send(b"N")
            await conn.flush_socket()
        elif start.code == codec.CANCEL_REQUEST:
            await conn.server.cancel(start.cancel_pid, start.cancel_key)
            return None
        else:
            return start


async def _start_tls(conn: Connection, ctx: ssl.SSLContext) -> bool:
    # Bytes that arrived before the handshake were sent in clear text yet would be read as if
    # they came over TLS: refuse them (PostgreSQL's fix for CVE-2021-23214). No public API
    # exposes the reader's buffer, hence the private attribute.
    if getattr(conn.reader, "_buffer", b""):
        raise codec.ProtocolError("received unencrypted data after SSL request")
    try:
        await conn.writer.start_tls(ctx)
    except (ssl.SSLError, ConnectionError, OSError) as exc:
        log.info("TLS handshake failed peer=%s err=%s", conn.peer, exc)
        return False
    return True


async def _authenticate(conn: Connection, user: str) -> bool:
    """Run the configured method's exchange; False (FATAL queued) when the client fails it."""
    ex = exchange.start(conn.server.auth, user)
    out = ex.first()
    try:
        while not ex.done:
            conn.send(out)
            await conn.flush_socket()
            kind, length = codec.message_header(await conn._read(5), MAX_AUTH_MESSAGE)
            body = await conn._read(length) if length else b""
            if kind == b"X":
                return False  # psql hangs up to ask its user for the password, then reconnects
            if kind != b"p":
                raise codec.ProtocolError(f"expected password response, got message type {kind!r}")
            out = ex.step(body)
    except AuthFailed as exc:
        log.info("authentication failed peer=%s user=%s method=%s reason=%s",
                 conn.peer, user, ex.method, exc.reason)
        conn._fatal("28P01", str(exc))
        return False
    conn.send(out)  # SCRAM's server-final, ahead of AuthenticationOk
    return True
