"""gRPC channels between sqld services: TLS with the process's certificate, fast reconnects,
keepalive, large messages.

A process has one identity (its certificate, `common.grpc_tls`); its `__main__` calls
`configure` once at start, and every channel it opens afterwards presents that certificate
and trusts only the deployment CA. Until `configure` is called (in-process unit tests) or
after `configure(None)` (`--grpc-insecure`), channels are plaintext.
"""
from __future__ import annotations

import grpc

from sqld.common.grpc_tls import Identity

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    # Requests may carry a value as large as SQLite allows (1e9 bytes; query.proto).
    ("grpc.max_send_message_length", 1100 * 1024 * 1024),
    # A restarted peer should be found again within a fraction of a second.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.enable_retries", 0),
]

_identity: Identity | None = None


def configure(identity: Identity | None) -> None:
    """Every channel this process opens from now on uses `identity` (None: plaintext)."""
    global _identity
    _identity = identity


def credentials(identity: Identity | None = None, token: str | None = None) -> grpc.ChannelCredentials | None:
    """TLS credentials for `identity` (default: the process's), with a bearer token on every
    call when `token` is given; None when there is no identity (plaintext)."""
    ident = identity or _identity
    if ident is None:
        return None
    creds = grpc.ssl_channel_credentials(root_certificates=ident.ca, private_key=ident.key,
                                         certificate_chain=ident.cert)
    if token:
        creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(token))
    return creds


def channel(target: str, token: str | None = None) -> grpc.aio.Channel:
    """An asyncio channel to "host:port" or "unix:/path"."""
    creds = credentials(token=token)
    if creds is None:
        return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
    return grpc.aio.secure_channel(target, creds, options=CHANNEL_OPTIONS)


def sync_channel(target: str) -> grpc.Channel:
    """A blocking channel (for callers on worker threads)."""
    creds = credentials()
    if creds is None:
        return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
    return grpc.secure_channel(target, creds, options=CHANNEL_OPTIONS)
