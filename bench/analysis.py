"""From measurements to findings: the targets (met or missed, with the gap) and where our CPU goes.

Pure functions over the run's numbers; the run module gathers them, report.py formats tables.
"""
from __future__ import annotations

from bench.profile import Summary
from bench.report import Row, Target

TPS_RATIO_TARGET = 0.5
P50_TARGET_MS = 0.5
LAG_P99_TARGET_MS = 5.0


def _find(rows: list[Row], workload: str) -> Row | None:
    return next((r for r in rows if r.workload == workload), None)


def _ratio_target(name: str, rows: list[Row]) -> Target:
    """Met when every row reaches the ratio target; the gap names the worst row."""
    parts, worst = [], None
    for r in rows:
        if r.ratio is None:
            why = r.ours_error or r.pg_error or "no figure"
            parts.append(f"{r.workload}: failed ({why})")
            return Target(name, "; ".join(parts), None if r.pg_error else False)
        parts.append(f"{r.workload}: {r.ratio:.2f}× ({r.ours:,.0f} vs {r.pg:,.0f} tps)")
        worst = r if worst is None or r.ratio < worst.ratio else worst  # type: ignore[operator]
    if worst is None:
        return Target(name, "no workload measured", None)
    met = worst.ratio >= TPS_RATIO_TARGET  # type: ignore[operator]
    text = "; ".join(parts)
    if not met:
        need = TPS_RATIO_TARGET * worst.pg  # type: ignore[operator]
        text += (f". Gap: {worst.workload} needs {need:,.0f} tps, "
                 f"{need / worst.ours:.1f}× what it has")  # type: ignore[operator]
    return Target(name, text, met)


def targets(rows: list[Row], p50_ms: float | None, p50_method: str | None,
            lag: tuple[float, float, float] | None, lag_note: str | None) -> list[Target]:
    """The issue's four targets. `lag` is (achieved commits/s, p50 ms, p99 ms)."""
    out = []
    sel = [r for r in (_find(rows, "select-only, 4 clients, -M simple"),) if r]
    out.append(_ratio_target("pgbench select-only, 4 clients ≥ 0.5× PostgreSQL tps", sel))
    if p50_ms is None:
        out.append(Target("point select p50 ≤ 0.5 ms (1 client)", "not measured", None))
    else:
        gap = "" if p50_ms <= P50_TARGET_MS else f". Gap: {p50_ms / P50_TARGET_MS:.1f}× too slow"
        out.append(Target("point select p50 ≤ 0.5 ms (1 client)",
                          f"{p50_ms:.3f} ms, psycopg, {p50_method}{gap}", p50_ms <= P50_TARGET_MS))
    upd = [r for r in (_find(rows, "simple-update, 1 client, -M simple"),
                       _find(rows, "simple-update, 4 clients, -M simple")) if r]
    out.append(_ratio_target("pgbench simple-update ≥ 0.5× PostgreSQL tps (durable commits both sides)", upd))
    if lag is None:
        out.append(Target("replica lag p99 ≤ 5 ms at 1k commits/s", lag_note or "not measured", None))
    else:
        rate, p50, p99 = lag
        out.append(Target("replica lag p99 ≤ 5 ms at 1k commits/s",
                          f"p50 {p50:.2f} ms, p99 {p99:.2f} ms at {rate:,.0f} commits/s achieved",
                          p99 <= LAG_P99_TARGET_MS and rate >= 900))
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
