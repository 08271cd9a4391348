"""python -m sqld.backup: disaster recovery for a deployment's databases (README, "Backup and restore").

    python -m sqld.backup save --scheduler HOST:PORT --to DIR [--database NAME ...] [--every SECONDS]
                          [--ca CA.crt] [--token-file FILE]
    python -m sqld.backup save --continuous --replication HOST:PORT --to DIR [--database NAME ...]
                          [--ca CA.crt --cert admin.crt --key admin.key]
    python -m sqld.backup restore --from DIR --data-dir DATA [--database NAME ...]
    python -m sqld.backup restore --from DIR (--fdb-cluster-file F | --fdb-double HOST:PORT)
                          [--fdb-namespace-prefix P] [--work-dir DIR] [--database NAME ...]

`save` asks the scheduler's DatabaseAdmin for a consistent copy of each database (every one
the deployment serves, unless named; `Backup`: SQLite's backup API under one read transaction,
writers go on) and writes `DIR/<name>.db` (a temporary name, fsync, rename: a crash keeps the
previous backup) and `DIR/manifest.json` (names, times, sizes, SHA-256). With `--every` it
runs on, one round every SECONDS (continuous backup whose recovery point is the last round).
`--ca` gives the CA of a TLS deployment, `--token-file` (or SQLD_TOKEN) a bearer token that
may reach every database.

`save --continuous` instead follows the replication log (backup/continuous.py: a base
snapshot and every frame appended after it, written as the log sends them, like Litestream's
WAL shipping), so the folder trails the acknowledged commits by about a second
(continuous.LAG_SECONDS) rather than by a round. It talks to the replication service as a
deployment member: `--replication HOST:PORT`, with `--ca` and the operator's `--cert`/`--key`
(the `admin` certificate) on a TLS deployment.

`restore` puts the files of a backup into the storage data folder of an EMPTY deployment
(stopped; it refuses a folder that holds a database already), after checking each against the
manifest's SHA-256 and SQLite's integrity_check. Start the deployment then: storage serves
the restored databases, starts their replication histories, and the replicas take snapshots.
With `--fdb-cluster-file` (or `--fdb-double`) it restores into an mvsqlite deployment's page
store instead, whose list of databases must be empty (`restore_into_page_store`).
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import json
import logging
import os
import sys
import tempfile
import time

import apsw
import grpc

from sqld.backup import continuous
from sqld.common import dbnames
from sqld.common.durable import fsync_dir
from sqld.v1 import admin_pb2, admin_pb2_grpc

MANIFEST = "manifest.json"


def _channel(args: argparse.Namespace) -> grpc.aio.Channel:
    token = os.environ.get("SQLD_TOKEN", "")
    if args.token_file:
        with open(args.token_file) as f:
            token = f.read().strip()
    if not args.ca:
        if token:
            raise SystemExit("backup: a token needs TLS: give --ca")
        return grpc.aio.insecure_channel(args.scheduler)
    with open(args.ca, "rb") as f:
        creds = grpc.ssl_channel_credentials(f.read())
    if token:
        creds = grpc.composite_channel_credentials(creds, grpc.access_token_call_credentials(token))
    return grpc.aio.secure_channel(args.scheduler, creds)


PROGRESS_BYTES = 256 << 20


async def _save_one(admin: admin_pb2_grpc.DatabaseAdminStub, name: str, folder: str) -> dict:
    tmp = os.path.join(folder, f".{name}.db.partial")
    digest = hashlib.sha256()
    size = 0
    with open(tmp, "wb") as f:
        async for chunk in admin.Backup(admin_pb2.BackupRequest(name=name), timeout=3600):
            if chunk.HasField("error"):
                raise SystemExit(f"backup: {name}: {chunk.error.sqlstate} {chunk.error.message}")
            f.write(chunk.data)
            digest.update(chunk.data)
            if (size + len(chunk.data)) // PROGRESS_BYTES > size // PROGRESS_BYTES:  # a line per 256 MiB
                print(f"backup: {name}: {(size + len(chunk.data)) >> 20} MiB so far", file=sys.stderr, flush=True)
            size += len(chunk.data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(folder, f"{name}.db"))
    return {"name": name, "file": f"{name}.db", "size": size, "sha256": digest.hexdigest(),
            "taken_at": datetime.datetime.now(datetime.UTC).isoformat()}


async def save(args: argparse.Namespace) -> None:
    os.makedirs(args.to, exist_ok=True)
    async with _channel(args) as channel:
        admin = admin_pb2_grpc.DatabaseAdminStub(channel)
        while True:
            started = time.monotonic()
            names = args.database or [d.name for d in (await admin.ListDatabases(
                admin_pb2.ListDatabasesRequest(), timeout=60)).databases]
            entries = []
            for name in names:
                entries.append(await _save_one(admin, dbnames.check(name), args.to))
                print(f"backup: {name} -> {os.path.join(args.to, name + '.db')} ({entries[-1]['size']} bytes)")
            tmp = os.path.join(args.to, f".{MANIFEST}.partial")
            with open(tmp, "w") as f:
                json.dump({"format": 1, "databases": entries}, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, os.path.join(args.to, MANIFEST))
            fsync_dir(args.to)
            if not args.every:
                return
            await asyncio.sleep(max(args.every - (time.monotonic() - started), 0))


async def save_continuous(args: argparse.Namespace) -> None:
    if args.ca:
        with open(args.ca, "rb") as f:
            ca = f.read()
        if not (args.cert and args.key):
            raise SystemExit("backup: --continuous on a TLS deployment needs --cert and --key (the admin certificate)")
        with open(args.cert, "rb") as f:
            cert = f.read()
        with open(args.key, "rb") as f:
            key = f.read()
        channel = grpc.aio.secure_channel(args.replication, grpc.ssl_channel_credentials(ca, key, cert))
    else:
        channel = grpc.aio.insecure_channel(args.replication)
    async with channel:
        await continuous.follow(channel, args.to, args.database)


def restore(args: argparse.Namespace) -> None:
    if args.fdb_cluster_file or args.fdb_double:
        return restore_into_page_store(args)
    if not args.data_dir:
        raise SystemExit("backup: restore needs --data-dir (the sqlite backend) or --fdb-cluster-file / "
                         "--fdb-double (the mvsqlite backend)")
    os.makedirs(args.data_dir, exist_ok=True)
    present = [e for e in os.listdir(args.data_dir) if e.endswith(".db")]
    if present:
        raise SystemExit(f"backup: {args.data_dir} holds databases already ({', '.join(sorted(present))}): "
                         "restore goes into an empty deployment")
    if os.path.exists(os.path.join(args.source, continuous.MARKER)):
        return restore_continuous(args)
    with open(os.path.join(args.source, MANIFEST)) as f:
        manifest = json.load(f)
    chosen = [e for e in manifest["databases"] if not args.database or e["name"] in args.database]
    for entry in chosen:
        name = dbnames.check(entry["name"])
        src = os.path.join(args.source, f"{name}.db")
        dest = os.path.join(args.data_dir, f"{name}.db")
        tmp = os.path.join(args.data_dir, f".{name}.db.restoring")
        digest = hashlib.sha256()
        with open(src, "rb") as f, open(tmp, "wb") as out:
            while data := f.read(1 << 20):
                digest.update(data)
                out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != entry["sha256"]:
            os.remove(tmp)
            raise SystemExit(f"backup: {src} does not match the manifest's SHA-256: the backup is damaged")
        conn = apsw.Connection(tmp, flags=apsw.SQLITE_OPEN_READONLY)
        try:
            check = conn.execute("PRAGMA integrity_check").fetchall()[0][0]
        finally:
            conn.close()
        if check != "ok":
            os.remove(tmp)
            raise SystemExit(f"backup: {src}: integrity_check says {check}")
        os.replace(tmp, dest)
        print(f"restore: {name} -> {dest} (backup of {entry['taken_at']})")
    fsync_dir(args.data_dir)


def restore_into_page_store(args: argparse.Namespace) -> None:
    """An mvsqlite deployment: each database is rebuilt as a file (checked as above) in a
    temporary folder, then its pages go into a new namespace of the page store through the
    bounded FoundationDB transactions a fork uses (storage/mvsqlite/catalog.load_file), and it
    is listed last, so a crash lists no half database. The page store's list must be empty."""
    from sqld.storage.mvsqlite import catalog
    from sqld.storage.mvsqlite.setup import connect_kv
    kv = connect_kv(args.fdb_cluster_file, args.fdb_double)
    try:
        listed = catalog.listing(kv, args.fdb_namespace_prefix)
        if listed:
            raise SystemExit(f"backup: the page store (prefix {args.fdb_namespace_prefix!r}) lists databases already "
                             f"({', '.join(sorted(listed))}): restore goes into an empty deployment")
        with tempfile.TemporaryDirectory(prefix="sqld-restore-", dir=args.work_dir or None) as tmp:
            restore(argparse.Namespace(**{**vars(args), "data_dir": tmp, "fdb_cluster_file": "", "fdb_double": ""}))
            for entry in sorted(e for e in os.listdir(tmp) if e.endswith(".db")):
                name = dbnames.check(entry[:-3])
                pages = catalog.load_file(kv, args.fdb_namespace_prefix, name, os.path.join(tmp, entry))
                print(f"restore: {name} -> page store {args.fdb_namespace_prefix!r} ({pages} pages)")
    finally:
        kv.close()


def _check(path: str) -> str:
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchall()[0][0])
    finally:
        conn.close()


def restore_continuous(args: argparse.Namespace) -> None:
    """A continuous backup: each database's base snapshot plus its shipped frames."""
    names = sorted(e for e in os.listdir(args.source) if dbnames.valid(e)
                   and os.path.exists(os.path.join(args.source, e, "current")))
    for name in names:
        if args.database and name not in args.database:
            continue
        dest = os.path.join(args.data_dir, f"{name}.db")
        tmp = os.path.join(args.data_dir, f".{name}.db.restoring")
        gen, frame_no = continuous.restore_one(os.path.join(args.source, name), tmp)
        if (check := _check(tmp)) != "ok":
            os.remove(tmp)
            raise SystemExit(f"backup: {name}: integrity_check says {check}")
        os.replace(tmp, dest)
        print(f"restore: {name} -> {dest} (generation {gen}, up to frame {frame_no})")
    fsync_dir(args.data_dir)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m sqld.backup", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("save", help="write a consistent backup of the databases to a folder")
    s.add_argument("--scheduler", default="127.0.0.1:7001", help="the scheduler's gRPC address")
    s.add_argument("--to", required=True, help="the backup folder")
    s.add_argument("--database", action="append", help="a database to back up (repeat; default: every one)")
    s.add_argument("--every", type=float, default=0.0, help="seconds between rounds (0: one round)")
    s.add_argument("--ca", default="", help="CA certificate of a TLS deployment (PEM)")
    s.add_argument("--token-file", default="", help="file holding a bearer token (default: SQLD_TOKEN)")
    s.add_argument("--continuous", action="store_true",
                   help="follow the replication log (base snapshot + shipped frames) instead of copying")
    s.add_argument("--replication", default="127.0.0.1:7004", help="--continuous: the replication service's address")
    s.add_argument("--cert", default="", help="--continuous on TLS: the admin certificate (PEM)")
    s.add_argument("--key", default="", help="--continuous on TLS: its key (PEM)")
    r = sub.add_parser("restore", help="put a backup into an empty deployment's storage data folder")
    r.add_argument("--from", dest="source", required=True, help="the backup folder")
    r.add_argument("--data-dir", default="", help="sqlite backend: storage's --data-dir (stopped, empty)")
    r.add_argument("--fdb-cluster-file", default="", help="mvsqlite backend: the FoundationDB cluster file")
    r.add_argument("--fdb-double", default="", help="mvsqlite backend: the FoundationDB TEST DOUBLE's host:port")
    r.add_argument("--fdb-namespace-prefix", default="sqld/", help="mvsqlite backend: storage's --fdb-namespace-prefix")
    r.add_argument("--work-dir", default="", help="mvsqlite backend: where each database is rebuilt as a file "
                   "before it goes into the page store (default: the system's temporary folder)")
    r.add_argument("--database", action="append", help="a database to restore (repeat; default: every one)")
    args = parser.parse_args(argv)
    if args.command == "save" and args.continuous:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        asyncio.run(save_continuous(args))
    elif args.command == "save":
        asyncio.run(save(args))
    else:
        restore(args)


if __name__ == "__main__":
    main(sys.argv[1:])
