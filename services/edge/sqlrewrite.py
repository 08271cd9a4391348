"""PostgreSQL-flavoured SQL → SQLite SQL, for the few spellings SQLite lacks.

- `$n` placeholders become `?n`: SQLite treats `$1` as a *named* parameter numbered by
  first appearance, so `select $2, $1` would silently bind in the wrong order.
- `expr::type` casts become `CAST(expr AS type)` with the type mapped to SQLite's.
Strings, quoted identifiers and comments are left alone. Also extracts type hints for the
select list (casts, literals, count(...)), used to describe expression columns before they run,
and PostgreSQL's names for its columns (colnames.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(r"""
    (?P<ws>\s+|--[^\n]*|/\*.*?(?:\*/|$))
  | (?P<str>[eE]?'(?:[^']|'')*'?)
  | (?P<qid>"(?:[^"]|"")*"?)
  | (?P<param>\$\d+)
  | (?P<cast>::)
  | (?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+)
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<op>.)
""", re.S | re.X)

_TYPE_WORDS = {
    "double": "precision", "character": "varying",
}
SQLITE_TYPE = {
    "int": "INTEGER", "int2": "INTEGER", "int4": "INTEGER", "int8": "INTEGER", "integer": "INTEGER",
    "smallint": "INTEGER", "bigint": "INTEGER", "oid": "INTEGER", "serial": "INTEGER", "bigserial": "INTEGER",
    "float4": "REAL", "float8": "REAL", "real": "REAL", "double precision": "REAL", "float": "REAL",
    "numeric": "NUMERIC", "decimal": "NUMERIC",
    "text": "TEXT", "varchar": "TEXT", "character varying": "TEXT", "char": "TEXT", "character": "TEXT",
    "bpchar": "TEXT", "name": "TEXT", "uuid": "TEXT", "json": "TEXT", "jsonb": "TEXT", "date": "TEXT",
    "timestamp": "TEXT", "timestamptz": "TEXT", "time": "TEXT", "interval": "TEXT", "regtype": "TEXT",
    "regclass": "TEXT", "unknown": "TEXT",
    "bytea": "BLOB",
    "bool": "BOOLEAN", "boolean": "BOOLEAN",
}


@dataclass
class Rewritten:
    sql: str
    param_count: int = 0
    column_hints: list[str] = field(default_factory=list)  # SQLite decltype per select-list item, "" unknown
    column_names: list[str | None] = field(default_factory=list)  # colnames.output_names of the client's SQL


def _tokens(sql: str) -> list[tuple[str, str]]:
    return [(m.lastgroup or "op", m.group(0)) for m in _TOKEN.finditer(sql)]


def _operand_start(out: list[tuple[str, str]]) -> int:
    """Index in `out` where the operand ending at out[-1] starts (skipping whitespace)."""
    i = len(out) - 1
    while i >= 0 and out[i][0] == "ws":
        i -= 1
    if i < 0:
        return 0
    if out[i][1] == ")":
        depth = 0
        while i >= 0:
            if out[i][1] == ")":
                depth += 1
            elif out[i][1] == "(":
                depth -= 1
                if depth == 0:
                    break
            i -= 1
        if i > 0 and out[i - 1][0] == "word":  # function call: f(...)::type
            i -= 1
        return max(i, 0)
    while i >= 2 and out[i - 1][1] == "." and out[i - 2][0] in ("word", "qid"):  # a.b.c
        i -= 2
    return i


def _read_type(toks: list[tuple[str, str]], j: int) -> tuple[str, int]:
    """The type name starting at toks[j] (after '::'), and the index after it."""
    while j < len(toks) and toks[j][0] == "ws":
        j += 1
    if j >= len(toks) or toks[j][0] not in ("word", "qid"):
        return "", j
    name = toks[j][1].strip('"').lower()
    j += 1
    if name in ("pg_catalog",) and j + 1 < len(toks) and toks[j][1] == ".":
        return _read_type(toks, j + 1)
    k = j
    while k < len(toks) and toks[k][0] == "ws":
        k += 1
    if name in _TYPE_WORDS and k < len(toks) and toks[k][1].lower() == _TYPE_WORDS[name]:
        name, j = f"{name} {_TYPE_WORDS[name]}", k + 1
    elif name in ("timestamp", "time"):
        m = k
        words = []
        while m < len(toks) and (toks[m][0] == "ws" or toks[m][1].lower() in ("with", "without", "time", "zone")):
            if toks[m][0] != "ws":
                words.append(toks[m][1].lower())
            m += 1
        if words[:1] in (["with"], ["without"]) and words[1:3] == ["time", "zone"]:
            j = m
    # (n[, m]) and [] suffixes
    k = j
    while k < len(toks) and toks[k][0] == "ws":
        k += 1
    if k < len(toks) and toks[k][1] == "(":
        while k < len(toks) and toks[k][1] != ")":
            k += 1
        j = k + 1
    if j + 1 < len(toks) and toks[j][1] == "[" and toks[j + 1][1] == "]":
        j += 2
    return name, j


def rewrite(sql: str) -> Rewritten:
    from edge import catalog, colnames  # both use this module's tokenizer
    toks = _tokens(sql)
    out = catalog.rewrite(sql, _rewrite) or _rewrite(sql, toks)
    out.column_names = colnames.output_names(toks)  # named from the client's text, as PostgreSQL would
    return out


def _rewrite(sql: str, toks: list[tuple[str, str]] | None = None) -> Rewritten:
    toks = _tokens(sql) if toks is None else toks
    out: list[tuple[str, str]] = []
    max_param = 0
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        if kind == "param":
            n = int(text[1:])
            max_param = max(max_param, n)
            out.append(("param", f"?{n}"))
        elif kind == "cast":
            name, j = _read_type(toks, i + 1)
            if not name:
                out.append((kind, text))
            else:
                start = _operand_start(out)
                operand = "".join(t for _, t in out[start:]).strip()
                target = SQLITE_TYPE.get(name, name.upper())
                del out[start:]
                out.append(("cast", f"CAST({operand} AS {target})"))
                i = j
                continue
        else:
            out.append((kind, text))
        i += 1
    return Rewritten("".join(t for _, t in out), max_param, _select_hints(out))


SELECT_LIST_END = {"FROM", "WHERE", "GROUP", "ORDER", "LIMIT", "UNION", "HAVING", "WINDOW", "EXCEPT", "INTERSECT"}


def split_select_list(toks: list[tuple[str, str]], start: int
                      ) -> tuple[list[list[tuple[str, str]]], list[tuple[str, str]]]:
    """The top-level items of a select list beginning at toks[start] (no whitespace tokens),
    and the tokens after the list."""
    items: list[list[tuple[str, str]]] = [[]]
    depth = 0
    for i in range(start, len(toks)):
        k, t = toks[i]
        if depth == 0 and k == "word" and t.upper() in SELECT_LIST_END:
            return items, toks[i:]
        if t == "(":
            depth += 1
        elif t == ")":
            depth -= 1
        if t == "," and depth == 0:
            items.append([])
        else:
            items[-1].append((k, t))
    return items, []


_CAST_ITEM = re.compile(r"^CAST\(.*\sAS\s+([A-Z]+)\)$", re.S | re.I)


def _select_hints(toks: list[tuple[str, str]]) -> list[str]:
    words = [(k, t) for k, t in toks if k != "ws"]
    if not words or words[0][1].upper() != "SELECT":
        return []
    items, _ = split_select_list(words, 1)
    hints = []
    for item in items:
        if len(item) >= 2 and item[-1][0] in ("word", "qid") and item[-2][1].upper() == "AS":
            item = item[:-2]
        hints.append(_hint(item))
    return hints


def _hint(item: list[tuple[str, str]]) -> str:
    if len(item) == 1:
        kind, text = item[0]
        if kind == "num":
            return "REAL" if any(c in text for c in ".eE") else "INTEGER"
        if kind == "str":
            return "TEXT"
        if kind == "param":
            return "?" + text[1:]  # resolved to the parameter's type by the caller
        if kind == "cast":
            m = _CAST_ITEM.match(text)
            return m.group(1).upper() if m else ""
        return ""
    if item and item[0][0] == "word" and item[0][1].lower() == "count" and len(item) > 1 and item[1][1] == "(":
        return "INTEGER"
    return ""
