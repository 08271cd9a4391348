"""Edge configuration."""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

from common import config


@dataclasses.dataclass(frozen=True)
class Config:
    """sqld edge: terminates the PostgreSQL wire protocol and forwards to the scheduler."""

    listen: str = dataclasses.field(default="127.0.0.1:5432", metadata={"help": "PostgreSQL address, host:port"})
    scheduler: str = dataclasses.field(default="127.0.0.1:7001", metadata={"help": "address of the scheduler's query service"})
    default_database: str = dataclasses.field(default="main", metadata={"help": "database named in hints"})
    max_message_bytes: int = dataclasses.field(default=64 * 1024 * 1024, metadata={"help": "largest client message accepted"})
    health_listen: str = dataclasses.field(default="127.0.0.1:7000", metadata={"help": "gRPC address of the edge's health and reflection service"})


def load(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    return config.load(Config, "edge", argv, environ)
