"""Edge configuration."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from sqld.common import config, grpc_tls


@dataclasses.dataclass(frozen=True)
class Config(grpc_tls.TlsConfig, config.Common):
    """sqld edge: terminates the PostgreSQL wire protocol and forwards to the scheduler."""

    listen: str = dataclasses.field(default="127.0.0.1:5432", metadata={"help": "PostgreSQL address, host:port"})
    scheduler: str = dataclasses.field(default="127.0.0.1:7001", metadata={"help": "address of the scheduler's query service"})
    default_database: str = dataclasses.field(default="main", metadata={"help": "database named in hints"})
    max_message_bytes: int = dataclasses.field(default=1_000_000_000 + 1024 * 1024, metadata={"help": "largest client message accepted (a Bind may carry a value as large as SQLite allows, 1e9 bytes, plus 1 MiB)"})
    health_listen: str = dataclasses.field(default="127.0.0.1:7000", metadata={"help": "gRPC address of the edge's health and reflection service"})
    auth: str = dataclasses.field(default="", metadata={"help": "trust, password, md5 or scram-sha-256; empty: scram-sha-256 when --users is set, else trust"})
    users: str = dataclasses.field(default="", metadata={"help": "users file: name:secret lines (make them with python -m sqld.edge.auth NAME)"})
    tls_cert: str = dataclasses.field(default="", metadata={"help": "PEM certificate chain; with --tls-key, SSLRequest is answered 'S'"})
    tls_key: str = dataclasses.field(default="", metadata={"help": "PEM private key of --tls-cert"})
    tls_required: bool = dataclasses.field(default=False, metadata={"help": "refuse clients that do not switch to TLS (FATAL 28000)"})
    scheduler_token_file: str = dataclasses.field(default="", metadata={"help": "file holding the bearer token (JWT) the edge presents to the scheduler"})
    statement_timeout: str = dataclasses.field(default="0", metadata={"help": "the server's default statement_timeout for every session, as PostgreSQL's setting: 500ms, 30s, 5min (a bare number is ms); 0 = off. A session may SET its own"})
    # Named as PostgreSQL names them (a session reads them from here; README, Logs).
    log_connections: bool = dataclasses.field(default=False, metadata={"help": "log each connection attempt and each successful authentication, as PostgreSQL's log_connections"})
    log_disconnections: bool = dataclasses.field(default=False, metadata={"help": "log each session's end with its duration, as PostgreSQL's log_disconnections"})
    log_min_duration_statement: int = dataclasses.field(default=-1, metadata={"help": "log each statement that ran at least this many milliseconds, with its text and duration, as PostgreSQL's setting: -1 off, 0 every statement"})
    superusers: str = dataclasses.field(default="postgres", metadata={"help": "comma-separated user names that are superusers (is_superuser): they may cancel or terminate any session and see every query in pg_stat_activity; other users only their own"})
    startup_timeout: float = dataclasses.field(default=10.0, metadata={"help": "seconds a client has to finish TLS and authentication; 0 = no limit"})


def load(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    return config.load(Config, "edge", argv, environ)
