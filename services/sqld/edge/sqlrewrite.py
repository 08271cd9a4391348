"""PostgreSQL-flavoured SQL → SQLite SQL, for the few spellings SQLite lacks.

- `$n` placeholders become `?n`: SQLite treats `$1` as a *named* parameter numbered by
  first appearance, so `select $2, $1` would silently bind in the wrong order.
- `expr::type` casts become `CAST(expr AS type)` with the type mapped to SQLite's.
Strings, quoted identifiers and comments are left alone. Also extracts type hints for the
select list (casts, literals, count(...)), used to describe expression columns before they run,
and PostgreSQL's names for its columns (colnames.py).

This is the front of the edge's SQL handling: `rewrite` composes the catalog (catalog/, which
translates catalog queries, SERIAL columns and VALUES aliases into PostgreSQL SQL that SQLite can
run once rewritten here), this module's own pass, and column naming. The catalog and colnames never
import this module; what they share with it (reading a cast, splitting a select list) is in
sqlparts.py, and the tokens come from the one lexer, common/sqltext.py.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from sqld.common.sqltext import CAST, NUM, PARAM, QID, STR, WORD, WS, Token, per_text, significant, tokens
from sqld.edge import catalog, colnames, sqlitewire
from sqld.edge.sqlparts import operand_start, read_type, split_select_list

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


@dataclass(frozen=True)
class Rewritten:
    """Shared by every statement with the same text (`rewrite` is cached): never changed."""
    sql: str
    param_count: int = 0
    column_hints: list[str] = field(default_factory=list)  # SQLite decltype per select-list item, "" unknown
    column_names: list[str | None] = field(default_factory=list)  # colnames.output_names of the client's SQL


def rewrite(sql: str, param_count: int = 0) -> Rewritten:
    """What runs for the client's `sql`. In a SQLite-wire session (sqlitewire.py) the text is
    SQLite's already: it runs as written (placeholders are SQLite's, bound by index in Bind's
    order), with the parameter count its Parse declared (`param_count`). Otherwise PostgreSQL's
    SQL, rewritten (`from_postgresql`)."""
    if sqlitewire.ACTIVE.get():
        return Rewritten(sql, param_count)
    return from_postgresql(sql)


@per_text
def from_postgresql(sql: str) -> Rewritten:
    """`sql` in SQLite's spelling, with its parameter count, select-list type hints and
    PostgreSQL's column names. A catalog query (or a SERIAL column, a VALUES alias) is first
    translated by the catalog; for a catalog query its hints then replace ours and its relations
    are prefixed last. A pure function of the text, remembered per text (sqltext.per_text)."""
    step = catalog.rewrite(sql)
    if step is None:
        out, words = _rewrite(sql)
    else:
        out, _ = _rewrite(step.sql)
        words = significant(sql)
        if step.column_hints is not None:
            out = dataclasses.replace(out, sql=catalog.with_prefix(out.sql), column_hints=step.column_hints)
    # named from the client's text, as PostgreSQL would
    return dataclasses.replace(out, column_names=colnames.output_names(words))


_DOLLAR_PARAM = re.compile(r"\$(\d+)")


def _rewrite(sql: str) -> tuple[Rewritten, list[Token]]:
    """`$n` -> `?n` and `x::type` -> CAST(x AS type); also the significant tokens of `sql`.
    Tokenized once, and whitespace tokens are made only for a cast, where the text is rebuilt."""
    if "::" in sql:
        return _rewrite_casts(sql)
    words = significant(sql)
    if "$" not in sql:  # nothing to rewrite: the common case
        return Rewritten(sql, 0, _select_hints(words, 0)), words
    numbers = _numbers(words)
    if not numbers:  # a $ in a string, a $name
        out = sql
    elif len(numbers) == sql.count("$"):  # every $ starts a parameter: renumber them in the text
        out = _DOLLAR_PARAM.sub(lambda m: f"?{int(m.group(1))}", sql)
    else:  # a $ inside a string, a name or a comment too: rebuild the text from the tokens
        out = "".join(_numbered(t).text if t.kind is PARAM else t.text for t in tokens(sql))
    max_param = max(numbers, default=0)
    return Rewritten(out, max_param, _select_hints(words, max_param)), words


def _rewrite_casts(sql: str) -> tuple[Rewritten, list[Token]]:
    """_rewrite for a statement with `::`: parameters renumbered token by token, then casts."""
    toks = tokens(sql)
    words = [t for t in toks if t.kind is not WS]
    numbers = _numbers(words)
    out = _casts([_numbered(t) if t.kind is PARAM else t for t in toks] if numbers else toks)
    max_param = max(numbers, default=0)
    hints = _select_hints([t for t in out if t.kind is not WS], max_param)
    return Rewritten("".join(t.text for t in out), max_param, hints), words


def _numbers(words: list[Token]) -> list[int]:
    """The numbers of the `$n` parameters."""
    return [int(t.text[1:]) for t in words if t.kind is PARAM and t.text[0] == "$" and t.text[1:].isdecimal()]


def _numbered(tok: Token) -> Token:
    """`$n` as SQLite's numbered parameter `?n` (SQLite reads `$1` as a name, numbered by first use)."""
    text = tok.text
    return Token(PARAM, f"?{int(text[1:])}") if text[0] == "$" and text[1:].isdecimal() else tok


def _casts(toks: list[Token]) -> list[Token]:
    """`x::type` -> one token CAST(x AS type), the type mapped to SQLite's."""
    out: list[Token] = []
    i = 0
    for at in [k for k, t in enumerate(toks) if t.kind is CAST]:
        if at < i:  # inside the type name of the cast before
            continue
        out += toks[i:at]
        name, end = read_type(toks, at + 1)
        if not name:
            out.append(toks[at])
            i = at + 1
            continue
        start = operand_start(out)
        operand = "".join(t.text for t in out[start:]).strip()
        del out[start:]
        out.append(Token(CAST, f"CAST({operand} AS {SQLITE_TYPE.get(name, name.upper())})"))
        i = end
    out += toks[i:]
    return out


_CAST_ITEM = re.compile(r"^CAST\(.*\sAS\s+([A-Z]+)\)$", re.S | re.I)


def _select_hints(words: list[Token], params: int) -> list[str]:
    """Per select-list item, a SQLite type when it is a literal, a cast, a parameter or count()."""
    if not words or words[0].text.upper() != "SELECT":
        return []
    items, _ = split_select_list(words, 1)
    hints = []
    for item in items:
        if len(item) >= 2 and item[-1].kind in (WORD, QID) and item[-2].text.upper() == "AS":
            item = item[:-2]
        hints.append(_hint(item, params))
    return hints


def _hint(item: list[Token], params: int) -> str:
    if len(item) == 1:
        kind, text = item[0]
        if kind is NUM:
            if text[:2] in ("0x", "0X"):
                return "INTEGER"
            return "REAL" if any(c in text for c in ".eE") else "INTEGER"
        if kind is STR:
            return "TEXT"
        if kind is PARAM:  # $n (?n once rewritten): resolved to the parameter's type by the caller
            return f"?{int(text[1:])}" if text[1:].isdecimal() and int(text[1:]) <= params else ""
        if kind is CAST:
            m = _CAST_ITEM.match(text)
            return m.group(1).upper() if m else ""
        return ""
    if item and item[0].kind is WORD and item[0].text.lower() == "count" and len(item) > 1 and item[1].text == "(":
        return "INTEGER"
    return ""
