"""Replication service configuration."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from sqld.common import config, grpc_tls


@dataclasses.dataclass(frozen=True)
class Config(grpc_tls.TlsConfig, config.Common):
    """sqld replication: the durable WAL frame log of each database, streamed to replicas."""

    listen: str = dataclasses.field(default="127.0.0.1:7004", metadata={"help": "gRPC address, host:port or unix:/path"})
    data_dir: str = dataclasses.field(default="data/replication", metadata={"help": "folder holding one log folder per database"})
    compact_frames: int = dataclasses.field(default=20000, metadata={"help": "compact a log once it holds more frames than this after its snapshot"})
    keep_frames: int = dataclasses.field(default=5000, metadata={"help": "frames kept in the log after a compaction (replicas behind them take a snapshot)"})
    retention_seconds: float = dataclasses.field(default=86400.0, metadata={"help": "point-in-time restore reaches back this far: compaction keeps every transaction committed within it (0: compaction follows --keep-frames alone)"})
    public_listen: str = dataclasses.field(default="", metadata={"help": "host:port of the public port, TLS without client certificates: applications' embedded replicas (sqldclient replica=) read the log there with a bearer token that opens the database (needs --auth-public-key); empty: none"})
    auth_public_key: str = dataclasses.field(default="", metadata={"help": "PEM Ed25519 public key checking the public port's bearer tokens (the scheduler's --auth-public-key)"})
    sync_timeout: float = dataclasses.field(default=10.0, metadata={"help": "seconds a synchronous commit waits for a replica to apply it"})


def load(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    return config.load(Config, "replication", argv, environ)
