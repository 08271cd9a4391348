"""Run one pgbench workload and read its result.

Workloads: pgbench's built-in select-only and simple-update, plus simple-update pipelined
(simple_update_pipelined.sql: the built-in's statements in one `\\startpipeline` … `\\endpipeline`,
so a whole transaction is one Sync group; needs -M extended).

`parse` and `command` are pure (unit-tested); `run` starts pgbench, echoes its `-P` progress lines
and never raises for a failing workload: a failure is a result ("failed: <first error line>").
"""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable

BUILTINS = ("select-only", "simple-update")
MODES = ("simple", "prepared")
PIPELINED = "simple-update pipelined"
SCRIPTS = {PIPELINED: os.path.join(os.path.dirname(os.path.abspath(__file__)), "simple_update_pipelined.sql")}


@dataclasses.dataclass(frozen=True)
class Workload:
    script: str   # a pgbench built-in (select-only, simple-update) or a key of SCRIPTS
    clients: int
    mode: str     # -M simple | prepared | extended

    @property
    def name(self) -> str:
        return f"{self.script}, {self.clients} client{'s' if self.clients > 1 else ''}, -M {self.mode}"


@dataclasses.dataclass(frozen=True)
class Outcome:
    tps: float | None = None
    latency_ms: float | None = None
    transactions: int | None = None
    error: str | None = None   # set when the workload failed
    seconds: float = 0.0       # wall time of the pgbench run

    @property
    def ok(self) -> bool:
        return self.error is None and self.tps is not None


def workloads(mode: str = "full") -> list[Workload]:
    """Both scripts at 1 and 4 clients in both modes; full mode adds 16 and 64 clients (-M simple,
    the mode every peer runs) and the pipelined simple-update; short mode (CI) only 16-client select-only."""
    out = [Workload(s, c, m) for s in BUILTINS for c in (1, 4) for m in MODES]
    if mode == "short":
        return out + [Workload("select-only", 16, "simple")]
    return out + [Workload(s, c, "simple") for s in BUILTINS for c in (16, 64)] + [Workload(PIPELINED, 4, "extended")]


def command(w: Workload, host: str, port: int, dbname: str, duration: int, threads: int,
            progress_every: int = 5, scale: int = 1) -> list[str]:
    """pgbench argv: no vacuum/init (-n), built-in script (-b) or our script (-f, with -s for its
    :scale), fixed duration (-T)."""
    script = ["-f", SCRIPTS[w.script], "-s", str(scale)] if w.script in SCRIPTS else ["-b", w.script]
    return ["pgbench", "-n", *script, "-M", w.mode, "-c", str(w.clients),
            "-j", str(max(1, min(threads, w.clients))), "-T", str(duration),
            "-P", str(progress_every), "-h", host, "-p", str(port), "-U", "postgres", dbname]


_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.M)
_LAT = re.compile(r"^latency average = ([0-9.]+) ms", re.M)
_TXN = re.compile(r"^number of transactions actually processed: (\d+)", re.M)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.M)


def first_error(output: str) -> str | None:
    """The first error pgbench reported, without its `pgbench: error:` prefix, spaces squeezed."""
    for line in output.splitlines():
        m = re.match(r"^pgbench: (?:error|fatal): (.*)$", line.strip())
        if m:
            return " ".join(m.group(1).split())
    return None


def parse(output: str, returncode: int) -> Outcome:
    """Read pgbench's summary (stdout and stderr together). Failed unless it ran cleanly to the end."""
    error = first_error(output)
    if "Run was aborted" in output and error is None:
        error = "run was aborted"
    tps = _TPS.search(output)
    lat = _LAT.search(output)
    txn = _TXN.search(output)
    failed = _FAILED.search(output)
    if error is None and returncode != 0:
        error = f"pgbench exited with code {returncode}"
    if error is None and tps is None:
        error = "no tps in pgbench output"
    if error is None and failed is not None and int(failed.group(1)) > 0:
        error = f"{failed.group(1)} failed transactions"
    return Outcome(tps=float(tps.group(1)) if tps else None,
                   latency_ms=float(lat.group(1)) if lat else None,
                   transactions=int(txn.group(1)) if txn else None,
                   error=error)


_PROGRESS = re.compile(r"^progress: ([0-9.]+) s, ([0-9.]+) tps")


def run(argv: list[str], timeout: float, echo: Callable[[str], None]) -> Outcome:
    """Run pgbench; echo its progress lines; a hang past `timeout` seconds is a failure."""
    start = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except OSError as exc:
        return Outcome(error=f"cannot start pgbench: {exc}")
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            m = _PROGRESS.match(line)
            if m:
                echo(f"{float(m.group(1)):4.0f}s  {float(m.group(2)):9.1f} tps")
        proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seconds = time.monotonic() - start
    if timed_out.is_set():
        return Outcome(error=f"timed out after {timeout:.0f}s", seconds=seconds)
    return dataclasses.replace(parse("".join(lines), proc.returncode), seconds=seconds)
