"""The results file (markdown) and its chart. Pure apart from writing files; unit-tested.

Ratio convention: 1.0 is parity with the peer and higher is better for us, so throughput
rows are ours ÷ peer and latency rows are peer ÷ ours. Two peers: PostgreSQL, and the in-process
Python server (buenavista over SQLite, bench/peer.py).
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Row:
    workload: str
    unit: str                     # "tps" or "ms"
    ours: float | None
    pg: float | None
    ours_error: str | None = None
    pg_error: str | None = None
    bv: float | None = None       # the in-process peer (buenavista)
    bv_error: str | None = None

    @property
    def higher_is_better(self) -> bool:
        return self.unit != "ms"

    def _ratio(self, peer: float | None, peer_error: str | None) -> float | None:
        if self.ours is None or peer is None or self.ours_error or peer_error:
            return None
        if self.higher_is_better:
            return self.ours / peer if peer else None
        return peer / self.ours if self.ours else None

    @property
    def ratio(self) -> float | None:
        """Against PostgreSQL."""
        return self._ratio(self.pg, self.pg_error)

    @property
    def ratio_bv(self) -> float | None:
        """Against the in-process peer."""
        return self._ratio(self.bv, self.bv_error)


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    measured: str                 # what was measured, in words and numbers
    met: bool | None              # None: could not be measured


def fmt_value(value: float | None, unit: str, error: str | None) -> str:
    if error:
        return f"failed: {error}"
    if value is None:
        return "—"
    if unit == "ms":
        return f"{value:.3f} ms"
    return f"{value:,.0f} {unit}"


def fmt_ratio(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}×"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: list[Row]) -> str:
    lines = ["| workload | ours | PostgreSQL | buenavista | ours/PostgreSQL | ours/buenavista |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {_cell(r.workload)} | {_cell(fmt_value(r.ours, r.unit, r.ours_error))} | "
                     f"{_cell(fmt_value(r.pg, r.unit, r.pg_error))} | {_cell(fmt_value(r.bv, r.unit, r.bv_error))} | "
                     f"{fmt_ratio(r.ratio)} | {fmt_ratio(r.ratio_bv)} |")
    return "\n".join(lines)


def targets_table(targets: list[Target]) -> str:
    lines = ["| target | measured | status |", "|---|---|---|"]
    for t in targets:
        status = "not measured" if t.met is None else ("met" if t.met else "**missed**")
        lines.append(f"| {_cell(t.name)} | {_cell(t.measured)} | {status} |")
    return "\n".join(lines)


def failed_rows(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.ours_error or r.pg_error]


def document(title: str, sections: list[tuple[str, str]]) -> str:
    """A markdown document: a title, then (heading, body) sections."""
    parts = [f"# {title}", ""]
    for heading, body in sections:
        parts += [f"## {heading}", "", body.rstrip(), ""]
    return "\n".join(parts)


def chart(rows: list[Row], path: str, title: str) -> None:
    """A horizontal bar per workload: ratio against PostgreSQL (failed rows drawn as 0, marked)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.workload for r in rows]
    ratios = [r.ratio or 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
    colors = ["#c0392b" if r.ratio is None else ("#27ae60" if r.ratio >= 0.5 else "#e67e22") for r in rows]
    ax.barh(names, ratios, color=colors)
    for i, r in enumerate(rows):
        label = "failed" if r.ratio is None else f"{r.ratio:.2f}×"
        ax.text(max(ratios[i], 0) + 0.01, i, label, va="center", fontsize=8)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.axvline(0.5, color="grey", linewidth=0.8, linestyle="--")
    ax.invert_yaxis()
    ax.set_xlabel("ratio to PostgreSQL 15 (1.0 = parity; higher is better; dashed = 0.5× target)")
    ax.set_title(title, fontsize=10)
    ax.set_xlim(0, max([1.1] + [x * 1.15 for x in ratios]))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
