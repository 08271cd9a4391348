"""gRPC channels between sqld services: fast reconnects, keepalive, large messages."""
from __future__ import annotations

import grpc

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


def channel(target: str) -> grpc.aio.Channel:
    """An insecure channel to "host:port" or "unix:/path"."""
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
