"""The services of one sqld site and the exact commands that start them.

The local launcher, the test harness and docker-compose.yml all start these commands
(a test checks the compose file against this plan), so there is one truth about how each
service is run. Only addresses and folders differ between deployments.
"""
from __future__ import annotations

import dataclasses
import sys


@dataclasses.dataclass(frozen=True)
class Ports:
    pg: int = 5432
    edge: int = 7000       # edge gRPC health/reflection
    scheduler: int = 7001
    storage: int = 7003
    fdb_double: int = 7009  # only with the mvsqlite backend on the FoundationDB test double


@dataclasses.dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    health: str  # gRPC address answering grpc.health.v1


def services(ports: Ports, data_dir: str, host: str = "127.0.0.1", python: str = sys.executable,
             backend: str = "libsql", fdb_cluster_file: str = "", fdb_namespace_prefix: str = "sqld/"
             ) -> list[Service]:
    """Services in start order (each depends only on those before it).

    `backend="mvsqlite"` stores pages in FoundationDB: in the cluster of `fdb_cluster_file`,
    or, when none is given, in the FoundationDB TEST DOUBLE started as the first service
    (in memory; for tests and local trials only)."""
    def addr(port: int) -> str:
        return f"{host}:{port}"

    first: list[Service] = []
    storage_args: list[str] = []
    if backend == "mvsqlite":
        storage_args = ["--backend", "mvsqlite", "--fdb-namespace-prefix", fdb_namespace_prefix]
        if fdb_cluster_file:
            storage_args += ["--fdb-cluster-file", fdb_cluster_file]
        else:
            first = [Service("fdbdouble", [python, "-m", "storage.fdb.double_server",
                                           "--listen", addr(ports.fdb_double)], addr(ports.fdb_double))]
            storage_args += ["--fdb-double", addr(ports.fdb_double)]
    return first + [
        Service("storage", [python, "-m", "storage", "--listen", addr(ports.storage),
                            "--data-dir", data_dir, *storage_args], addr(ports.storage)),
        Service("scheduler", [python, "-m", "scheduler", "--listen", addr(ports.scheduler),
                              "--storage", addr(ports.storage)], addr(ports.scheduler)),
        Service("edge", [python, "-m", "edge", "--listen", addr(ports.pg),
                         "--health-listen", addr(ports.edge), "--scheduler", addr(ports.scheduler)],
                addr(ports.edge)),
    ]
