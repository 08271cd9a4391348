"""pg_catalog emulation: catalog queries rewritten to SQLite SQL over the live schema.

The catalog is a step of the rewrite, not a caller of it: `rewrite` translates a statement that
names a catalog relation, catalog function or reg* type (or that ddl.py respells: SERIAL columns,
`(VALUES ...) AS t(a, b)`) and
returns a `Translated`, still in PostgreSQL's spelling; sqlrewrite.rewrite runs its own pass
($n, ::) over that and then, for a catalog query, prepends the catalog relations it uses
(`with_prefix`) and takes its PostgreSQL type hints (`pg:<typname>`) for the result columns,
which edge.types turns into OIDs. Other statements get None and go on unchanged. This package
imports only its own modules, edge.sqlparts, common.sqltext and common.sqlstate (ddl.py refuses
carried SQL that is not one statement); its modules import each other
by full name, never the package.
See services/sqld/edge/DESIGN.md, "Catalog".
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from sqld.edge.catalog import functions, live, schema, select, srf, translate
from sqld.edge.catalog.ddl import rewrite_ddl, rewrite_values_alias

_PREFILTER = re.compile(r"pg_|information_schema|\breg(class|type|namespace|proc)\b|\bcurrent_database\s*\(", re.I)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_TRIGGERS = (set(schema.R) | set(translate.FUNCTIONS) | set(translate.REG_CASTS) | set(live.SIGNALS)
             | {"information_schema"})


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


@dataclass(frozen=True, slots=True)
class Translated:
    """A statement as the catalog rewrote it, for sqlrewrite's own pass."""
    sql: str
    # A catalog query: `pg:` hints per select item (its result then needs `with_prefix`).
    # None for what ddl.py respelled, whose hints are the rewrite's own.
    column_hints: list[str] | None = None


def rewrite(sql: str) -> Translated | None:
    """The catalog's translation of `sql`, or None when it is neither a catalog query nor
    something ddl.py respells."""
    ddl = rewrite_ddl(sql) or rewrite_values_alias(sql)
    if ddl is not None:
        return Translated(ddl)
    if functions.wants(sql):
        typed = functions.hints(sql)  # pg_backend_pid() is int4 in the extended protocol too
        sql = functions.rewrite(sql)
        if not wants(sql):
            return Translated(sql, typed if any(typed) else None)
    elif not wants(sql):
        return None
    translated = srf.rewrite(translate.translate(sql))
    hints = select.hints(translated)
    if live.SIGNALS.keys() & {w.lower() for w in _WORD.findall(translated)}:
        hints = live.signal_hints(translated, hints)
        translated = live.rewrite_signals(translated)
    empty = select.empty_answer(translated)
    return Translated(empty if empty is not None else translated, hints)


@functools.lru_cache(maxsize=256)
def hints_for(sql: str) -> tuple[str, ...]:
    """Result type hints for a statement the simple protocol ran (empty for non-catalog SQL)."""
    if not wants(sql):
        return tuple(functions.hints(sql)) if functions.wants(sql) else ()
    return tuple(select.hints(translate.translate(functions.rewrite(sql) if functions.wants(sql) else sql)))
