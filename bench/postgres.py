"""A throwaway PostgreSQL 15: initdb in a temp folder, on 127.0.0.1 and a free port, removed after.

PostgreSQL refuses to run as root, so as root the server runs as an unprivileged user
(`sqldbench`, created when missing) who owns the temp folder. Durability settings are left at
PostgreSQL's defaults (fsync=on, synchronous_commit=on) and read back for the report.
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable

BIN = "/usr/lib/postgresql/15/bin"
USER = "sqldbench"


def ensure_installed(echo: Callable[[str], None]) -> None:
    """Install postgresql-15 from the Debian packages when its server binaries are missing."""
    if os.path.exists(os.path.join(BIN, "pg_ctl")) and shutil.which("pgbench"):
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"PostgreSQL 15 not found in {BIN}; install postgresql-15 (needs root)")
    echo("PostgreSQL 15 is missing: installing postgresql-15 with apt-get (takes a minute)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    conf = "/etc/postgresql-common/createcluster.conf"
    if not os.path.exists(conf):  # we only need the binaries, not Debian's default cluster
        os.makedirs(os.path.dirname(conf), exist_ok=True)
        with open(conf, "w") as f:
            f.write("create_main_cluster = false\n")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql-15", "postgresql-client-15"],
                   check=True, env=env, stdout=subprocess.DEVNULL)


def _ensure_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
                       check=True)
        return pwd.getpwnam(USER)


class Postgres:
    """Start with `start()`, always `stop()` (it also deletes the folder)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.dir = tempfile.mkdtemp(prefix="sqld-bench-pg-")
        self.data = os.path.join(self.dir, "data")
        self.sockets = os.path.join(self.dir, "sockets")
        self.log = os.path.join(self.dir, "postgres.log")
        self._as_user: list[str] = []
        self.started = False

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess:
        res = subprocess.run(self._as_user + argv, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"{os.path.basename(argv[0])} failed ({res.returncode}): "
                               f"{(res.stderr or res.stdout).strip()[-800:]}")
        return res

    def start(self) -> None:
        os.makedirs(self.sockets)
        if os.geteuid() == 0:
            user = _ensure_user()
            for d in (self.dir, self.sockets):
                os.chown(d, user.pw_uid, user.pw_gid)
            os.chmod(self.dir, 0o755)
            self._as_user = ["runuser", "-u", USER, "--"]
        self._run([f"{BIN}/initdb", "-D", self.data, "-U", "postgres", "--auth=trust",
                   "-E", "UTF8", "--locale=C", "--no-sync"])
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets} -c max_connections=100"
        self._run([f"{BIN}/pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "-o", opts, "start"])
        self.started = True
        self.psql("CREATE DATABASE main")

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        res = subprocess.run(["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                              "-p", str(self.port), "-U", "postgres", "-d", dbname, "-c", sql],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"psql on PostgreSQL: {res.stderr.strip()}")
        return res.stdout.strip()

    def settings(self) -> dict[str, str]:
        """The settings that decide durability and what the comparison means."""
        names = ("server_version", "fsync", "synchronous_commit", "wal_sync_method", "shared_buffers")
        return {n: self.psql(f"SHOW {n}") for n in names}

    def load(self, scale: int) -> None:
        res = subprocess.run(["pgbench", "-i", "-q", "-s", str(scale), "-h", "127.0.0.1",
                              "-p", str(self.port), "-U", "postgres", "main"], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"pgbench -i on PostgreSQL failed: {res.stderr.strip()[-800:]}")

    def stop(self) -> None:
        try:
            if self.started:
                subprocess.run(self._as_user + [f"{BIN}/pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"],
                               capture_output=True, timeout=60)
                self.started = False
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
