"""PostgreSQL's names for unaliased result columns (its FigureColname), from the select list.

SQLite names an expression column by its text (`SELECT count(*)` → `count(*)`); PostgreSQL
names a function call by the function (`count`), a cast by its operand or else its type
(`1::int` → `int4`), CASE by its ELSE or `case`, a scalar subquery by its column, and any
other expression `?column?`. Bare column references and aliased items keep SQLite's name
(the declared column name, the alias), and so does every item this module cannot read with
confidence: None in the list means "keep SQLite's name", STAR marks `*` / `t.*`.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqld.common.sqltext import CAST, NUM, OP, PARAM, QID, STR, WORD, Token
from sqld.edge import sqlitewire
from sqld.edge.sqlparts import split_select_list

STAR = "*"
UNKNOWN = "?column?"

# Words that make an expression an operator expression (PostgreSQL names those ?column?).
_OPERATOR_WORDS = {"AND", "OR", "NOT", "IS", "IN", "LIKE", "ILIKE", "GLOB", "REGEXP", "MATCH", "BETWEEN",
                   "ISNULL", "NOTNULL", "ESCAPE", "SIMILAR", "OVERLAPS"}
# A word before the last one that shows the last word is an operand, not an implicit alias.
_BEFORE_OPERAND = _OPERATOR_WORDS | {"COLLATE", "CASE", "WHEN", "THEN", "ELSE", "OVER", "DISTINCT", "AS",
                                     "ALL", "ANY", "SOME", "EXISTS", "SELECT", "RETURNING"}
_ENDS_EXPRESSION = {"END", "NULL", "TRUE", "FALSE", "PRECISION", "VARYING", "ZONE", "ISNULL", "NOTNULL"}
_CONSTANTS = {"null", "true", "false"}
_VALUE_FUNCTIONS = {"current_date", "current_time", "current_timestamp", "localtime", "localtimestamp",
                    "current_role", "current_user", "user", "session_user", "current_catalog", "current_schema"}
_KEYWORD_ITEMS = _CONSTANTS | _VALUE_FUNCTIONS
# Type spellings whose PostgreSQL name differs (typeName's last part: `::integer` → int4).
_TYPE_NAMES = {
    "int": "int4", "integer": "int4", "smallint": "int2", "bigint": "int8", "real": "float4",
    "float": "float8", "double precision": "float8", "decimal": "numeric", "dec": "numeric",
    "boolean": "bool", "char": "bpchar", "character": "bpchar", "character varying": "varchar",
    "char varying": "varchar", "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz", "time without time zone": "time",
    "time with time zone": "timetz", "bit varying": "varbit",
}


def output_names(words: Sequence[Token]) -> list[str | None]:
    """Per top-level item of the statement's select list (or RETURNING list): PostgreSQL's
    column name, STAR, or None (keep SQLite's). Empty for statements without one.
    `words`: the statement's significant tokens (common.sqltext.significant)."""
    words = list(words)
    while words and words[-1].text == ";":
        words.pop()
    return [_item_name(item) for item in _items(words)]


def _items(words: list[Token]) -> list[list[Token]]:
    head = words[0][1].upper() if words else ""
    if head == "WITH":
        words = _after_with(words)
        head = words[0][1].upper() if words else ""
    if head == "SELECT":
        start = 2 if len(words) > 1 and words[1].text.upper() in ("DISTINCT", "ALL") else 1
        return split_select_list(words, start)[0]
    if head in ("INSERT", "UPDATE", "DELETE", "REPLACE"):
        at = _depth0_word(words, {"RETURNING"})
        return [] if at is None else split_select_list(words, at + 1)[0]
    return []


def apply(names: Sequence[str | None], columns: Any) -> None:
    """Rename result columns (a repeated sqld.v1.Column) in place; items left or right of a
    `*` map to the first or last columns, those between two stars keep SQLite's names. A
    SQLite-wire client keeps SQLite's names (sqlitewire.py)."""
    if not names or sqlitewire.ACTIVE.get():
        return
    n = len(columns)
    stars = [i for i, name in enumerate(names) if name == STAR]
    if not stars:
        if len(names) != n:
            return
        pairs = list(enumerate(names))
    else:
        head, tail = names[:stars[0]], names[stars[-1] + 1:]
        if len(head) + len(tail) > n:
            return
        pairs = list(enumerate(head)) + [(n - len(tail) + i, name) for i, name in enumerate(tail)]
    for i, name in pairs:
        if name is not None:
            columns[i].name = name


def _after_with(words: list[Token]) -> list[Token]:
    """The main statement after a WITH clause."""
    at = _depth0_word(words, {"SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE"})
    return words[at:] if at else []


def _depth0_word(words: Sequence[Token], wanted: set[str]) -> int | None:
    depth = 0
    for i, (k, t) in enumerate(words):
        depth += (t == "(") - (t == ")")
        if depth == 0 and k is WORD and t.upper() in wanted:
            return i
    return None


def _item_name(item: list[Token]) -> str | None:
    if not item:
        return None
    if item[-1].text == "*" and (len(item) == 1 or item[-2].text == "."):
        return STAR
    if len(item) == 1 and item[0].kind is WORD and item[0].text.lower() in _KEYWORD_ITEMS:
        return UNKNOWN if item[0].text.lower() in _CONSTANTS else item[0].text.lower()  # keywords, not columns
    if _aliased(item) or _column_ref(item):
        return None  # SQLite names these as PostgreSQL does: by the alias or the column
    figured = _figure(item)
    return figured[0] if figured else None


def _aliased(item: list[Token]) -> bool:
    """`expr AS name` or `expr name`."""
    if len(item) < 2 or item[-1].kind not in (WORD, QID):
        return False
    before_kind, before = item[-2]
    if before.upper() == "AS":
        return True
    return item[-1].text.upper() not in _ENDS_EXPRESSION and (
        before_kind in (QID, NUM, STR, PARAM) or before == ")"
        or (before_kind is WORD and before.upper() not in _BEFORE_OPERAND))


def _column_ref(toks: Sequence[Token]) -> bool:
    return len(toks) % 2 == 1 and all(k in (WORD, QID) for k, _ in toks[::2]) \
        and all(t == "." for _, t in toks[1::2])


def _ident(tok: Token) -> str:
    kind, text = tok
    return text[1:-1].replace('""', '"') if kind is QID else text.lower()


def _group_end(toks: Sequence[Token], i: int) -> int | None:
    """Index after the `)` or END closing the `(` or CASE at toks[i]."""
    depth = 0
    for j in range(i, len(toks)):
        k, t = toks[j]
        word = t.upper() if k is WORD else ""
        if t == "(" or word == "CASE":
            depth += 1
        elif t == ")" or word == "END":
            depth -= 1
            if depth == 0:
                return j + 1
    return None


def _atoms(toks: Sequence[Token]) -> list[list[Token]] | None:
    """Tokens grouped at depth 0: a parenthesised group, a CASE ... END, or one token."""
    out, i = [], 0
    while i < len(toks):
        k, t = toks[i]
        if t == "(" or (k is WORD and t.upper() == "CASE"):
            j = _group_end(toks, i)
            if j is None:
                return None
            out.append(list(toks[i:j]))
            i = j
        elif t == ")" or (k is WORD and t.upper() == "END"):
            return None
        else:
            out.append([toks[i]])
            i += 1
    return out


def _is(atom: list[Token], word: str) -> bool:
    return len(atom) == 1 and atom[0].kind is WORD and atom[0].text.upper() == word


def _figure(toks: Sequence[Token]) -> tuple[str, int] | None:
    """(name, strength) as PostgreSQL's FigureColnameInternal: 2 a good name, 1 a fallback
    (cast type, `case`), 0 none (`?column?`); None when the expression is not understood."""
    atoms = _atoms(toks)
    if not atoms:
        return None
    for a in atoms:
        if len(a) == 1 and ((a[0].kind is OP and a[0].text not in (".", "[", "]"))
                            or (a[0].kind is WORD and a[0].text.upper() in _OPERATOR_WORDS)):
            return UNKNOWN, 0
    if len(atoms) >= 3 and _is(atoms[-2], "COLLATE"):
        return _figure([t for a in atoms[:-2] for t in a])
    casts = [i for i, a in enumerate(atoms) if a[0].kind is CAST]
    if casts:
        if casts[0] == 0:
            return None
        result = _figure([t for a in atoms[:casts[0]] for t in a])
        for i, end in zip(casts, casts[1:] + [len(atoms)]):
            typ = _type_name([t for a in atoms[i + 1:end] for t in a])
            if result is None or typ is None:
                return None
            if result[1] <= 1:
                result = (typ, 1)
        return result
    first = atoms[0]
    if len(atoms) == 1 and len(first) == 1:
        kind, text = first[0]
        if kind in (NUM, STR, PARAM) or (kind is WORD and text.lower() in _CONSTANTS):
            return UNKNOWN, 0
        return (_ident(first[0]), 2) if kind in (WORD, QID) else None
    if _column_ref(toks):
        return _ident(toks[-1]), 2
    if len(atoms) == 1 and first[0].text == "(":
        return _parenthesised(first[1:-1])
    if len(atoms) == 1:
        return _case(first)
    if len(atoms) == 2 and first[0].kind is WORD and atoms[1][0].kind is STR:  # typed literal: DATE '...'
        if first[0].text.lower() in ("x", "b"):
            return UNKNOWN, 0
        typ = _type_name(first)
        return (typ, 1) if typ else None
    return _call(atoms)


def _parenthesised(inner: list[Token]) -> tuple[str, int] | None:
    if not inner:
        return None
    if inner[0].kind is WORD and inner[0].text.upper() in ("SELECT", "WITH"):  # a scalar subquery
        items = _items(inner)
        if not items or not items[0]:
            return None
        first = items[0]
        if _aliased(first) or _column_ref(first):
            return _ident(first[-1]), 2
        name = _item_name(first)
        return None if name in (None, STAR) else (name, 2)
    atoms = _atoms(inner) or []
    if any(len(a) == 1 and a[0].text == "," for a in atoms):
        return "row", 2
    return _figure(inner)


def _case(group: list[Token]) -> tuple[str, int] | None:
    inner = group[1:-1]
    atoms = _atoms(inner)
    if atoms is None:
        return None
    flat_at, pos = None, 0
    for a in atoms:
        if _is(a, "ELSE"):
            flat_at = pos
        pos += len(a)
    if flat_at is not None:
        result = _figure(inner[flat_at + 1:])
        if result is None:
            return None
        if result[1] == 2:
            return result
    return "case", 1


def _call(atoms: list[list[Token]]) -> tuple[str, int] | None:
    """name(args) [FILTER (...)] [OVER (...) | OVER w], the name possibly schema-qualified."""
    i = 0
    while i + 2 < len(atoms) and len(atoms[i + 1]) == 1 and atoms[i + 1][0].text == ".":
        i += 2
    name, rest = atoms[i], atoms[i + 1:]
    if len(name) != 1 or name[0].kind not in (WORD, QID) or not rest or rest[0][0].text != "(":
        return None
    tail = rest[1:]
    if len(tail) >= 2 and _is(tail[0], "FILTER") and tail[1][0].text == "(":
        tail = tail[2:]
    if len(tail) == 2 and _is(tail[0], "OVER"):
        tail = []
    if tail:
        return None
    fn, args = _ident(name[0]), rest[0][1:-1]
    if fn == "cast" and name[0].kind is WORD:
        parts = _atoms(args) or []
        at = next((j for j, a in enumerate(parts) if _is(a, "AS")), None)
        if at is None:
            return None
        result = _figure([t for a in parts[:at] for t in a])
        typ = _type_name([t for a in parts[at + 1:] for t in a])
        if result is None or typ is None:
            return None
        return result if result[1] == 2 else (typ, 1)
    if fn == "trim" and name[0].kind is WORD:
        side = args[0].text.upper() if args and args[0].kind is WORD else ""
        return {"LEADING": "ltrim", "TRAILING": "rtrim"}.get(side, "btrim"), 2
    return fn, 2


def _type_name(toks: Sequence[Token]) -> str | None:
    """PostgreSQL's name for a type as written after `::` or AS (the last part of its name)."""
    words: list[Token] = []
    for tok in toks:
        if tok.text == "(" or tok.text == "[":
            break
        if tok.kind not in (WORD, QID) and tok.text != ".":
            return None
        words.append(tok)
    if not words or words[-1].text == ".":
        return None
    if any(t == "." for _, t in words) or words[0].kind is QID:
        return _ident(words[-1])
    spelled = " ".join(t.lower() for _, t in words)
    if spelled in _TYPE_NAMES:
        return _TYPE_NAMES[spelled]
    return spelled if len(words) == 1 else None
