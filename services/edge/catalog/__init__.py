"""pg_catalog emulation: catalog queries rewritten to SQLite SQL over the live schema.

`rewrite` is the hook sqlrewrite calls first: for a statement that names a catalog relation,
catalog function or reg* type it returns the SQLite statement (the catalog relations it uses,
and those they need, as a WITH prefix) and PostgreSQL type hints (`pg:<typname>`) for the result
columns, which edge.types turns into OIDs. Other statements go on unchanged (None).
See services/edge/DESIGN.md, "Catalog".
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable

from edge.catalog import schema, select, srf, translate
from edge.catalog.ddl import rewrite_ddl, rewrite_values_alias

_PREFILTER = re.compile(r"pg_|information_schema|\breg(class|type|namespace|proc)\b|\bcurrent_database\s*\(", re.I)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_TRIGGERS = set(schema.R) | set(translate.FUNCTIONS) | set(translate.REG_CASTS) | {"information_schema"}


def wants(sql: str) -> bool:
    if not _PREFILTER.search(sql):
        return False
    return any(w.lower() in _TRIGGERS for w in _WORD.findall(sql))


def _needed(sql: str) -> list[str]:
    """Catalog relations `sql` uses, with their dependencies first."""
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        body = schema.R[name][1]
        for w in set(_WORD.findall(body)):
            if w in schema.R and w != name:
                visit(w)
        order.append(name)

    for w in dict.fromkeys(x.lower() for x in _WORD.findall(sql)):
        if w in schema.R:
            visit(w)
    return order


def with_prefix(sql: str) -> str:
    names = _needed(sql)
    if not names:
        return sql
    ctes = ", ".join(f"{n}({', '.join(c for c, _ in schema.R[n][0])}) AS ({schema.R[n][1].strip()})" for n in names)
    m = re.match(r"\s*WITH(\s+RECURSIVE)?\s", sql, re.I)
    if m:
        return f"WITH{m.group(1) or ''} {ctes}, {sql[m.end():]}"
    return f"WITH {ctes} {sql}"


def rewrite(sql: str, base: Callable[[str], object]) -> object | None:
    """The SQLite form of a catalog statement (via `base`, sqlrewrite's own rewrite), or None."""
    ddl = rewrite_ddl(sql) or rewrite_values_alias(sql)
    if ddl is not None:
        return base(ddl)
    if not wants(sql):
        return None
    translated = srf.rewrite(translate.translate(sql))
    hints = select.hints(translated)
    empty = select.empty_answer(translated)
    out = base(empty if empty is not None else translated)
    out.sql = with_prefix(out.sql)  # type: ignore[attr-defined]
    out.column_hints = hints  # type: ignore[attr-defined]
    return out


@functools.lru_cache(maxsize=256)
def hints_for(sql: str) -> tuple[str, ...]:
    """Result type hints for a statement the simple protocol ran (empty for non-catalog SQL)."""
    if not wants(sql):
        return ()
    return tuple(select.hints(translate.translate(sql)))
