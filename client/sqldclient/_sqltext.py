"""SQLite statement text, read without a server: placeholders, statement ends, the leading verb.

One lexer (`tokens`) serves every question, so string literals, quoted identifiers and comments
are never mistaken for placeholders or semicolons. Placeholders are SQLite's: `?`, `?NNN`,
`:name`, `@name`, `$name`; each gets SQLite's index (sqlite3_bind_parameter_index rules:
`?` takes the largest index so far + 1, a repeated name keeps its first index), the order in
which the values are sent: the server's SQLite wire mode runs the text as written.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterator

# kinds
SPACE, COMMENT, STRING, IDENT, WORD, PARAM, SEMI, OTHER, UNTERMINATED = range(9)

_NAME_CHARS = re.compile(r"[A-Za-z0-9_$\x80-\U0010ffff]*")
_WORD = re.compile(r"[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*")
_CLOSERS = {"'": "'", '"': '"', "`": "`", "[": "]"}


def tokens(sql: str) -> Iterator[tuple[int, str]]:
    """(kind, text) pieces that join back to `sql` exactly."""
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c.isspace():
            j = i + 1
            while j < n and sql[j].isspace():
                j += 1
            yield SPACE, sql[i:j]
        elif c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j + 1
            yield COMMENT, sql[i:j]
        elif c == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2  # SQLite accepts an unclosed comment at the end
            yield COMMENT, sql[i:j]
        elif c in _CLOSERS:
            close = _CLOSERS[c]
            j = i + 1
            while True:
                k = sql.find(close, j)
                if k < 0:
                    yield UNTERMINATED, sql[i:]
                    return
                if close != "]" and sql.startswith(close * 2, k):
                    j = k + 2  # a doubled quote inside the literal
                    continue
                j = k + 1
                break
            yield (STRING if c == "'" else IDENT), sql[i:j]
        elif c == "?":
            j = i + 1
            while j < n and sql[j].isdigit():
                j += 1
            yield PARAM, sql[i:j]
        elif c in ":@$" and i + 1 < n and _NAME_CHARS.match(sql, i + 1).end() > i + 1:  # type: ignore[union-attr]
            j = _NAME_CHARS.match(sql, i + 1).end()  # type: ignore[union-attr]
            yield PARAM, sql[i:j]
        elif c == ";":
            j = i + 1
            yield SEMI, c
        elif m := _WORD.match(sql, i):
            yield WORD, m.group()
            j = m.end()
            i = j
            continue
        elif c.isdigit() or (c == "." and i + 1 < n and sql[i + 1].isdigit()):
            m2 = re.compile(r"(0x[0-9A-Fa-f]+|[0-9_]*\.?[0-9_]*([eE][-+]?[0-9]+)?)").match(sql, i)
            j = max(m2.end(), i + 1) if m2 else i + 1
            yield OTHER, sql[i:j]
        else:
            j = i + 1
            yield OTHER, c
        i = j


def _significant(sql: str) -> Iterator[tuple[int, str]]:
    return ((k, t) for k, t in tokens(sql) if k not in (SPACE, COMMENT))


def leading_word(sql: str) -> str:
    """The first keyword, upper case ('' when there is none): sqlite3's test for DML."""
    for kind, text in _significant(sql):
        return text.upper() if kind == WORD else ""
    return ""


def is_dml(sql: str) -> bool:
    return leading_word(sql) in ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _statement_ends(sql: str) -> Iterator[int]:
    """Offsets just after each `;` that ends a statement (not one inside a trigger body)."""
    pos = 0
    first = ""
    trigger = False
    depth = 0  # BEGIN/CASE … END nesting inside CREATE TRIGGER
    for kind, text in tokens(sql):
        pos += len(text)
        if kind == WORD:
            word = text.upper()
            if not first:
                first = word
            elif first == "CREATE" and word == "TRIGGER":
                trigger = True
            elif trigger and word in ("BEGIN", "CASE"):
                depth += 1
            elif trigger and word == "END" and depth:
                depth -= 1
        elif kind == SEMI and depth == 0:
            yield pos
            first, trigger = "", False
        elif kind in (STRING, IDENT, PARAM, OTHER) and not first:
            first = "?"


def has_more_than_one_statement(sql: str) -> bool:
    for end in _statement_ends(sql):
        return any(True for _ in _significant(sql[end:]) if _[0] != SEMI)
    return False


def split_statements(sql: str) -> list[str]:
    """The statements of a script, in order, each with its `;`; empty ones (only comments) dropped."""
    out, start = [], 0
    for end in [*_statement_ends(sql), len(sql)]:
        piece = sql[start:end]
        start = end
        if any(kind != SEMI for kind, _ in _significant(piece)):
            out.append(piece)
    return out


def complete_statement(sql: str) -> bool:
    """sqlite3.complete_statement: the text ends with a `;` that ends a statement."""
    for kind, text in tokens(sql):
        if kind == UNTERMINATED or (kind == COMMENT and text.startswith("/*") and not text.endswith("*/")):
            return False
    ends = list(_statement_ends(sql))
    return bool(ends) and not any(True for _ in _significant(sql[ends[-1]:]))


def placeholders(sql: str) -> tuple[str | None, ...]:
    """Per parameter index 1..count as SQLite numbers them: the name with its prefix (`:a`,
    `?2`), None for `?`."""
    names: dict[int, str | None] = {}
    by_name: dict[str, int] = {}
    top = 0
    for kind, text in tokens(sql):
        if kind != PARAM:
            continue
        if text == "?":
            index = top + 1
            names[index] = None
        elif text[0] == "?":
            index = int(text[1:])
            if names.get(index) is None:
                names[index] = text  # SQLite names an index by its first `?NNN`
        elif text in by_name:
            index = by_name[text]
        else:
            index = top + 1
            by_name[text] = index
            names[index] = text
        top = max(top, index)
    return tuple(names.get(i) for i in range(1, top + 1))


@dataclasses.dataclass(frozen=True)
class Analyzed:
    """What the cursor asks of a statement's text before running it."""
    several: bool                 # more than one statement (execute refuses it)
    placeholders: tuple[str | None, ...]
    verb: str                     # leading_word

    @property
    def dml(self) -> bool:
        return self.verb in ("INSERT", "UPDATE", "DELETE", "REPLACE")


LONGEST_CACHED = 4096  # characters: with 128 texts, at most ~1 MB kept


def analyze(sql: str) -> Analyzed:
    """The cursor's questions about `sql`, answered once per text (as sqlite3 caches prepared
    statements, 128 of them) for texts up to LONGEST_CACHED characters."""
    return _analyze(sql) if len(sql) <= LONGEST_CACHED else _analyze.__wrapped__(sql)


@functools.lru_cache(maxsize=128)
def _analyze(sql: str) -> Analyzed:
    return Analyzed(has_more_than_one_statement(sql), placeholders(sql), leading_word(sql))
