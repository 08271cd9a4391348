"""The services of a sqld deployment and the exact commands that start them.

The local launcher, the test harness and docker-compose.yml all start these commands
(a test checks the compose file against this plan), so there is one truth about how each
service is run. Only addresses and folders differ between deployments.

The default deployment: the primary site (storage primary, scheduler, edge on pg port
5432), the replication service, two replica storages, and a replica site (its own
scheduler and edge on 5433) that reads from replica1 and sends writes to the primary.
`replicas=0` gives a single site without replication.

`backend="mvsqlite"` keeps pages in FoundationDB: in the cluster of `fdb_cluster_file`, or, when
none is given, in the FoundationDB TEST DOUBLE started as the first service (in memory; for tests
and local trials only). Replication works the same on both backends: the storage primary feeds
the log (from the WAL, or from the page store's changelog), and replicas are local files.

Every service runs gRPC over TLS with a certificate of the deployment CA from `pki_dir`
(`<instance>.crt`/`.key`, made by `launcher.pki.ensure` before the first start); the schedulers
check bearer tokens with `auth.pub`, and the edges present `edge.token`. The FoundationDB test
double is the one plaintext service (a test stand-in, never a deployment member).
"""
from __future__ import annotations

import dataclasses
import os
import sys


@dataclasses.dataclass(frozen=True)
class Ports:
    pg: int = 5432
    edge: int = 7000       # edge gRPC health/reflection
    scheduler: int = 7001
    storage: int = 7003
    replication: int = 7004
    replica1: int = 7005
    replica2: int = 7006
    replica_edge: int = 7007
    replica_scheduler: int = 7008
    pg_replica: int = 5433
    fdb_double: int = 7009  # only with the mvsqlite backend on the FoundationDB test double
    # Prometheus metrics (GET /metrics), one port per process
    replication_metrics: int = 7010
    edge_metrics: int = 7011
    scheduler_metrics: int = 7012
    storage_metrics: int = 7013
    replica1_metrics: int = 7014
    replica2_metrics: int = 7015
    replica_edge_metrics: int = 7016
    replica_scheduler_metrics: int = 7017
    replication_public: int = 7018  # embedded replicas (sqldclient replica=) with a bearer token

    @classmethod
    def from_base(cls, base: int, pg: int, pg_replica: int) -> Ports:
        return cls(pg=pg, edge=base, scheduler=base + 1, storage=base + 3, replication=base + 4,
                   replica1=base + 5, replica2=base + 6, replica_edge=base + 7, replica_scheduler=base + 8,
                   pg_replica=pg_replica, fdb_double=base + 9, replication_metrics=base + 10,
                   edge_metrics=base + 11, scheduler_metrics=base + 12, storage_metrics=base + 13,
                   replica1_metrics=base + 14, replica2_metrics=base + 15, replica_edge_metrics=base + 16,
                   replica_scheduler_metrics=base + 17, replication_public=base + 18)


@dataclasses.dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    health: str  # gRPC address answering grpc.health.v1
    role: str = ""  # the role in its certificate (common.pki); "" for the plaintext test double
    metrics: str = ""  # the address serving its Prometheus metrics (GET /metrics); "" for none
    # Start order: the services of one wave start together once every service of the waves
    # before is SERVING (page store and log, storage nodes, schedulers, edges).
    wave: int = 0


def tls_args(pki_dir: str, instance: str) -> list[str]:
    """The flags giving a service its certificate, key and the deployment CA."""
    return ["--grpc-ca", os.path.join(pki_dir, "ca.crt"),
            "--grpc-cert", os.path.join(pki_dir, f"{instance}.crt"),
            "--grpc-key", os.path.join(pki_dir, f"{instance}.key")]


def services(ports: Ports, data_dir: str, host: str = "127.0.0.1", python: str = sys.executable,
             replicas: int = 2, backend: str = "sqlite", fdb_cluster_file: str = "",
             fdb_namespace_prefix: str = "sqld/", pki_dir: str | None = None) -> list[Service]:
    """Services in start order (each depends only on those of earlier waves). `pki_dir` holds the
    deployment's certificates and keys (default `<data_dir>/pki`)."""
    pki = pki_dir or os.path.join(data_dir, "pki")
    def addr(port: int) -> str:
        return f"{host}:{port}"

    def m(module: str, *args: str) -> list[str]:
        return [python, "-m", f"sqld.{module}", *args]

    def ops(role: str, port: int) -> list[str]:
        """The process's name in its logs (svc=storage role=replica1) and its metrics address."""
        return ["--role", role, "--metrics-listen", addr(port)]

    repl = addr(ports.replication)
    out: list[Service] = []
    storage_args: list[str] = []
    if backend == "mvsqlite":
        storage_args = ["--backend", "mvsqlite", "--fdb-namespace-prefix", fdb_namespace_prefix]
        if fdb_cluster_file:
            storage_args += ["--fdb-cluster-file", fdb_cluster_file]
        else:
            out.append(Service("fdbdouble", m("testing.fdbdouble.server", "--listen", addr(ports.fdb_double)),
                               addr(ports.fdb_double)))
            storage_args += ["--fdb-double", addr(ports.fdb_double)]
    if replicas:
        out.append(Service("replication", m("replication", *ops("primary", ports.replication_metrics),
                                             "--listen", repl, "--data-dir", os.path.join(data_dir, "replication"),
                                             "--public-listen", addr(ports.replication_public),
                                             "--auth-public-key", os.path.join(pki, "auth.pub"),
                                             *tls_args(pki, "replication")), repl, "replication",
                           addr(ports.replication_metrics)))
    out.append(Service("storage", m("storage", *ops("primary", ports.storage_metrics),
                                    "--listen", addr(ports.storage), "--data-dir", data_dir,
                                    *(["--replication", repl] if replicas else []), *storage_args,
                                    *tls_args(pki, "storage")),
                       addr(ports.storage), "storage-primary", addr(ports.storage_metrics), wave=1))
    replica_ports = [(ports.replica1, ports.replica1_metrics), (ports.replica2, ports.replica2_metrics)][:replicas]
    for i, (port, metrics_port) in enumerate(replica_ports, 1):
        out.append(Service(f"replica{i}", m("storage", *ops(f"replica{i}", metrics_port), "--listen", addr(port),
                                            "--data-dir", os.path.join(data_dir, f"replica{i}"),
                                            "--replica-of", repl, "--replica-id", f"replica{i}",
                                            *tls_args(pki, f"replica{i}")), addr(port), "storage-replica",
                           addr(metrics_port), wave=1))
    auth_key = ["--auth-public-key", os.path.join(pki, "auth.pub")]
    edge_token = ["--scheduler-token-file", os.path.join(pki, "edge.token")]
    out.append(Service("scheduler", m("scheduler", *ops("primary", ports.scheduler_metrics),
                                      "--listen", addr(ports.scheduler), "--storage", addr(ports.storage),
                                      *(["--replication", repl] if replicas else []),
                                      *tls_args(pki, "scheduler"), *auth_key), addr(ports.scheduler), "scheduler",
                       addr(ports.scheduler_metrics), wave=2))
    out.append(Service("edge", m("edge", *ops("primary", ports.edge_metrics),
                                 "--listen", addr(ports.pg), "--health-listen", addr(ports.edge),
                                 "--scheduler", addr(ports.scheduler), *tls_args(pki, "edge"), *edge_token),
                       addr(ports.edge), "edge", addr(ports.edge_metrics), wave=3))
    if replicas:
        out.append(Service("replica-scheduler", m("scheduler", *ops("replica", ports.replica_scheduler_metrics),
                                                  "--listen", addr(ports.replica_scheduler),
                                                  "--storage", addr(ports.storage),
                                                  "--replica", addr(ports.replica1), "--replication", repl,
                                                  *tls_args(pki, "replica-scheduler"), *auth_key),
                           addr(ports.replica_scheduler), "scheduler", addr(ports.replica_scheduler_metrics),
                           wave=2))
        out.append(Service("replica-edge", m("edge", *ops("replica", ports.replica_edge_metrics),
                                             "--listen", addr(ports.pg_replica),
                                             "--health-listen", addr(ports.replica_edge),
                                             "--scheduler", addr(ports.replica_scheduler),
                                             *tls_args(pki, "replica-edge"), *edge_token),
                           addr(ports.replica_edge), "edge", addr(ports.replica_edge_metrics), wave=3))
    return out
