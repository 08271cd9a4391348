"""One client socket: read a message, send, flush, a FATAL error, TLS. The bottom of the edge.

Everything above (handshake, the handlers, the session) writes to the client through this,
and reads from it only here, so a client that goes away is one exception, ClientGone, that the
connection loop ends on quietly.
"""
from __future__ import annotations

import asyncio
import ssl
from typing import Any

from sqld.edge import metrics
from sqld.edge.pgwire import codec
from sqld.edge.pgwire import messages as m

SEND_BUFFER = 64 * 1024  # bytes queued by send() before they are handed to the socket unasked


class ClientGone(Exception):
    """The client closed the connection (or we must close it)."""


class Transport:
    """`send` queues; the queue goes to the socket in one write at `flush`, before any read (so
    nothing the client waits for is held back), at SEND_BUFFER bytes, and at close: a query's
    rows, CommandComplete and ReadyForQuery leave in one system call, as PostgreSQL's own
    output buffer does."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_message_bytes: int) -> None:
        self._reader = reader
        self._writer = writer
        self.max_message_bytes = max_message_bytes
        self.peer: Any = writer.get_extra_info("peername")
        self._queued: list[bytes] = []
        self._queued_bytes = 0

    async def read(self, n: int) -> bytes:
        self._write()
        try:
            data = await self._reader.readexactly(n)
            metrics.BYTES_RECEIVED.inc(n)
            return data
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise ClientGone() from exc

    async def read_message(self, max_len: int | None = None) -> tuple[bytes, bytes]:
        """One message after startup: its type byte and body; the length is checked first."""
        kind, length = codec.message_header(await self.read(5), self.max_message_bytes if max_len is None else max_len)
        return kind, (await self.read(length) if length else b"")

    def send(self, data: bytes) -> None:
        if data:
            metrics.BYTES_SENT.inc(len(data))
            self._queued.append(data)
            self._queued_bytes += len(data)
            if self._queued_bytes >= SEND_BUFFER:
                self._write()

    def _write(self) -> None:
        """Hand what is queued to the socket (asyncio's buffer), in one write."""
        if self._queued:
            queued = self._queued
            self._queued, self._queued_bytes = [], 0
            if self._writer.transport.is_closing():
                # The client is gone (uvloop raises where asyncio would drop the bytes): the
                # next read or flush says so (ClientGone).
                return
            self._writer.write(queued[0] if len(queued) == 1 else b"".join(queued))

    async def flush(self) -> None:
        self._write()
        try:
            await self._writer.drain()
        except ConnectionError as exc:
            raise ClientGone() from exc

    def fatal(self, sqlstate: str, message: str, hint: str = "") -> None:
        """Queue a FATAL ErrorResponse; the connection ends after it."""
        self.send(m.error_response(sqlstate, message, severity="FATAL", hint=hint))

    def is_tls(self) -> bool:
        return self._writer.get_extra_info("sslcontext") is not None

    async def start_tls(self, ctx: ssl.SSLContext) -> None:
        """Switch to TLS. Bytes that arrived before the handshake were sent in clear text yet would
        be read as if they came over TLS: refuse them (PostgreSQL's fix for CVE-2021-23214). No
        public API exposes the reader's buffer, hence the private attribute."""
        if getattr(self._reader, "_buffer", b""):
            raise codec.ProtocolError("received unencrypted data after SSL request")
        self._write()
        await self._writer.start_tls(ctx)

    async def close(self) -> None:
        """Send what is queued (the client may be gone) and close the socket."""
        self._write()
        try:
            await self._writer.drain()
        except ConnectionError:
            pass
        self._writer.close()

    def hang_up(self) -> None:
        """Close the socket now (what was queued is still sent)."""
        self._write()
        self._writer.close()
