"""Storage service configuration."""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

from common import config


@dataclasses.dataclass(frozen=True)
class Config:
    """sqld storage: serves SQLite databases to the scheduler over gRPC."""

    listen: str = dataclasses.field(default="127.0.0.1:7003", metadata={"help": "gRPC address, host:port or unix:/path"})
    data_dir: str = dataclasses.field(default="data", metadata={"help": "folder holding the database files (<name>.db)"})
    databases: tuple[str, ...] = dataclasses.field(default=("main",), metadata={"help": "comma-separated database names, created if missing"})
    threads: int = dataclasses.field(default=16, metadata={"help": "worker threads running SQLite"})


def load(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    return config.load(Config, "storage", argv, environ)
