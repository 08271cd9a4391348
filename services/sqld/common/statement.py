"""What a statement is, decided once where it enters.

`classify` reads a single statement's leading keywords and answers its kind (how the
scheduler orders it: read, write or transaction control, the proto's StatementKind) and its
verb (what the command tag names). The edge classifies what pg-wire clients send and
carries the kind in Statement.kind; the scheduler classifies only statements that arrive
without one (QueryService callers). Nobody else looks at the SQL to decide these things.

A statement is a read only when its keywords say so for certain; anything unsure is a write
(it then takes the writer turn, which is always safe). Storage still runs reads under
SQLite's own sqlite3_stmt_readonly check, so a wrong kind fails (25006) instead of writing.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqld.common.sqltext import T, leading_words, per_text, significant, strip_leading
from sqld.v1 import common_pb2

Kind = common_pb2.StatementKind
READ = common_pb2.STATEMENT_KIND_READ
WRITE = common_pb2.STATEMENT_KIND_WRITE
BEGIN = common_pb2.STATEMENT_KIND_BEGIN
BEGIN_READ_ONLY = common_pb2.STATEMENT_KIND_BEGIN_READ_ONLY
COMMIT = common_pb2.STATEMENT_KIND_COMMIT
ROLLBACK = common_pb2.STATEMENT_KIND_ROLLBACK
SAVEPOINT = common_pb2.STATEMENT_KIND_SAVEPOINT
ROLLBACK_TO = common_pb2.STATEMENT_KIND_ROLLBACK_TO

CONTROL = frozenset({BEGIN, BEGIN_READ_ONLY, COMMIT, ROLLBACK, SAVEPOINT, ROLLBACK_TO})

_READ_VERBS = {"SELECT", "VALUES", "EXPLAIN"}
_MAIN_VERBS = {"SELECT", "VALUES", "INSERT", "UPDATE", "DELETE", "REPLACE"}


@dataclass(frozen=True, slots=True)
class Classified:
    kind: Kind
    verb: str         # the command: its first keyword, or for WITH the main statement's ("" if unknown)
    words: tuple[str, ...]  # the first four keywords, upper-cased (CREATE UNIQUE INDEX ...)

    @property
    def read_only(self) -> bool:
        return self.kind == READ

    @property
    def control(self) -> bool:
        return self.kind in CONTROL

    @property
    def begins(self) -> bool:
        return self.kind in (BEGIN, BEGIN_READ_ONLY)


@per_text
def classify(sql: str) -> Classified:
    """The kind and verb of one statement (split first: this looks only at its start).
    Remembered per text (common.sqltext.per_text)."""
    words = tuple(leading_words(sql, 4))
    first = words[0] if words else ""
    verb = _main_verb(sql) if first == "WITH" else first
    return Classified(_kind(first, verb, words, sql), verb, words)


def kind_of(statement: common_pb2.Statement) -> Kind:
    """The statement's kind as it travels, classifying it when the sender did not."""
    return statement.kind or classify(statement.sql).kind


def _kind(first: str, verb: str, words: tuple[str, ...], sql: str) -> Kind:
    if first in ("BEGIN", "START"):
        return BEGIN_READ_ONLY if _read_only_begin(sql) else BEGIN
    if first in ("COMMIT", "END"):
        return COMMIT
    if first in ("ROLLBACK", "ABORT"):
        rest = words[1:3] if len(words) > 1 and words[1] != "TRANSACTION" else words[2:4]
        return ROLLBACK_TO if rest[:1] == ("TO",) else ROLLBACK
    if first in ("SAVEPOINT", "RELEASE"):
        return SAVEPOINT
    if verb in _READ_VERBS:
        return READ
    return WRITE


def _main_verb(sql: str) -> str:
    """WITH name AS (...), ... <verb>: the first statement keyword outside parentheses."""
    depth = 0
    for kind, text in significant(strip_leading(sql)):
        if kind is T.OP:
            depth += (text == "(") - (text == ")")
        elif kind is T.WORD and depth == 0 and text.upper() in _MAIN_VERBS:
            return text.upper()
    return ""


def _read_only_begin(sql: str) -> bool:
    """BEGIN [TRANSACTION] ... READ ONLY (PostgreSQL's transaction modes, in any order)."""
    words = [t.text.upper() for t in significant(sql) if t.kind is T.WORD]
    return any(a == "READ" and b == "ONLY" for a, b in zip(words, words[1:]))
