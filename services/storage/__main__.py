"""python -m storage: serve the configured SQLite databases."""
from __future__ import annotations

import asyncio
import logging
import os
import re
import sys

import grpc

from common import grpc_client, grpc_server, grpc_tls
from common import log as logsetup
from common import loop as event_loop
from sqld.v1 import storage_pb2, storage_pb2_grpc
from storage import config as storage_config
from storage.backend import Database
from storage.replica.database import ReplicaDatabase
from storage.servicer import StorageServicer
from storage.sqlite import backend as sqlite

log = logging.getLogger("storage")

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def _unreachable(cfg: storage_config.Config, exc: grpc.RpcError) -> SystemExit:
    return SystemExit(f"storage: cannot reach the replication service at {cfg.replication} "
                      f"({exc.code().name}): start it first or fix --replication")


def open_databases(cfg: storage_config.Config) -> dict[str, Database]:
    """The configured databases on the configured backend (the servicer sees only
    storage.backend's interface; mypy checks the concrete classes against it here)."""
    backend = {"libsql": "sqlite"}.get(cfg.backend, cfg.backend)  # libsql: the old name, deprecated
    if backend == "mvsqlite":
        if cfg.replica_of:
            raise SystemExit("storage: a replica keeps a local SQLite file fed by the log: "
                             "use --replica-of without --backend mvsqlite")
        from storage.mvsqlite.setup import open_from_config
        try:
            return dict(open_from_config(cfg))
        except grpc.RpcError as exc:
            raise _unreachable(cfg, exc) from None
    if backend != "sqlite":
        raise SystemExit(f"storage: unknown --backend {cfg.backend!r}: use sqlite or mvsqlite")
    databases: dict[str, Database] = {}
    os.makedirs(cfg.data_dir, exist_ok=True)
    for name in cfg.databases:
        path = os.path.join(cfg.data_dir, f"{name}.db")
        if cfg.replica_of:
            databases[name] = ReplicaDatabase(name, path, cfg.replica_of, cfg.replica_id or cfg.listen)
        else:
            try:
                databases[name] = sqlite.Database(name, path, cfg.replication, name in cfg.synchronous_databases)
            except grpc.RpcError as exc:
                raise _unreachable(cfg, exc) from None
        log.info("database open db=%s path=%s mode=%s", name, path, "replica" if cfg.replica_of else "primary")
    return databases


def main(argv: list[str]) -> None:
    logsetup.setup("storage")
    cfg = storage_config.load(argv)
    identity = grpc_tls.load_identity(cfg, "storage")
    grpc_client.configure(identity)  # before anything opens a channel to the replication service
    if cfg.replication and cfg.replica_of:
        raise SystemExit("storage: --replication (primary) and --replica-of (replica) exclude each other; pick one")
    for name in cfg.databases:
        if not _NAME.match(name):
            raise SystemExit(f"storage: invalid database name {name!r}: use letters, digits, _ . -")
    databases = open_databases(cfg)
    servicer = StorageServicer(databases, cfg.threads, cfg.max_connections)

    def register(server):
        storage_pb2_grpc.add_StorageServicer_to_server(servicer, server)
        return [storage_pb2.DESCRIPTOR.services_by_name["Storage"].full_name]

    async def run() -> None:
        followers = [asyncio.create_task(db.follower.run()) for db in databases.values()
                     if db.follower is not None]

        async def on_stop() -> None:
            for task in followers:
                task.cancel()
            await asyncio.gather(*followers, return_exceptions=True)
            await servicer.shutdown()
            for db in databases.values():
                db.close()

        await grpc_server.serve(cfg.listen, register, on_stop, on_stopping=servicer.close_streams,
                                security=grpc_server.Security(identity))

    event_loop.run(run())


if __name__ == "__main__":
    main(sys.argv[1:])
