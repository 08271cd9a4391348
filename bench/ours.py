"""Our system for a benchmark: the launcher's plan on free loopback ports with a temp data folder.

Uses services/sqld/launcher (plan.services, procs.start/wait_healthy), the one truth about how our
services are started, so the benchmark measures exactly what `make run` runs.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import tempfile

from bench import schema
from sqld.launcher import pki, plan, procs


def free_port(taken: set[int]) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Ours:
    """Start with `start()`, always `stop()` (it also deletes the data and keeps nothing running)."""

    def __init__(self, taken_ports: set[int], log_dir: str, backend: str = "sqlite") -> None:
        # Every port the plan knows gets a free one, so new services (e.g. replicas) need no change here.
        self.ports = plan.Ports(**{f.name: free_port(taken_ports) for f in dataclasses.fields(plan.Ports)})
        self.dir = tempfile.mkdtemp(prefix="sqld-bench-ours-")
        # mvsqlite runs on the FoundationDB test double (no real cluster on these machines)
        self.services = plan.services(self.ports, os.path.join(self.dir, "data"), backend=backend)
        self.pki_dir = os.path.join(self.dir, "data", "pki")  # plan.services' default
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def pg_port(self) -> int:
        return self.ports.pg

    def start(self) -> None:
        os.makedirs(os.path.join(self.dir, "data"))
        pki.ensure(self.pki_dir, pki.instances(self.services))  # TLS on every hop, as `make run`
        os.makedirs(self.log_dir, exist_ok=True)
        for svc in self.services:
            with open(os.path.join(self.log_dir, f"{svc.name}.log"), "ab") as log:
                proc = procs.start(svc.argv, log)
            self.procs[svc.name] = proc
            procs.wait_healthy(svc.health, 30, proc, self.pki_dir if svc.role else None)
        dead = [n for n, p in self.procs.items() if p.poll() is not None]
        if dead:  # e.g. a port taken between choosing and binding: another process answered health
            raise RuntimeError(f"our services exited right after start: {', '.join(dead)}; see {self.log_dir}")

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items()}

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(p.pid) for name, p in self.procs.items() if p.poll() is None}

    def psql(self, sql: str) -> str:
        res = subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                              "-p", str(self.pg_port), "-U", "postgres", "-d", "main", "-f", "-"],
                             input=sql, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"psql on ours: {res.stderr.strip()[-800:]}")
        return res.stdout.strip()

    def load(self, scale: int) -> None:
        self.psql(schema.sqlite_init_sql(scale))
        got = int(self.psql("SELECT count(*) FROM pgbench_accounts;"))
        want = schema.expected_counts(scale)["pgbench_accounts"]
        if got != want:
            raise RuntimeError(f"loading ours: {got} accounts, expected {want}")

    def stop(self) -> None:
        try:
            for name in reversed(list(self.procs)):
                procs.stop(self.procs[name])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
