"""The runtime registry of databases: which ones this storage process serves, created and
dropped while it runs (CREATE DATABASE / DROP DATABASE, the DatabaseAdmin API).

The set is the data folder itself, so it survives a restart with nothing more to keep:

- sqlite primary: every `<name>.db` in `--data-dir` with a valid name (common.dbnames), plus
  `--databases` (created if missing) and `postgres` (PostgreSQL's maintenance database, so
  clients that name no database connect). A new database is a new file switched to WAL mode
  (and its first history in the replication log, by its Capturer); a fork (`template`) is an
  online backup of the template's latest commit (SQLite's backup API under one read
  transaction: a consistent snapshot while the template keeps taking writes), written to a
  hidden temporary file and renamed into place, so a crash leaves no half database.
  A drop removes the file and its companions (-wal, -shm, -logid, -primaryid, -forked) and
  the database's replication log.
- replica: the databases the replication service has a history for (`Replication/Status`,
  looked at every `DISCOVER_EVERY` seconds by `follow`): a new one is opened and followed
  (it starts from a snapshot, as any new replica does), a dropped one is stopped and removed.
- mvsqlite: the page store's list of databases in FoundationDB (mvsqlite/catalog.py), which
  every storage process on the cluster shares, plus `--databases` and `postgres` (entered in
  the list at start). Create, drop, fork and restore change the list (`MvSpace`); each process
  looks at the list every DISCOVER_EVERY seconds (`follow_space`), and at once when a Connect
  names a database it does not serve (`discover`), opening what is new and closing what left.
  A restore copies the template as of its last commit at or before AS_OF_TIME (the page
  store's versions, inside --fdb-retention-seconds), or of its newest commit whose frames in
  the replication log end at or before AS_OF_FRAME (the capturer notes each version's last
  frame number in the page store: mvsqlite/capture.py).
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import uuid
from collections.abc import Awaitable, Callable

import apsw
import grpc

from sqld.common import dbnames, grpc_client, sqlstate
from sqld.common.sqlstate import SqlError
from sqld.storage import config as storage_config
from sqld.storage.backend import Database, TimeTravelError
from sqld.storage.mvsqlite import catalog
from sqld.storage.mvsqlite.backend import MvDatabase, MvSpace
from sqld.storage.mvsqlite.pagestore import SnapshotTooOld
from sqld.storage.replica.database import ReplicaDatabase
from sqld.storage.sqlite import backend as sqlite
from sqld.v1 import replication_pb2, replication_pb2_grpc

log = logging.getLogger(__name__)

MAINTENANCE = "postgres"
# a database's files: the primary's, and a replica's (applier.py: position, pending batch)
COMPANIONS = ("", "-wal", "-shm", "-logid", "-primaryid", "-forked", "-replica", "-pending", "-pending.tmp")
DISCOVER_EVERY = 0.5  # seconds between looks at the databases: a replica's at the replication service, mvsqlite's at the page store's list


def initial_names(cfg: storage_config.Config) -> list[str]:
    """The databases to open at start (see the module doc), in order, without duplicates."""
    names = list(dict.fromkeys([*cfg.databases, MAINTENANCE]))
    if cfg.backend in ("sqlite", "libsql") and not cfg.replica_of and os.path.isdir(cfg.data_dir):
        for entry in sorted(os.listdir(cfg.data_dir)):
            if entry.endswith(".db") and dbnames.valid(entry[:-3]) and entry[:-3] not in names:
                names.append(entry[:-3])
    return names


class Registry:
    """The databases of this process (`databases`, the servicer's dict, changed in place) and
    how to add and remove them. Creating and dropping run on a worker thread (file work and
    the Capturer's calls to the replication service block); `lock` serializes them."""

    def __init__(self, cfg: storage_config.Config, databases: dict[str, Database]) -> None:
        self.cfg = cfg
        self.databases = databases
        self.lock = asyncio.Lock()
        self.backend = {"libsql": "sqlite"}.get(cfg.backend, cfg.backend)
        self.on_new: Callable[[Database], None] = lambda db: None  # a replica starts its follower
        self.on_gone: Callable[[str], Awaitable[None] | None] = lambda name: None  # ... and stops it
        # mvsqlite: the page store's databases (every one of them belongs to the same space)
        self.space: MvSpace | None = next((db.space for db in databases.values() if isinstance(db, MvDatabase)), None)

    def path(self, name: str) -> str:
        return os.path.join(self.cfg.data_dir, f"{dbnames.check(name)}.db")

    def names(self) -> list[str]:
        return sorted(self.databases)

    def _refuse_backend(self, what: str) -> None:
        if self.cfg.replica_of:
            raise SqlError(sqlstate.READ_ONLY_SQL_TRANSACTION,
                           f"{what} on a replica: replicas follow the primary's databases")
        if self.backend != "sqlite" and self.space is None:
            raise SqlError(sqlstate.FEATURE_NOT_SUPPORTED,
                           f"{what} is not supported on the {self.backend} backend yet: its databases are "
                           "fixed at start (storage --databases); use the sqlite backend for runtime databases")

    async def create(self, name: str, template: str = "", as_of_frame_no: int = 0, as_of_unix_ms: int = 0) -> None:
        dbnames.check(name)
        self._refuse_backend("CREATE DATABASE")
        restore = bool(as_of_frame_no or as_of_unix_ms)
        if restore and not template:
            raise SqlError(sqlstate.INVALID_PARAMETER_VALUE, "a point-in-time restore needs a TEMPLATE database")
        if self.space is not None:
            return await self._create_mv(self.space, name, template, as_of_frame_no, as_of_unix_ms)
        if restore and not self.cfg.replication:
            raise SqlError(sqlstate.FEATURE_NOT_SUPPORTED, "point-in-time restore reads the replication log: "
                           "it needs a replicated deployment (storage --replication)")
        async with self.lock:
            if name in self.databases:
                raise SqlError(sqlstate.DUPLICATE_DATABASE, f'database "{name}" already exists')
            source = None
            if template:
                source = self.databases.get(template)
                if source is None:
                    raise SqlError(sqlstate.INVALID_CATALOG_NAME,
                                   f'template database "{template}" does not exist')
            if restore:
                await self._restore(template, self.path(name), as_of_frame_no, as_of_unix_ms)
                source = None
            db = await asyncio.to_thread(self._create, name, source, restore)
            self.databases[name] = db
        log.info("database created db=%s%s%s", name, f" template={template}" if template else "",
                 f" as_of_frame_no={as_of_frame_no} as_of_unix_ms={as_of_unix_ms}" if restore else "")

    async def _create_mv(self, space: MvSpace, name: str, template: str, as_of_frame_no: int,
                         as_of_unix_ms: int) -> None:
        """CREATE DATABASE on the page store: a new namespace, empty or a copy of the template
        as of its latest commit (fork), of its last commit at or before `as_of_unix_ms`, or of
        its newest commit whose frames end at or before `as_of_frame_no`."""
        async with self.lock:
            if name in self.databases:
                raise SqlError(sqlstate.DUPLICATE_DATABASE, f'database "{name}" already exists')
            source: MvDatabase | None = None
            if template:
                found = self.databases.get(template) or await self._discover_locked(template)
                if not isinstance(found, MvDatabase):
                    raise SqlError(sqlstate.INVALID_CATALOG_NAME, f'template database "{template}" does not exist')
                source = found
            if as_of_frame_no and source is not None and source.capturer is None:
                raise SqlError(sqlstate.FEATURE_NOT_SUPPORTED, "a restore by frame number (AS_OF_FRAME) names a frame "
                               "of the replication log: it needs a replicated deployment (storage --replication); "
                               "restore by time (AS_OF_TIME) from the page store's versions")

            def create() -> MvDatabase:
                version = 0
                if source is not None and as_of_frame_no:
                    version = space.version_for_frame(source, as_of_frame_no)
                elif source is not None and as_of_unix_ms:
                    version = space.version_for(source, as_of_unix_ms)
                return space.create(name, source, version)
            try:
                db = await asyncio.to_thread(create)
            except catalog.Exists:
                raise SqlError(sqlstate.DUPLICATE_DATABASE, f'database "{name}" already exists') from None
            except (TimeTravelError, SnapshotTooOld) as exc:
                raise SqlError(sqlstate.NUMERIC_VALUE_OUT_OF_RANGE, str(exc)) from None
            except grpc.RpcError as exc:  # the replication service, asked for the log's history (AS_OF_FRAME)
                raise SqlError(sqlstate.CANNOT_CONNECT_NOW, f"point-in-time restore of {template}: the replication "
                               f"service answered {exc.code().name}: {exc.details()}") from None
            self.databases[name] = db
        log.info("database created db=%s backend=mvsqlite namespace=%s%s%s", name, db.store.ns.hex(),
                 f" template={template}" if template else "",
                 f" as_of_frame_no={as_of_frame_no} as_of_unix_ms={as_of_unix_ms}" if as_of_frame_no or as_of_unix_ms
                 else "")

    async def _restore(self, template: str, path: str, as_of_frame_no: int, as_of_unix_ms: int) -> None:
        """`path` = the template as of a past commit, from the replication log (Snapshot)."""
        tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.creating")
        await asyncio.to_thread(_remove, tmp)
        await asyncio.to_thread(_remove, path)
        channel = grpc_client.channel(self.cfg.replication)
        try:
            stream = replication_pb2_grpc.ReplicationStub(channel).Snapshot(replication_pb2.SnapshotRequest(
                database=template, upto_frame_no=as_of_frame_no, as_of_unix_ms=as_of_unix_ms), timeout=600)
            # The file work runs on a worker thread, chunk by chunk: the event loop goes on
            # serving every other database while a big restore writes its pages.
            fd = await asyncio.to_thread(os.open, tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                async for chunk in stream:
                    await asyncio.to_thread(_write_chunk, fd, chunk)
                await asyncio.to_thread(os.fsync, fd)
            finally:
                os.close(fd)
            await asyncio.to_thread(os.rename, tmp, path)
        except grpc.RpcError as exc:
            await asyncio.to_thread(_remove, tmp)
            code = exc.code()
            if code == grpc.StatusCode.OUT_OF_RANGE:
                raise SqlError(sqlstate.NUMERIC_VALUE_OUT_OF_RANGE, exc.details() or "") from None
            raise SqlError(sqlstate.CANNOT_CONNECT_NOW, f"point-in-time restore of {template}: the replication "
                           f"service answered {code.name}: {exc.details()}") from None
        except BaseException:
            await asyncio.to_thread(_remove, tmp)
            raise
        finally:
            await channel.close()

    def _create(self, name: str, source: Database | None, restored: bool = False) -> Database:
        path = self.path(name)
        if not restored:
            for suffix in COMPANIONS:  # leftovers of a database of that name (dropped while down)
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)
        if source is not None:
            fork(source.path, path)  # type: ignore[attr-defined]  # a sqlite file (the backend is checked)
        try:
            return sqlite.Database(name, path, self.cfg.replication, name in self.cfg.synchronous_databases)
        except grpc.RpcError as exc:
            _remove(path)
            raise SqlError(sqlstate.CANNOT_CONNECT_NOW, f"create database {name}: the replication service "
                           f"is unreachable ({exc.code().name}); try again") from None

    async def drop(self, name: str, end_streams: Callable[[str], Awaitable[None] | None]) -> bool:
        """Drop `name` (False: there is none). `end_streams(name)` ends every connection to it
        (awaited when it returns an awaitable) after it left the registry, so no new one opens."""
        dbnames.check(name)
        self._refuse_backend("DROP DATABASE")
        async with self.lock:
            db = self.databases.pop(name, None)
            if db is not None:
                ending = end_streams(name)
                if ending is not None:
                    await ending
                await asyncio.to_thread(db.close)
            if self.space is not None:  # the page store's list, which other processes may have changed
                self.space.forget(name)
                if not await asyncio.to_thread(self.space.drop, name) and db is None:
                    return False
            elif db is None:
                return False
            else:
                await asyncio.to_thread(_remove, self.path(name))
            if self.cfg.replication:
                await self._drop_log(name)
        log.info("database dropped db=%s", name)
        return True

    async def _drop_log(self, name: str) -> None:
        channel = grpc_client.channel(self.cfg.replication)
        try:
            await replication_pb2_grpc.ReplicationStub(channel).DropLog(
                replication_pb2.DropLogRequest(database=name), timeout=10)
        except grpc.RpcError as exc:  # the file is gone; the log's folder stays until the next drop of the name
            log.warning("drop db=%s: the replication service kept its log (%s)", name, exc.code().name)
        finally:
            await channel.close()

    def backup_copy(self, name: str) -> str:
        """A consistent copy of `name` (see `fork`) in a hidden temporary file, for Backup;
        the caller removes it. On a worker thread."""
        db = self.databases.get(dbnames.check(name))
        if db is None:
            raise SqlError(sqlstate.INVALID_CATALOG_NAME, f'database "{name}" does not exist')
        os.makedirs(self.cfg.data_dir, exist_ok=True)
        tmp = os.path.join(self.cfg.data_dir, f".{name}.backup-{uuid.uuid4().hex}")
        path = db.path if isinstance(db, sqlite.Database) else db.file.path if isinstance(db, ReplicaDatabase) else None
        try:
            if path is not None:  # a file: the primary's, or a replica's
                fork(path, tmp)
                return tmp
            return self._backup_through(db, tmp)
        except (apsw.Error, OSError) as exc:
            raise SqlError(sqlstate.IO_ERROR, f"backup of {name}: {exc}") from None

    def _backup_through(self, db: Database, tmp: str) -> str:
        conn = db.connect()  # the page store: SQLite's backup API reads it through its VFS
        try:
            dest = apsw.Connection(tmp, vfs="unix")
            try:
                with dest.backup("main", conn.conn, "main") as backup:  # type: ignore[attr-defined]
                    backup.step(-1)
            finally:
                dest.close()
        except BaseException:
            _remove(tmp)
            raise
        finally:
            conn.close()
        return tmp

    # -- the page store's list (mvsqlite) ---------------------------------------------------
    async def discover(self, name: str) -> Database | None:
        """A Connect for a database this process does not serve: another process may have
        just created it in the page store's list."""
        if self.space is None or not dbnames.valid(name):
            return None
        if await asyncio.to_thread(catalog.lookup, self.space.kv, self.space.prefix, name) is None:
            return None  # (without the lock: a long fork holds it)
        async with self.lock:
            return self.databases.get(name) or await self._discover_locked(name)

    async def _discover_locked(self, name: str) -> Database | None:
        if self.space is None or not dbnames.valid(name):
            return None
        if await asyncio.to_thread(catalog.lookup, self.space.kv, self.space.prefix, name) is None:
            return None
        await self._sync_space(self.space)
        return self.databases.get(name)

    async def follow_space(self) -> None:
        """mvsqlite: serve what the page store's list holds, as other processes change it."""
        while True:
            await asyncio.sleep(DISCOVER_EVERY)
            if self.space is None:
                return
            try:
                async with self.lock:
                    await self._sync_space(self.space)
            except Exception as exc:  # noqa: BLE001 - FoundationDB unreachable for a while: look again
                log.debug("database discovery: %s", exc)

    async def _sync_space(self, space: MvSpace) -> None:
        """Under `lock`: open the listed databases not open here, close the others."""
        listed = await asyncio.to_thread(space.listed)
        for name, db in list(self.databases.items()):
            if isinstance(db, MvDatabase) and listed.get(name) != db.store.ns:  # dropped (perhaps made anew)
                self.databases.pop(name)
                ending = self.on_gone(name)
                if ending is not None:
                    await ending
                await asyncio.to_thread(db.close)
                space.forget(name)
                log.info("database closed db=%s (dropped by another storage process)", name)
        for name, ns in sorted(listed.items()):
            if name not in self.databases and dbnames.valid(name):
                self.databases[name] = await asyncio.to_thread(space.open, name, ns)
                log.info("database open db=%s backend=mvsqlite namespace=%s (created by another storage process)",
                         name, ns.hex())

    # -- replicas --------------------------------------------------------------------------
    async def follow(self) -> None:
        """A replica: open what the replication service has a history for, drop what it lost."""
        stub = replication_pb2_grpc.ReplicationStub(grpc_client.channel(self.cfg.replica_of))
        while True:
            try:
                status = await stub.Status(replication_pb2.StatusRequest(), timeout=5)
            except grpc.RpcError as exc:
                log.debug("database discovery: %s", exc.code().name)
            else:
                await self._follow_once({lg.database for lg in status.logs if lg.log_id and dbnames.valid(lg.database)})
            await asyncio.sleep(DISCOVER_EVERY)

    async def _follow_once(self, logged: set[str]) -> None:
        for name in sorted(logged - set(self.databases)):
            path = self.path(name)
            new: Database = await asyncio.to_thread(
                ReplicaDatabase, name, path, self.cfg.replica_of, self.cfg.replica_id or self.cfg.listen)
            self.databases[name] = new
            self.on_new(new)
            log.info("database open db=%s path=%s mode=replica (new on the primary)", name, path)
        gone = [n for n in self.databases if n not in logged and n != MAINTENANCE and n not in self.cfg.databases]
        for name in gone:
            old = self.databases.pop(name)
            ending = self.on_gone(name)
            if ending is not None:
                await ending
            await asyncio.to_thread(old.close)
            await asyncio.to_thread(_remove, self.path(name))
            log.info("database dropped db=%s (dropped on the primary)", name)


def fork(source_path: str, path: str) -> None:
    """A consistent copy of the database at `source_path` (its latest commit, WAL included)
    at `path`: SQLite's backup API in one step, i.e. under one read transaction, so writers
    on the source go on meanwhile (WAL mode)."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.creating")
    _remove(tmp)
    try:
        src = apsw.Connection(source_path, flags=apsw.SQLITE_OPEN_READONLY, vfs="unix")
        try:
            dest = apsw.Connection(tmp, vfs="unix")
            try:
                with dest.backup("main", src, "main") as backup:
                    backup.step(-1)
            finally:
                dest.close()
        finally:
            src.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _write_chunk(fd: int, chunk: replication_pb2.SnapshotChunk) -> None:
    for page in chunk.pages:
        os.pwrite(fd, page.page, (page.page_no - 1) * chunk.page_size)
    os.ftruncate(fd, chunk.db_pages * chunk.page_size)


_remove_lock = threading.Lock()


def _remove(path: str) -> None:
    """`path` and its companions, if they exist; then the folder's entry is made durable."""
    with _remove_lock:
        for suffix in COMPANIONS + ("-journal",):
            try:
                os.remove(path + suffix)
            except FileNotFoundError:
                pass
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
