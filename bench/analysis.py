"""From measurements to findings: the targets (met or missed, with the gap) and where our CPU goes.

Pure functions over the run's numbers; the run module gathers them, report.py formats tables.
"""
from __future__ import annotations

from bench.profile import Summary
from bench.report import Row, Target

# "Today" in issue #13's targets: the full run bench/results/2026-11-25.md (scale 10, 25 s each).
TODAY = "2026-11-25"
TODAY_SELECT4_RATIO = 1_741 / 74_079   # select-only, 4 clients, -M simple: ours ÷ PostgreSQL
TODAY_UPDATE4_TPS = 120.0              # simple-update, 4 clients, -M simple
TODAY_P50_MS = 1.346                   # point select p50, 1 client, psycopg
PEER_RATIO_TARGET = 0.8                # select-only at 16 and 64 clients, ours ÷ buenavista
SELECT4_GAIN_TARGET = 2.5              # × today's ratio to PostgreSQL
CPU_US_TARGET = 300.0                  # per point select, summed over our processes, 16 clients
UPDATE4_GAIN_TARGET = 4.0              # × today's tps
PIPELINED_RATIO_TARGET = 0.25          # ours ÷ PostgreSQL, pipelined simple-update, 4 clients
LAG_P99_TARGET_MS = 5.0
LAG_RATE = 1000.0
LAG_RATE_ACHIEVED = 950.0              # "at 1k commits/s actually achieved"

SELECT4 = "select-only, 4 clients, -M simple"
SELECT16 = "select-only, 16 clients, -M simple"
SELECT64 = "select-only, 64 clients, -M simple"
UPDATE4 = "simple-update, 4 clients, -M simple"
PIPELINED4 = "simple-update pipelined, 4 clients, -M extended"


def _find(rows: list[Row], workload: str) -> Row | None:
    return next((r for r in rows if r.workload == workload), None)


def _ratio_target(name: str, rows: list[Row | None], wanted: list[str], target: float,
                  peer: str = "PostgreSQL") -> Target:
    """Met when every wanted row reaches `target` × the peer's figure; the gap names the worst row.
    Not measured (None) when a wanted row was not run (short mode runs fewer)."""
    parts, worst, missing = [], None, []
    for want, r in zip(wanted, rows):
        if r is None:
            missing.append(f"{want}: not run")
            continue
        ratio, theirs, their_error = ((r.ratio_bv, r.bv, r.bv_error) if peer == "buenavista"
                                      else (r.ratio, r.pg, r.pg_error))
        if ratio is None:
            why = r.ours_error or their_error or "no figure"
            return Target(name, f"{r.workload}: failed ({why})", False if r.ours_error else None)
        ours, theirs = r.ours or 0.0, theirs or 0.0  # both set when the ratio is
        parts.append(f"{r.workload}: {ratio:.2f}× ({ours:,.0f} vs {theirs:,.0f} tps)")
        if worst is None or ratio < worst[0]:
            worst = (ratio, r.workload, ours, theirs)
    if worst is None:
        return Target(name, "; ".join(missing), None)
    ratio, workload, ours, theirs = worst
    text = "; ".join(parts + missing)
    if ratio < target:
        need = target * theirs
        text += f". Gap: {workload} needs {need:,.0f} tps, {need / ours:.1f}× what it has"
    return Target(name, text, None if missing and ratio >= target else ratio >= target)


def targets(rows: list[Row], cpu_per_txn_us: dict[str, dict[str, float]], p50_ms: float | None,
            p50_method: str | None, lag: tuple[float, float, float] | None, lag_note: str | None) -> list[Target]:
    """Issue #13's targets. `lag` is (achieved commits/s, p50 ms, p99 ms)."""
    out = [_ratio_target(f"select-only, 16 and 64 clients ≥ {PEER_RATIO_TARGET}× the in-process peer's tps",
                         [_find(rows, SELECT16), _find(rows, SELECT64)], [SELECT16, SELECT64],
                         PEER_RATIO_TARGET, peer="buenavista")]
    want = SELECT4_GAIN_TARGET * TODAY_SELECT4_RATIO
    out.append(_ratio_target(f"select-only, 4 clients ≥ {SELECT4_GAIN_TARGET}× {TODAY}'s ratio to PostgreSQL "
                             f"({TODAY_SELECT4_RATIO:.3f}×, so ≥ {want:.3f}×)",
                             [_find(rows, SELECT4)], [SELECT4], want))
    name = f"CPU per point select summed over our processes, 16 clients ≤ {CPU_US_TARGET:,.0f} µs"
    per = cpu_per_txn_us.get(SELECT16)
    if not per:
        out.append(Target(name, f"{SELECT16}: not run or failed", None))
    else:
        total = sum(per.values())
        text = f"{total:,.0f} µs (" + ", ".join(f"{k} {v:,.0f}" for k, v in per.items()) + ")"
        if total > CPU_US_TARGET:
            text += f". Gap: {total / CPU_US_TARGET:.1f}× too much"
        out.append(Target(name, text, total <= CPU_US_TARGET))
    name = f"simple-update, 4 clients ≥ {UPDATE4_GAIN_TARGET:.0f}× {TODAY}'s tps ({TODAY_UPDATE4_TPS:,.0f})"
    r = _find(rows, UPDATE4)
    if r is None or r.ours is None or r.ours_error:
        out.append(Target(name, f"{UPDATE4}: " + (f"failed ({r.ours_error})" if r else "not run"),
                          False if r else None))
    else:
        gain = r.ours / TODAY_UPDATE4_TPS
        text = f"{r.ours:,.0f} tps, {gain:.1f}× {TODAY}'s"
        if gain < UPDATE4_GAIN_TARGET:
            text += f". Gap: needs {UPDATE4_GAIN_TARGET * TODAY_UPDATE4_TPS:,.0f} tps"
        out.append(Target(name, text, gain >= UPDATE4_GAIN_TARGET))
    out.append(_ratio_target(f"pipelined simple-update, 4 clients ≥ {PIPELINED_RATIO_TARGET}× PostgreSQL's "
                             "(durable commits both sides)", [_find(rows, PIPELINED4)], [PIPELINED4],
                             PIPELINED_RATIO_TARGET))
    name = f"replica lag p99 ≤ {LAG_P99_TARGET_MS:.0f} ms at {LAG_RATE:,.0f} commits/s actually achieved"
    if lag is None:
        out.append(Target(name, lag_note or "not measured", None))
    else:
        rate, p50, p99 = lag
        text = f"p50 {p50:.2f} ms, p99 {p99:.2f} ms at {rate:,.0f} commits/s achieved"
        if rate < LAG_RATE_ACHIEVED:
            text += " (below the rate: the lag was measured at a lower load)"
        out.append(Target(name, text, p99 <= LAG_P99_TARGET_MS and rate >= LAG_RATE_ACHIEVED))
    name = f"point select p50, 1 client, no worse than {TODAY}'s ({TODAY_P50_MS:.3f} ms)"
    if p50_ms is None:
        out.append(Target(name, "not measured", None))
    else:
        out.append(Target(name, f"{p50_ms:.3f} ms, psycopg, {p50_method}", p50_ms <= TODAY_P50_MS))
    return out


def cpu_table(cpu_per_txn_us: dict[str, dict[str, float]], tps: dict[str, float]) -> str:
    """Per workload: CPU microseconds our services spent per transaction, and the tps ceiling that
    implies on this machine's cores if nothing else ran (pgbench itself also needs CPU)."""
    import os
    services = sorted({s for d in cpu_per_txn_us.values() for s in d})
    head = "| workload | " + " | ".join(f"{s} µs" for s in services) + " | total µs | tps | ceiling at " \
           f"{os.cpu_count()} cores |"
    lines = [head, "|---|" + "---:|" * (len(services) + 3)]
    for workload, per in cpu_per_txn_us.items():
        total = sum(per.values())
        ceiling = (os.cpu_count() or 1) * 1e6 / total if total else 0
        lines.append(f"| {workload} | " + " | ".join(f"{per.get(s, 0):,.0f}" for s in services)
                     + f" | {total:,.0f} | {tps.get(workload, 0):,.0f} | {ceiling:,.0f} |")
    return "\n".join(lines)


def profile_table(summaries: dict[str, Summary], cpu_us: dict[str, float]) -> str:
    """Per service and bucket: share of busy samples, and that share of the service's CPU per query."""
    lines = ["| service | CPU µs/query | bucket | share of busy samples | ≈ µs/query |", "|---|---:|---|---:|---:|"]
    for svc, s in summaries.items():
        us = cpu_us.get(svc, 0.0)
        first = True
        for bucket, n in s.buckets.items():
            share = n / s.busy if s.busy else 0
            lines.append(f"| {svc if first else ''} | {f'{us:,.0f}' if first else ''} | {bucket} | "
                         f"{share:.0%} | {share * us:,.0f} |")
            first = False
    return "\n".join(lines)


def top_frames(summaries: dict[str, Summary]) -> str:
    out = []
    for svc, s in summaries.items():
        out.append(f"- **{svc}** ({s.busy} busy of {s.samples} samples): "
                   + "; ".join(f"`{frame}` {n / s.busy:.0%}" for frame, n in s.top_self) if s.busy else
                   f"- **{svc}**: no busy samples")
    return "\n".join(out)
