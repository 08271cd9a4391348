"""Opening the mvsqlite backend from the storage configuration."""
from __future__ import annotations

import logging
import os

from sqld.storage.mvsqlite.backend import MvDatabase, open_databases
from sqld.storage.mvsqlite.kv import Kv

log = logging.getLogger(__name__)


def connect_kv(cluster_file: str, double: str) -> Kv:
    """FoundationDB from a cluster file, or the test double when one is named."""
    if double:
        from sqld.testing.fdbdouble.client import DoubleKv
        log.warning("mvsqlite on the FoundationDB TEST DOUBLE at %s: for tests only, data is not durable", double)
        return DoubleKv(double)
    from sqld.storage.mvsqlite.kv_fdb import FdbKv
    return FdbKv(cluster_file or os.environ.get("FDB_CLUSTER_FILE", ""))


RETENTION = 86400.0  # 24 hours, as the file backend's replication --retention-seconds
# The test double keeps every version GC keeps in memory (~4.9 KiB per page version, measured):
# 24 hours of writes at its ~40 commits/s would not fit, so trials and tests keep 10 minutes.
DOUBLE_RETENTION = 600.0


def retention(cfg) -> float:  # cfg: storage.config.Config
    """--fdb-retention-seconds, or its default for where the pages live (a negative value)."""
    if cfg.fdb_retention_seconds >= 0:
        return float(cfg.fdb_retention_seconds)
    return DOUBLE_RETENTION if cfg.fdb_double else RETENTION


def open_from_config(cfg) -> dict[str, MvDatabase]:  # cfg: storage.config.Config
    kv = connect_kv(cfg.fdb_cluster_file, cfg.fdb_double)
    databases = open_databases(kv, list(cfg.databases), cfg.fdb_namespace_prefix,
                               retention(cfg), cfg.fdb_gc_interval, cfg.replication,
                               tuple(cfg.synchronous_databases))
    for name, db in databases.items():
        log.info("database open db=%s backend=mvsqlite namespace=%s prefix=%s", name, db.store.ns.hex(),
                 cfg.fdb_namespace_prefix)
    return databases
