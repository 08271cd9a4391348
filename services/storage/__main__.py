"""python -m storage: serve the configured SQLite databases."""
from __future__ import annotations

import asyncio
import logging
import os
import re
import sys

from common import grpc_server, log as logsetup
from sqld.v1 import storage_pb2, storage_pb2_grpc
from storage import config as storage_config
from storage.servicer import StorageServicer
from storage.sqlite.backend import Database

log = logging.getLogger("storage")

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def open_databases(cfg: storage_config.Config) -> dict:
    """The configured databases on the configured backend."""
    if cfg.backend == "mvsqlite":
        from storage.fdb.setup import open_from_config
        return open_from_config(cfg)
    if cfg.backend != "libsql":
        raise SystemExit(f"storage: unknown --backend {cfg.backend!r}: use libsql or mvsqlite")
    databases = {}
    for name in cfg.databases:
        databases[name] = Database(name, os.path.join(cfg.data_dir, f"{name}.db"))
        log.info("database open db=%s path=%s", name, databases[name].path)
    return databases


def main(argv: list[str]) -> None:
    logsetup.setup("storage")
    cfg = storage_config.load(argv)
    for name in cfg.databases:
        if not _NAME.match(name):
            raise SystemExit(f"storage: invalid database name {name!r}: use letters, digits, _ . -")
    databases = open_databases(cfg)
    servicer = StorageServicer(databases, cfg.threads)

    def register(server):
        storage_pb2_grpc.add_StorageServicer_to_server(servicer, server)
        return [storage_pb2.DESCRIPTOR.services_by_name["Storage"].full_name]

    async def on_stop() -> None:
        servicer.shutdown()

    asyncio.run(grpc_server.serve(cfg.listen, register, on_stop))


if __name__ == "__main__":
    main(sys.argv[1:])
