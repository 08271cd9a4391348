"""The one SQL lexer, and the text helpers built on it: splitting and leading keywords.

Every service that looks into SQL text uses `tokens` (the edge's rewrite, catalog and column
naming, statement classification, storage's describe), so a string, a quoted identifier or a
comment is one token everywhere and never mistaken for a keyword.

The lexer reads both spellings we meet: PostgreSQL's (`$1`, `::`, E'...') and SQLite's (`?1`,
`:name`, `@name`, `$name`, `[ident]` when `brackets`, backquoted identifiers). It never fails:
an unterminated string, identifier or comment runs to the end of the text (SQLite then
reports its own error), and any other character is an `op`.

Splitting uses SQLite's own notion of a complete statement (`sqlite3_complete`, via apsw),
so quotes, comments and CREATE TRIGGER bodies with inner semicolons are handled exactly
as SQLite would.
"""
from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable
from typing import NamedTuple, TypeVar

import apsw


class T(enum.StrEnum):
    """Token kinds. A StrEnum, so `kind == "word"` also reads right."""
    WS = "ws"          # whitespace and comments
    STR = "str"        # '...' and E'...'
    QID = "qid"        # "..." and `...` (and [...] when asked)
    PARAM = "param"    # $1, ?, ?1, :name, @name, $name
    CAST = "cast"      # ::
    NUM = "num"
    WORD = "word"      # keywords and bare identifiers
    OP = "op"          # everything else, one operator or punctuation mark


# The kinds again as module constants, for the loops that run on every statement: on Python 3.11
# `T.WORD` costs about 60 ns (EnumType has a __getattr__, which slows every lookup on the class),
# an imported name about 5 ns.
WS, STR, QID, PARAM, CAST, NUM, WORD, OP = T.WS, T.STR, T.QID, T.PARAM, T.CAST, T.NUM, T.WORD, T.OP


class Token(NamedTuple):
    kind: T
    text: str


_PATTERN = r"""
    (?P<ws>\s+|--[^\n]*|/\*.*?(?:\*/|$))
  | (?P<str>[eE]?'(?:[^']|'')*'?)
  | (?P<qid>"(?:[^"]|"")*"?|`(?:[^`]|``)*`?{brackets})
  | (?P<cast>::)
  | (?P<param>\$\d+|\?\d*|[:@$][^\W\d][\w$]*)
  | (?P<num>0[xX][0-9A-Fa-f]+|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)
  | (?P<word>[^\W\d][\w$]*)
  | (?P<op><>|!=|==|<=|>=|\|\||->>|->|<<|>>|.)
"""
_TOKEN = re.compile(_PATTERN.format(brackets=""), re.S | re.X)
_TOKEN_BRACKETS = re.compile(_PATTERN.format(brackets=r"|\[[^\]]*\]?"), re.S | re.X)


# A match's lastindex -> its kind (an index is quicker than lastgroup's name; both patterns number
# their groups alike), and Token(...) without the Python-level __new__: the lexer runs on every statement.
_KIND = (T.OP, *sorted(T, key=lambda kind: _TOKEN.groupindex[kind.value]))
_new = tuple.__new__
_WS_GROUP = _TOKEN.groupindex["ws"]


# Per-text caches (`per_text`): what is a pure function of a statement's text is computed once
# per distinct text. Bounded twice: TEXTS_CACHED entries per cache, and texts longer than
# LONGEST_CACHED characters (a bulk INSERT, a script) are not kept at all.
TEXTS_CACHED = 1024
LONGEST_CACHED = 4096

_R = TypeVar("_R")


def per_text(fn: Callable[[str], _R]) -> Callable[[str], _R]:
    """`fn(sql)`, remembered for the last TEXTS_CACHED short texts. Only for a pure function of
    the text whose result nobody changes (frozen dataclasses, tuples, enums, strings)."""
    cached = functools.lru_cache(maxsize=TEXTS_CACHED)(fn)

    @functools.wraps(fn)
    def wrapper(sql: str) -> _R:
        return cached(sql) if len(sql) <= LONGEST_CACHED else fn(sql)
    wrapper.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    wrapper.cache_info = cached.cache_info  # type: ignore[attr-defined]
    return wrapper


def tokens(sql: str, brackets: bool = False) -> list[Token]:
    """Every token of `sql`, whitespace and comments included: joining the texts gives `sql`
    back. `brackets`: read [name] as a quoted identifier (SQLite), not as two operators."""
    rx = _TOKEN_BRACKETS if brackets else _TOKEN
    kind = _KIND
    return [_new(Token, (kind[m.lastindex or 0], m.group())) for m in rx.finditer(sql)]


def significant(sql: str, brackets: bool = False) -> list[Token]:
    """The tokens of `sql` without whitespace and comments."""
    rx = _TOKEN_BRACKETS if brackets else _TOKEN
    kind = _KIND
    return [_new(Token, (kind[m.lastindex or 0], m.group())) for m in rx.finditer(sql) if m.lastindex != _WS_GROUP]


_WS_OR_COMMENT = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?(?:\*/|$))*", re.S)
_WORD = re.compile(r"[A-Za-z_]+")


def strip_leading(sql: str) -> str:
    """`sql` without leading whitespace and comments."""
    m = _WS_OR_COMMENT.match(sql)  # always matches: the pattern may be empty
    return sql[m.end():] if m else sql


def is_empty(sql: str) -> bool:
    """True when `sql` holds nothing but whitespace, comments and semicolons."""
    rest = sql
    while True:
        rest = strip_leading(rest)
        if not rest.startswith(";"):
            return rest == ""
        rest = rest[1:]


def split(sql: str) -> list[str]:
    """Split a query string into single statements (without empty ones).

    A trailing statement without a semicolon is kept as it is, so that SQLite reports
    its own error for incomplete input.
    """
    return list(_split(sql))


@per_text
def _split(sql: str) -> tuple[str, ...]:
    out: list[str] = []
    start = 0
    pos = sql.find(";")
    while pos != -1:
        piece = sql[start:pos + 1]
        if apsw.complete(piece) and not _open_dollar_quote(piece):
            if not is_empty(piece):
                out.append(piece.strip())
            start = pos + 1
        pos = sql.find(";", pos + 1)
    tail = sql[start:]
    if not is_empty(tail):
        out.append(tail.strip())
    return tuple(out)


_DO = re.compile(r"\s*DO\b", re.I)
_DOLLAR_TAG = re.compile(r"\$(\w*)\$")


def _open_dollar_quote(piece: str) -> bool:
    """A DO statement (`DO LANGUAGE sqlite $$...$$`, edge/catalog/ddl.py) whose dollar-quoted body
    is still open: the semicolon is inside it."""
    return bool(_DO.match(piece)) and len(_DOLLAR_TAG.findall(piece)) % 2 == 1


def leading_words(sql: str, n: int = 2) -> list[str]:
    """The first `n` keywords of a statement, upper-cased, skipping comments."""
    words: list[str] = []
    rest = sql
    while len(words) < n:
        rest = strip_leading(rest)
        m = _WORD.match(rest)
        if not m:
            break
        words.append(m.group(0).upper())
        rest = rest[m.end():]
    return words
