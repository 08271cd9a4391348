"""Launcher configuration: flags `--pg-port`, environment `SQLD_LAUNCHER_PG_PORT`, `[launcher]` in --config.

The same rule as every service (common.config). A `--config FILE` given to the launcher is
passed on to every service it starts, so one TOML file can hold a [launcher] table and a
table per service ([edge], [scheduler], [storage], [replication]); the launcher's own flags
for each service (addresses, folders, roles) still win over the file.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Annotated, Literal

import pydantic

from sqld.common import config


@dataclasses.dataclass(frozen=True)
class Config:
    """sqld launcher: the whole system as local processes on loopback (`make run`)."""

    data_dir: str = dataclasses.field(default="data", metadata={"help": "folder for database files"})
    host: str = dataclasses.field(default="127.0.0.1", metadata={"help": "address every service binds"})
    pg_port: int = dataclasses.field(default=5432, metadata={"help": "PostgreSQL port of the edge"})
    pg_replica_port: int = dataclasses.field(default=5433, metadata={"help": "PostgreSQL port of the replica site's edge"})
    grpc_base_port: int = dataclasses.field(default=7000, metadata={"help": "the services take this port and the next eighteen (gRPC, then 7010-7017: Prometheus metrics, 7018: embedded replicas)"})
    replicas: Annotated[int, pydantic.Field(ge=0, le=2)] = dataclasses.field(default=2, metadata={"help": "replica storages to run (0: one site, no replication)"})
    backend: Literal["sqlite", "mvsqlite", "libsql"] = dataclasses.field(default="sqlite", metadata={"help": "storage backend: sqlite (a local file per database) or mvsqlite (pages in FoundationDB; without --fdb-cluster-file on the in-memory FoundationDB TEST DOUBLE, for trials and benchmarks only); libsql: a deprecated name of sqlite"})
    fdb_cluster_file: str = dataclasses.field(default="", metadata={"help": "mvsqlite: FoundationDB cluster file (default: FoundationDB's own FDB_CLUSTER_FILE variable)"})


def load(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    return config.load(Config, "launcher", argv, environ)


def config_file(argv: Sequence[str], environ: Mapping[str, str]) -> str:
    """The --config FILE (or SQLD_LAUNCHER_CONFIG) the launcher was given, "" for none."""
    args = list(argv)
    for i, a in enumerate(args):
        if a == "--config" and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return environ.get("SQLD_LAUNCHER_CONFIG", "")
