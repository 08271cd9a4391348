"""One benchmark run: ours, a throwaway PostgreSQL 15 and the in-process peer (buenavista over
SQLite, bench/peer.py) side by side, then the results file.

    python -m bench --mode full     # `make bench`: bench/results/<date>.md, .png, -profile/
    python -m bench --mode short    # `make bench-short` (CI): a few seconds each, into build/
    python -m bench --mode full --only '(16|64) clients|pipelined' --out build/x   # some workloads
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import re
import signal
import subprocess
import sys
import time

from bench import client, embedded, latency, pgbench, profile, replica_lag, report
from bench.ours import Ours, free_port
from bench.peer import Peer
from bench.postgres import Postgres, ensure_installed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Mode:
    scale: int
    seconds: int          # per pgbench workload
    latency_seconds: int
    profile_seconds: int
    lag_seconds: int
    out_dir: str


MODES = {
    "full": Mode(scale=10, seconds=25, latency_seconds=15, profile_seconds=12, lag_seconds=10,
                 out_dir=os.path.join(ROOT, "bench", "results")),
    "short": Mode(scale=1, seconds=3, latency_seconds=2, profile_seconds=2, lag_seconds=2,
                  out_dir=os.path.join(ROOT, "build", "bench-short")),
}


class Progress:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def __call__(self, msg: str) -> None:
        print(f"[bench {time.monotonic() - self.t0:6.1f}s] {msg}", flush=True)


def _interrupt(signum, frame):  # noqa: ARG001
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=sorted(MODES), default="full")
    p.add_argument("--scale", type=int, help="pgbench scale (default: 10 full, 1 short)")
    p.add_argument("--seconds", type=int, help="seconds per pgbench workload (default: 25 full, 3 short)")
    p.add_argument("--out", help="folder for the results (default: bench/results full, build/bench-short short)")
    p.add_argument("--only", help="run only the pgbench workloads whose name matches this regular expression")
    args = p.parse_args(argv)
    m = MODES[args.mode]
    m = dataclasses.replace(m, scale=args.scale or m.scale, seconds=args.seconds or m.seconds,
                            out_dir=os.path.abspath(args.out or m.out_dir))
    signal.signal(signal.SIGTERM, _interrupt)
    say = Progress()
    try:
        return Run(args.mode, m, say, args.only).go()
    except KeyboardInterrupt:
        say("interrupted; everything stopped and removed")
        return 130


class Run:
    def __init__(self, mode_name: str, mode: Mode, say: Progress, only: str | None = None) -> None:
        self.mode_name, self.m, self.say = mode_name, mode, say
        self.workloads = [w for w in pgbench.workloads(mode_name) if not only or re.search(only, w.name)]
        self.date = datetime.date.today().isoformat()
        self.rows: list[report.Row] = []
        self.cpu_per_txn: dict[str, dict[str, float]] = {}
        self.tps: dict[str, float] = {}
        self.durations: list[tuple[str, float]] = []
        self.notes: list[str] = []
        self.pg_settings: dict[str, str] = {}
        self.lat_method: str | None = None
        self.lat: dict[str, latency.Latency] = {}
        self.client_rows: list[client.ClientRow] = []
        self.client_note: str | None = None
        self.embedded: embedded.Embedded | None = None
        self.embedded_note: str | None = None
        self.lag: replica_lag.Lag | None = None
        self.lag_note: str | None = None
        self.profiles: dict[str, profile.Summary] = {}
        self.profile_cpu_us: dict[str, float] = {}
        self.profile_note: str | None = None
        self.load_start = loadavg()

    def say_elapsed(self) -> float:
        return self.say.elapsed()

    def step(self, name: str, fn, *a):
        t = time.monotonic()
        out = fn(*a)
        self.durations.append((name, time.monotonic() - t))
        return out

    def go(self) -> int:
        m, say = self.m, self.say
        say(f"mode {self.mode_name}: scale {m.scale}, {m.seconds}s per workload, results in {m.out_dir}")
        ensure_installed(say)
        ports: set[int] = set()
        pg = Postgres(free_port(ports))
        self.log_dir = os.path.join(ROOT, "build", f"bench-{self.mode_name}-logs")  # never committed
        ours = Ours(ports, self.log_dir)
        peer = Peer(ports, self.log_dir)
        try:
            say(f"starting PostgreSQL 15 on 127.0.0.1:{pg.port} in {pg.dir}")
            self.step("start PostgreSQL", pg.start)
            self.pg_settings = pg.settings()
            say(f"starting ours (edge pg port {ours.pg_port}) in {ours.dir}")
            self.step("start ours", ours.start)
            say(f"loading scale {m.scale} into PostgreSQL (pgbench -i)")
            self.step("load PostgreSQL", pg.load, m.scale)
            say(f"loading scale {m.scale} into ours (psql, SQLite-dialect script)")
            self.step("load ours", ours.load, m.scale)
            say(f"loading scale {m.scale} into a SQLite file (the same script) and starting buenavista "
                f"on 127.0.0.1:{peer.port}")
            self.step("load buenavista", peer.load, m.scale)
            self.step("start buenavista", peer.start)
            self.pgbench_all(ours, pg, peer)
            self.latency(ours, pg, peer)
            self.client(ours)
            self.embedded_replica(ours, pg)
            peer.stop()
            self.replica(ours)
            self.profile(ours)
            ours.stop()
            self.mvsqlite(ports, pg)
        finally:
            say("stopping ours, PostgreSQL and buenavista")
            ours.stop()
            pg.stop()
            peer.stop()
        return self.finish()

    def pgbench_all(self, ours: Ours, pg: Postgres, peer: Peer) -> None:
        threads = os.cpu_count() or 1
        wls = self.workloads
        for i, w in enumerate(wls, 1):
            got = {}
            for side, port in (("ours", ours.pg_port), ("PostgreSQL", pg.port), ("buenavista", peer.port)):
                self.say(f"({i}/{len(wls)}) {w.name} on {side}")
                cpu0 = ours.cpu() if side == "ours" else {}
                out = pgbench.run(pgbench.command(w, "127.0.0.1", port, "main", self.m.seconds, threads,
                                                  progress_every=max(1, min(5, self.m.seconds // 3)),
                                                  scale=self.m.scale),
                                  self.m.seconds + 60, lambda s, side=side: self.say(f"    {side}: {s}"))
                if side == "ours" and out.ok and out.transactions:
                    cpu1 = ours.cpu()
                    self.cpu_per_txn[w.name] = {k: (cpu1[k] - cpu0[k]) * 1e6 / out.transactions for k in cpu1}
                    self.tps[w.name] = out.tps or 0.0
                self.durations.append((f"{w.name} on {side}", out.seconds))
                self.say(f"    {side}: " + (f"{out.tps:,.1f} tps, {out.latency_ms:.3f} ms average"
                                            if out.ok else f"FAILED: {out.error}"))
                got[side] = out
            o, g, b = got["ours"], got["PostgreSQL"], got["buenavista"]
            self.rows.append(report.Row(f"{w.name}", "tps", o.tps if o.ok else None, g.tps if g.ok else None,
                                        o.error, g.error, b.tps if b.ok else None, b.error))

    def mvsqlite(self, ports: set[int], pg: Postgres) -> None:
        """The mvsqlite backend beside the file backend: the same pgbench workloads, a subset.

        It runs on the FoundationDB TEST DOUBLE (in memory, one process), the only FoundationDB
        these machines can run, so the figures show our layers' cost, not a real cluster's."""
        mv = Ours(ports, os.path.join(self.log_dir, "mvsqlite"), backend="mvsqlite")
        try:
            self.say("starting ours on the mvsqlite backend (FoundationDB test double)")
            self.step("start ours (mvsqlite)", mv.start)
            self.step("load ours (mvsqlite)", mv.load, self.m.scale)
            pg_rows = {r.workload: r for r in self.rows}
            for w in self.workloads:
                if w.mode != "prepared":
                    continue
                self.say(f"{w.name} on ours (mvsqlite)")
                out = pgbench.run(pgbench.command(w, "127.0.0.1", mv.pg_port, "main", self.m.seconds,
                                                  os.cpu_count() or 1, progress_every=max(1, min(5, self.m.seconds // 3)),
                                                  scale=self.m.scale),
                                  self.m.seconds + 60, lambda s: self.say(f"    mvsqlite: {s}"))
                self.say("    mvsqlite: " + (f"{out.tps:,.1f} tps" if out.ok else f"FAILED: {out.error}"))
                ref = pg_rows.get(w.name)
                self.rows.append(report.Row(f"{w.name} [mvsqlite backend]", "tps", out.tps if out.ok else None,
                                            ref.pg if ref else None, out.error, ref.pg_error if ref else "not run"))
            port, _ = replica_lag.find_replica(mv.services, mv.ports)
            if port is not None:
                dsn = "host=127.0.0.1 port={} user=postgres dbname=main connect_timeout=10"
                self.say(f"replica lag on ours (mvsqlite) at 1,000 commits/s for {self.m.lag_seconds}s")
                lag = self.step("replica lag (mvsqlite)", replica_lag.measure, dsn.format(mv.pg_port),
                                dsn.format(port), 1000.0, self.m.lag_seconds)
                self.say(f"    p50 {lag.p50_ms:.2f} ms, p99 {lag.p99_ms:.2f} ms at "
                         f"{lag.rate_achieved:,.0f} commits/s achieved")
                self.notes.append(f"Replica lag with the mvsqlite backend (replicas fed from the page store's "
                                  f"changelog): p50 {lag.p50_ms:.1f} ms, p99 {lag.p99_ms:.1f} ms at "
                                  f"{lag.rate_achieved:,.0f} commits/s achieved ({lag.commits} commits).")
        except Exception as exc:  # a failing backend is a finding, not a harness crash
            self.say(f"    mvsqlite: FAILED: {exc}")
            self.notes.append(f"mvsqlite backend run failed: {exc}")
        finally:
            mv.stop()

    def latency(self, ours: Ours, pg: Postgres, peer: Peer) -> None:
        accounts = 100_000 * self.m.scale
        dsn = "host=127.0.0.1 port={} user=postgres dbname=main connect_timeout=10"
        why = latency.works_with_parameters(dsn.format(ours.pg_port))
        self.lat_method = latency.PARAMS if why is None else latency.LITERAL
        if why:
            self.notes.append(f"Point-select latency uses literal SQL on both sides: psycopg with "
                              f"parameters fails on ours ({why}).")
        for side, port in (("ours", ours.pg_port), ("PostgreSQL", pg.port), ("buenavista", peer.port)):
            self.say(f"point-select latency on {side}: psycopg, 1 client, {self.lat_method}, "
                     f"{self.m.latency_seconds}s")
            try:
                res = self.step(f"latency on {side}", latency.measure, dsn.format(port), self.lat_method,
                                accounts, self.m.latency_seconds)
                self.lat[side] = res
                self.say(f"    {side}: p50 {res.p50_ms:.3f} ms, p99 {res.p99_ms:.3f} ms ({res.count:,} queries)")
            except Exception as exc:  # a failing measurement is a finding, not a harness crash
                self.say(f"    {side}: FAILED: {exc}")
                self.notes.append(f"Point-select latency on {side} failed: {exc}")
        o, g, b = self.lat.get("ours"), self.lat.get("PostgreSQL"), self.lat.get("buenavista")
        for q in ("p50", "p99"):
            self.rows.append(report.Row(f"point select {q}, 1 client, psycopg", "ms",
                                        getattr(o, f"{q}_ms") if o else None, getattr(g, f"{q}_ms") if g else None,
                                        None if o else "see notes", None if g else "see notes",
                                        getattr(b, f"{q}_ms") if b else None, None if b else "see notes"))

    def client(self, ours: Ours) -> None:
        self.say(f"client: sqldclient against psycopg on our edge, {self.m.latency_seconds}s per loop and client")
        try:
            self.client_rows = self.step("client loops", client.measure, ours.pg_port, 100_000 * self.m.scale,
                                         self.m.latency_seconds)
            for r in self.client_rows:
                self.say(f"    {r.loop}: sqldclient {r.sqldclient_us:,.0f} µs, psycopg {r.psycopg_us:,.0f} µs")
        except Exception as exc:  # a failing measurement is a finding, not a harness crash
            self.client_note = f"failed: {exc}"
            self.say(f"    FAILED: {exc}")

    def embedded_replica(self, ours: Ours, pg: Postgres) -> None:
        self.say(f"embedded replica: point select against our edge and PostgreSQL, commit-to-visible, "
                 f"{self.m.latency_seconds}s each")
        try:
            e = self.embedded = self.step("embedded replica", embedded.measure, ours, pg.port,
                                          100_000 * self.m.scale, self.m.latency_seconds)
            for name, (p50, p99) in e.select_us.items():
                self.say(f"    point select, {name}: p50 {p50:,.1f} µs, p99 {p99:,.1f} µs")
            self.say(f"    commit to visible in the embedded replica: p50 {e.visible_p50_ms:.2f} ms, "
                     f"p99 {e.visible_p99_ms:.2f} ms ({e.commits:,} commits)")
        except Exception as exc:  # a failing measurement is a finding, not a harness crash
            self.embedded_note = f"failed: {exc}"
            self.say(f"    FAILED: {exc}")

    def replica(self, ours: Ours) -> None:
        port, why = replica_lag.find_replica(ours.services, ours.ports)
        if port is None:
            self.lag_note = why
            self.say(f"replica lag: {why}")
            return
        dsn = "host=127.0.0.1 port={} user=postgres dbname=main connect_timeout=10"
        self.say(f"replica lag at 1,000 commits/s for {self.m.lag_seconds}s, "
                 f"{replica_lag.WRITERS} concurrent writers")
        try:
            self.lag = self.step("replica lag", replica_lag.measure, dsn.format(ours.pg_port), dsn.format(port),
                                 1000.0, self.m.lag_seconds)
            self.say(f"    p50 {self.lag.p50_ms:.2f} ms, p99 {self.lag.p99_ms:.2f} ms at "
                     f"{self.lag.rate_achieved:,.0f} commits/s achieved ({self.lag.writers} writers)")
        except Exception as exc:
            self.lag_note = f"failed: {exc}"
            self.say(f"    FAILED: {exc}")

    def profile(self, ours: Ours) -> None:
        w = pgbench.Workload("select-only", 4, "simple")
        out_dir = os.path.join(self.m.out_dir, f"{self.date}-profile" if self.mode_name == "full" else "profile")
        self.say(f"profile: py-spy on each service during {w.name}, {self.m.profile_seconds}s")
        try:
            argv = pgbench.command(w, "127.0.0.1", ours.pg_port, "main", self.m.profile_seconds + 6,
                                   os.cpu_count() or 1)
            bench_proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            time.sleep(1)  # let the clients connect before sampling
            cpu0, t0 = ours.cpu(), time.monotonic()
            spies = profile.record(ours.pids(), self.m.profile_seconds, out_dir, self.log_dir)
            for spy in spies.values():
                spy.wait(self.m.profile_seconds + 30)
            cpu1, wall = ours.cpu(), time.monotonic() - t0
            text = bench_proc.communicate(timeout=60)[0]
            res = pgbench.parse(text, bench_proc.returncode)
            if not res.ok or not res.transactions:
                raise RuntimeError(f"pgbench during profiling: {res.error}")
            source = profile.source_reader(os.path.join(ROOT, "services"))
            for name in ours.pids():
                raw_path = os.path.join(out_dir, f"{name}.txt")
                if not os.path.exists(raw_path):
                    raise RuntimeError(f"py-spy wrote nothing for {name}; see {self.log_dir}/{name}.py-spy.log")
                with open(raw_path) as f:
                    self.profiles[name] = profile.summarize(f.read(), source_line=source)
                # CPU per query over the sampled window; queries in it estimated from the run's tps
                self.profile_cpu_us[name] = (cpu1[name] - cpu0[name]) * 1e6 / (res.tps * wall)
            self.say("    " + ", ".join(f"{k} {v:,.0f} µs CPU/query" for k, v in self.profile_cpu_us.items()))
        except Exception as exc:
            self.profile_note = f"profile not available: {exc}"
            self.say(f"    {self.profile_note}")

    def finish(self) -> int:
        from bench import results
        md_path = results.write(self)
        self.say(f"wrote {md_path}")
        ours_failed = [r for r in self.rows if r.ours_error]
        pg_failed = [r for r in self.rows if r.pg_error]
        print("\n" + report.table(self.rows) + "\n", flush=True)
        if ours_failed:
            bar = "!" * 78
            print(f"{bar}\n!! {len(ours_failed)} workload(s) FAILED ON OURS (a finding about our system, "
                  f"not a harness bug):", flush=True)
            for r in ours_failed:
                print(f"!!   {r.workload}: {r.ours_error}", flush=True)
            print(bar, flush=True)
        for r in self.rows:
            if r.bv_error and r.bv_error != "see notes":
                print(f"buenavista cannot run {r.workload}: {r.bv_error}", flush=True)
        if pg_failed:
            print(f"bench: {len(pg_failed)} workload(s) failed on PostgreSQL: the harness is broken", flush=True)
            return 1
        return 0


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    ver = subprocess.run(["pgbench", "--version"], capture_output=True, text=True).stdout.strip()
    return {"cores (nproc)": str(os.cpu_count()), "CPU": cpu, "Python": platform.python_version(),
            "OS": platform.platform(), "pgbench": ver}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
