"""Scheduler configuration."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from sqld.common import config, grpc_tls


@dataclasses.dataclass(frozen=True)
class Config(grpc_tls.TlsConfig, config.Common):
    """sqld scheduler: the public query service; orders work on each database."""

    listen: str = dataclasses.field(default="127.0.0.1:7001", metadata={"help": "gRPC address, host:port or unix:/path"})
    storage: str = dataclasses.field(default="127.0.0.1:7003", metadata={"help": "address of the storage service"})
    default_database: str = dataclasses.field(default="main", metadata={"help": "database used when a session names none"})
    max_connections: int = dataclasses.field(default=64, metadata={"help": "storage connections per database"})
    max_sessions: int = dataclasses.field(default=1000, metadata={"help": "open sessions before new ones are refused"})
    wait_timeout: float = dataclasses.field(default=30.0, metadata={"help": "seconds to wait for a connection or the writer token"})
    idle_in_transaction_timeout: float = dataclasses.field(default=60.0, metadata={"help": "seconds an open transaction may sit idle before it is rolled back and its session closed (0 = never)"})
    max_write_transaction_seconds: float = dataclasses.field(default=600.0, metadata={"help": "seconds a transaction may hold the database's writer token before it is rolled back and its session closed with 25P04 (0 = never)"})
    open_timeout: float = dataclasses.field(default=10.0, metadata={"help": "seconds to wait for storage when opening a connection"})
    replica: str = dataclasses.field(default="", metadata={"help": "address of a replica storage serving this site's reads (empty: every read on --storage, the primary)"})
    replication: str = dataclasses.field(default="", metadata={"help": "address of the replication service, for pg_stat_replication"})
    read_your_writes_wait: float = dataclasses.field(default=0.5, metadata={"help": "seconds a read waits for the replica to apply the session's last write before it goes to the primary"})
    auth_public_key: str = dataclasses.field(default="", metadata={"help": "PEM Ed25519 public key: QueryService calls need a JWT signed by its private key (authorization: Bearer <token>); required unless --grpc-insecure"})
    max_replica_lag: float = dataclasses.field(default=5.0, metadata={"help": "default staleness bound in seconds: a replica lagging more is skipped"})


def load(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    return config.load(Config, "scheduler", argv, environ)
