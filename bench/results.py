"""Assemble and write the results: <out>/<date>.md and <date>.png (short mode: results.md/.png)."""
from __future__ import annotations

import os
import typing

from bench import analysis, client, embedded, peer, pgbench, report

if typing.TYPE_CHECKING:
    from bench.run import Run


def write(run: Run) -> str:
    m = run.m
    os.makedirs(m.out_dir, exist_ok=True)
    stem = run.date if run.mode_name == "full" else "results"
    md_path = os.path.join(m.out_dir, f"{stem}.md")
    png_path = os.path.join(m.out_dir, f"{stem}.png")
    from bench.run import loadavg, machine

    lat_o = run.lat.get("ours")
    lag = (run.lag.rate_achieved, run.lag.p50_ms, run.lag.p99_ms) if run.lag else None
    targets = analysis.targets(run.rows, run.cpu_per_txn, lat_o.p50_ms if lat_o else None, run.lat_method,
                               lag, run.lag_note)

    failed = [r for r in run.rows if r.ours_error]
    summary = (f"**{len(failed)} workload(s) failed on ours**: "
               + "; ".join(f"{r.workload}: {r.ours_error}" for r in failed)) if failed else \
        "Every workload ran on both systems."
    met = sum(1 for t in targets if t.met)
    summary += f" Targets met: {met} of {len(targets)}."

    setup = [
        f"- mode **{run.mode_name}**: pgbench scale {m.scale} (ours loaded with the SQLite-dialect script, "
        f"PostgreSQL with `pgbench -i`; same row counts), {m.seconds} s per pgbench workload, "
        f"`-n -b <script>` (or `-f` for ours below), `-j` = min(clients, cores), loopback TCP to all three servers",
        "- ratio = ours ÷ peer for tps, peer ÷ ours for latency: 1.0 is parity, higher is better for us",
        f"- buenavista {peer.VERSION}: the pg-wire server a Python user would pick to serve SQLite, one Python "
        "process, a thread per client; its SQLite backend is ours (bench/peer.py, sqlite3, a connection per "
        "session, SQL passed through), on its own file built by the same SQLite-dialect script as ours. "
        "A workload it cannot run is shown failed with its error",
        f"- {pgbench.PIPELINED}: bench/simple_update_pipelined.sql, the built-in simple-update's statements "
        "between `\\startpipeline` and `\\endpipeline` (one Sync per transaction), `-M extended`",
        "- durability: ours and buenavista `PRAGMA synchronous=FULL` in WAL mode (fsync of the WAL at every "
        "commit); PostgreSQL " + ", ".join(f"{k}={v}" for k, v in run.pg_settings.items()),
        f"- point-select latency: psycopg 3, 1 client, autocommit, random aid, {m.latency_seconds} s per side, "
        f"{run.lat_method}; counts: "
        + ", ".join(f"{k} {v.count:,}" for k, v in run.lat.items()),
    ]
    if run.lag:
        setup.append(f"- replica lag: autocommit INSERTs due at {run.lag.rate_wanted:,.0f}/s (open loop) from "
                     f"{run.lag.writers} concurrent writers, {run.lag.commits:,} commits, "
                     f"{run.lag.rate_achieved:,.0f} commits/s achieved; a second client polls the replica")
    setup += [f"- {k}: {v}" for k, v in machine().items()]
    setup.append(f"- load average (1, 5, 15 min) at start: {run.load_start}; at end: {loadavg()} "
                 "(other work on the machine shares the cores with both systems)")
    setup += [f"- note: {n}" for n in run.notes]

    durations = "| step | seconds |\n|---|---:|\n" + "\n".join(
        f"| {name} | {secs:.1f} |" for name, secs in run.durations)
    durations += f"\n| **whole run** | {run.say_elapsed():.0f} |"

    sections = [
        ("Summary", summary),
        ("Results", report.table(run.rows) + f"\n\n![ratios to PostgreSQL]({os.path.basename(png_path)})"),
        ("Targets (issue #13)", report.targets_table(targets)),
        ("Where our CPU goes per transaction",
         "CPU time of each of our processes (from /proc) during each pgbench run, divided by the "
         "transactions it completed. The ceiling is what the cores could sustain if only our services "
         "ran; pgbench itself shares the same cores.\n\n"
         + (analysis.cpu_table(run.cpu_per_txn, run.tps) if run.cpu_per_txn else "no workload succeeded on ours")),
        ("Client (issue #14): sqldclient against psycopg on our edge",
         "Median µs per operation, one connection per client, the two taking turns on the same edge "
         "(bench/client.py).\n\n" + (run.client_note or client.table(run.client_rows))),
        ("Embedded replica (issue #17): reads in the application's process",
         "sqldclient with `replica=` reads on a local copy synced from the replication log; psycopg "
         "reads over the wire; the three take turns, one connection each (bench/embedded.py).\n\n"
         + (run.embedded_note or (embedded.table(run.embedded) if run.embedded else "not run"))),
        ("Profile (select-only, 4 clients, -M simple)", profile_body(run)),
        ("Setup", "\n".join(setup)),
        ("Durations", durations),
    ]
    title = f"sqld-py vs PostgreSQL 15 — {run.date} ({run.mode_name} run)"
    with open(md_path, "w") as f:
        f.write(report.document(title, sections))
    try:
        report.chart(run.rows, png_path, title)
    except Exception as exc:  # matplotlib missing: the table still stands
        run.say(f"chart not drawn: {exc}")
    return md_path


def profile_body(run: Run) -> str:
    if run.profile_note:
        return run.profile_note
    rel = f"{run.date}-profile/" if run.mode_name == "full" else "profile/"
    return ("py-spy (`record --nonblocking --rate 250 --format raw`) on every service process, "
            f"raw collapsed stacks in `{rel}<service>.txt`. Each busy sample is charged to the innermost "
            "frame that falls in a bucket; time in C extensions (grpc's Cython core, apsw/SQLite, upb protobuf) "
            "counts on the Python line that called it. Idle = the event loop or gRPC's poller thread "
            "waiting. µs/query = the bucket's share × that service's measured CPU per query.\n\n"
            + analysis.profile_table(run.profiles, run.profile_cpu_us)
            + "\n\nTop innermost frames (busy samples):\n\n" + analysis.top_frames(run.profiles))
