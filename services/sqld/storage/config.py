"""Storage service configuration."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from sqld.common import config, grpc_tls


@dataclasses.dataclass(frozen=True)
class Config(grpc_tls.TlsConfig, config.Common):
    """sqld storage: serves SQLite databases to the scheduler over gRPC."""

    listen: str = dataclasses.field(default="127.0.0.1:7003", metadata={"help": "gRPC address, host:port or unix:/path"})
    data_dir: str = dataclasses.field(default="data", metadata={"help": "folder holding the database files (<name>.db)"})
    databases: tuple[str, ...] = dataclasses.field(default=("main",), metadata={"help": "comma-separated database names, created if missing"})
    threads: int = dataclasses.field(default=16, metadata={"help": "worker threads for opening and closing connections, beyond the one each open connection may use"})
    max_connections: int = dataclasses.field(default=256, metadata={"help": "open SQLite connections (Connect streams), each with a worker thread of its own; more are refused (RESOURCE_EXHAUSTED, 53300)"})
    replication: str = dataclasses.field(default="", metadata={"help": "primary: address of the replication service; every commit is logged there before it is acknowledged (empty: no replication)"})
    synchronous_databases: tuple[str, ...] = dataclasses.field(default=(), metadata={"help": "primary: databases whose commits wait until a replica applied them (remote_apply)"})
    replica_of: str = dataclasses.field(default="", metadata={"help": "replica: address of the replication service to follow; serves reads only"})
    replica_id: str = dataclasses.field(default="", metadata={"help": "replica: name shown in pg_stat_replication (default: the listen address)"})
    backend: str = dataclasses.field(default="sqlite", metadata={"help": "sqlite (a local SQLite file per database) or mvsqlite (pages in FoundationDB); libsql: a deprecated name of sqlite"})
    fdb_cluster_file: str = dataclasses.field(default="", metadata={"help": "mvsqlite: FoundationDB cluster file (default: FDB_CLUSTER_FILE or the fdb default)"})
    fdb_double: str = dataclasses.field(default="", metadata={"help": "mvsqlite: host:port of the FoundationDB TEST DOUBLE instead of a cluster (tests and local runs only)"})
    fdb_namespace_prefix: str = dataclasses.field(default="sqld/", metadata={"help": "mvsqlite: key prefix; each database lives under <prefix><name>/"})
    fdb_retention_seconds: float = dataclasses.field(default=-1.0, metadata={"help": "mvsqlite: how far back point-in-time restore and time travel reach, in seconds; GC keeps every version within it (default -1: 86400, 24 hours, as replication --retention-seconds; 600 on the FoundationDB test double, which holds every kept version in memory)"})
    fdb_gc_interval: float = dataclasses.field(default=60.0, metadata={"help": "mvsqlite: seconds between GC rounds (0: never)"})


def load(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Config:
    return config.load(Config, "storage", argv, environ)
