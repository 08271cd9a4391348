"""python -m sqld.storage: serve the configured SQLite databases."""
from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading

import grpc

from sqld.common import dbnames, grpc_client, grpc_server, grpc_tls, metrics
from sqld.common import log as logsetup
from sqld.common import loop as event_loop
from sqld.storage import config as storage_config
from sqld.storage import metrics as storage_metrics
from sqld.storage import registry
from sqld.storage.backend import Database
from sqld.storage.replica.database import ReplicaDatabase
from sqld.storage.servicer import StorageServicer
from sqld.storage.sqlite import backend as sqlite
from sqld.storage.sqlite import compat
from sqld.v1 import storage_pb2, storage_pb2_grpc

log = logging.getLogger(__name__)


def _unreachable(cfg: storage_config.Config, exc: grpc.RpcError) -> SystemExit:
    return SystemExit(f"storage: cannot reach the replication service at {cfg.replication} "
                      f"({exc.code().name}): start it first or fix --replication")


def open_databases(cfg: storage_config.Config) -> dict[str, Database]:
    """The databases to serve at start (storage.registry.initial_names) on the configured
    backend (the servicer sees only storage.backend's interface; mypy checks the concrete
    classes against it here)."""
    import dataclasses
    cfg = dataclasses.replace(cfg, databases=tuple(registry.initial_names(cfg)))
    backend = {"libsql": "sqlite"}.get(cfg.backend, cfg.backend)  # libsql: the old name, deprecated
    if backend == "mvsqlite":
        if cfg.replica_of:
            raise SystemExit("storage: a replica keeps a local SQLite file fed by the log: "
                             "use --replica-of without --backend mvsqlite")
        from sqld.storage.mvsqlite.setup import open_from_config
        try:
            return dict(open_from_config(cfg))
        except grpc.RpcError as exc:
            if not cfg.replication or cfg.fdb_double:  # the page store's list is read first (the KV)
                raise SystemExit(f"storage: cannot open the page store's databases ({exc.code().name}): "
                                 f"{exc.details()}") from None
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


def _raise_open_files() -> None:
    """Each database costs about 10 descriptors (README, Databases): the soft limit goes up to
    the hard one, so hundreds of databases do not meet the common default of 1024."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str]) -> None:
    cfg = storage_config.load(argv)
    logsetup.setup("storage", cfg)
    _raise_open_files()
    identity = grpc_tls.load_identity(cfg, "storage")
    grpc_client.configure(identity)  # before anything opens a channel to the replication service
    if cfg.replication and cfg.replica_of:
        raise SystemExit("storage: --replication (primary) and --replica-of (replica) exclude each other; pick one")
    for name in cfg.databases:
        if (problem := dbnames.problem(name)) is not None:
            raise SystemExit(f"storage: --databases: {problem.message}")
    databases = open_databases(cfg)
    names = registry.Registry(cfg, databases)
    compat.database_names = names.names
    servicer = StorageServicer(databases, cfg.threads, cfg.max_connections, names)
    storage_metrics.CONNECTIONS.set_function(lambda: servicer.open_connections)
    if cfg.metrics_listen:
        metrics.serve(cfg.metrics_listen)

    def register(server):
        storage_pb2_grpc.add_StorageServicer_to_server(servicer, server)
        return [storage_pb2.DESCRIPTOR.services_by_name["Storage"].full_name]

    async def run() -> None:
        followers = {name: asyncio.create_task(db.follower.run()) for name, db in databases.items()
                     if db.follower is not None}
        if cfg.replica_of:  # a replica follows the primary's databases as they come and go
            def on_new(db: Database) -> None:
                if db.follower is not None:
                    followers[db.name] = asyncio.create_task(db.follower.run())

            async def on_gone(name: str) -> None:
                task = followers.pop(name, None)
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
                await servicer.end_database(name)
            names.on_new = on_new
            names.on_gone = on_gone
            followers[""] = asyncio.create_task(names.follow())
        elif names.space is not None:  # mvsqlite: other storage processes create and drop databases too
            names.on_gone = servicer.end_database
            followers[""] = asyncio.create_task(names.follow_space())

        async def on_stop() -> None:
            for task in followers.values():
                task.cancel()
            await asyncio.gather(*followers.values(), return_exceptions=True)
            await servicer.shutdown()
            # every database at once: a capturer may wait up to its join timeout for a page store
            # or log that is gone, which one after another would add up per database
            closing = [threading.Thread(target=db.close, name=f"close-{db.name}") for db in databases.values()]
            for t in closing:
                t.start()
            for t in closing:
                await asyncio.to_thread(t.join)

        await grpc_server.serve(cfg.listen, register, on_stop, on_stopping=servicer.close_streams,
                                security=grpc_server.Security(identity))

    event_loop.run(run())


if __name__ == "__main__":
    main(sys.argv[1:])
