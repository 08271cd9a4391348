"""The top-level select list of a translated catalog query: result type hints and empty answers."""
from __future__ import annotations

import re

from sqld.common.sqltext import OP, QID, WORD, Token, significant
from sqld.edge.catalog.schema import COLUMN_TYPES, EMPTY
from sqld.edge.sqlparts import split_select_list

_COMPARE_WORDS = {"IS", "IN", "NOT", "REGEXP", "LIKE", "EXISTS", "AND", "OR"}
_COMPARE_CHARS = frozenset("=<>!")  # an operator spelled with one of these compares (<=, <>, !=, ...)


def _skip_with(toks: list[Token]) -> list[Token]:
    """The main SELECT of `toks`, past any leading WITH clause."""
    if not toks or toks[0].text.upper() != "WITH":
        return toks
    depth = 0
    for i, (_, t) in enumerate(toks):
        if t == "(":
            depth += 1
        elif t == ")":
            depth -= 1
        elif depth == 0 and t.upper() == "SELECT":
            return toks[i:]
    return toks


def select_items(sql: str) -> tuple[list[list[Token]], list[Token]]:
    """Top-level select items and the tokens after the select list."""
    toks = _skip_with(significant(sql))
    if not toks or toks[0].text.upper() != "SELECT":
        return [], []
    start = 2 if len(toks) > 1 and toks[1].text.upper() == "DISTINCT" else 1
    return split_select_list(toks, start)


def _split_alias(item: list[Token]) -> tuple[list[Token], str]:
    if len(item) >= 2 and item[-1].kind in (WORD, QID) and item[-2].text.upper() == "AS":
        return item[:-2], item[-1].text.strip('"')
    if len(item) >= 2 and item[-1].kind in (WORD, QID) and item[-2].kind in (WORD, QID, OP) \
            and item[-2].text != "." and item[-1].text.upper() != "END":
        if item[-2].text == ")" or item[-2].kind in (WORD, QID):
            return item[:-1], item[-1].text.strip('"')
    return item, ""


# x::type at the end of an item -> the PostgreSQL type it names
_CAST_TYPES = {"boolean": "bool", "bool": "bool", "int2": "int2", "smallint": "int2", "int4": "int4",
               "integer": "int4", "int": "int4", "int8": "int8", "bigint": "int8", "text": "text", "oid": "oid",
               "name": "name", "char": "char", "float8": "float8"}


def _hint(expr: list[Token], aliases: dict[str, str] | None = None) -> str:
    if not expr:
        return ""
    texts = [t for _, t in expr]
    if len(texts) >= 3 and texts[-2] == "::" and texts[-1].lower() in _CAST_TYPES:
        return _CAST_TYPES[texts[-1].lower()]
    if len(expr) == 1 or (len(expr) >= 3 and all(t == "." for t in texts[1::2])):
        name = texts[-1].strip('"').lower()
        return (aliases or {}).get(name) or COLUMN_TYPES.get(name, "")
    if texts[:2] == ["(", "'{'"] and "group_concat" in [t.lower() for t in texts[2:6]]:
        return "anyarray"
    depth = 0
    for kind, t in expr:
        if t == "(":
            depth += 1
        elif t == ")":
            depth -= 1
        elif depth == 0 and ((kind is OP and not _COMPARE_CHARS.isdisjoint(t))
                             or (kind is WORD and t.upper() in _COMPARE_WORDS)):
            return "bool" if texts[0].upper() != "CASE" else ""
    if texts[0].upper() in ("MIN", "MAX") and texts[1] == "(" and texts[-1] == ")" and len(expr) == 4:
        return COLUMN_TYPES.get(texts[2].strip('"').lower(), "")
    return ""


def hints(sql: str) -> list[str]:
    """`pg:<typname>` per select item where the catalog says the type, else ""."""
    items, _ = select_items(sql)
    aliases = _subquery_aliases(sql)
    out = []
    for item in items:
        expr, _alias = _split_alias(item)
        h = _hint(expr, aliases)
        out.append(f"pg:{h}" if h else "")
    return out


def _subquery_aliases(sql: str) -> dict[str, str]:
    """alias -> type for `expr AS alias` in every nested SELECT, so outer queries can name them."""
    toks = significant(sql)
    out: dict[str, str] = {}
    for k in range(1, len(toks)):
        if toks[k].text.upper() == "SELECT" and toks[k - 1].text == "(":
            depth, end = 0, len(toks)
            for j in range(k, len(toks)):
                depth += toks[j].text == "("
                depth -= toks[j].text == ")"
                if depth < 0:
                    end = j
                    break
            items, _ = select_items(" ".join(t for _, t in toks[k:end]))
            for item in items:
                expr, alias = _split_alias(item)
                h = _hint(expr)
                if alias and h:
                    out.setdefault(alias.lower(), h)
    return out


def _from_tables(rest: list[Token]) -> list[tuple[str, bool]]:
    """(table, outer-joined) for the FROM items at depth 0 of one SELECT."""
    out: list[tuple[str, bool]] = []
    depth = 0
    expect = False
    left = False
    for k, t in rest:
        u = t.upper()
        if t == "(":
            depth += 1
        elif t == ")":
            depth -= 1
        if depth:
            continue
        if u in ("WHERE", "GROUP", "ORDER", "LIMIT", "HAVING", "UNION", "EXCEPT", "INTERSECT") and out:
            break
        if u in ("FROM", "JOIN") or t == ",":
            expect = True
            continue
        if u in ("LEFT", "RIGHT", "FULL"):
            left = True
            continue
        if expect and k in (WORD, QID):
            out.append((t.strip('"').lower(), left))
            expect, left = False, False
    return out


def empty_answer(sql: str) -> str | None:
    """A statement with the same columns and no rows, when every branch of `sql` inner-joins a
    catalog that is always empty on SQLite (pg_policy, pg_inherits, ...); else None."""
    if "?" in sql or "$" in sql:
        return None
    branches = re.split(r"\bUNION\b(?:\s+ALL\b)?", sql, flags=re.I)
    for branch in branches:
        _, rest = select_items(branch)
        if not any(t in EMPTY and not outer for t, outer in _from_tables(rest)):
            return None
    items, _ = select_items(branches[0])
    names = []
    for n, item in enumerate(items):
        _, alias = _split_alias(item)
        names.append(alias or (item[-1].text.strip('"') if item and item[-1].kind in (WORD, QID)
                               else f"column{n + 1}"))
    return "SELECT " + ", ".join(f'NULL AS "{a}"' for a in names) + " WHERE 0"
