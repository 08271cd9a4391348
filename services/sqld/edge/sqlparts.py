"""Pieces of PostgreSQL SQL read from tokens (common.sqltext): a cast's operand and type, and
the items of a select list.

The bottom of the edge's SQL modules: the rewrite (sqlrewrite.py), the catalog (catalog/) and
column naming (colnames.py) all read SQL through these, and this module imports none of them,
so the three never import each other to share a helper.
"""
from __future__ import annotations

from collections.abc import Sequence

from sqld.common.sqltext import QID, WORD, WS, Token

# Two-word type names: `double precision`, `character varying`.
_TYPE_WORDS = {"double": "precision", "character": "varying"}
_ZONE_WORDS = ("with", "without", "time", "zone")

# Words that end a select list at depth 0.
SELECT_LIST_END = {"FROM", "WHERE", "GROUP", "ORDER", "LIMIT", "UNION", "HAVING", "WINDOW", "EXCEPT", "INTERSECT"}


def operand_start(out: Sequence[Token]) -> int:
    """Index in `out` where the operand ending at out[-1] starts (whitespace before it skipped):
    the left side of a `::` cast. A parenthesised group, with the function name before it, or a
    dotted name `a.b.c`, or one token."""
    i = len(out) - 1
    while i >= 0 and out[i].kind is WS:
        i -= 1
    if i < 0:
        return 0
    if out[i].text == ")":
        depth = 0
        while i >= 0:
            if out[i].text == ")":
                depth += 1
            elif out[i].text == "(":
                depth -= 1
                if depth == 0:
                    break
            i -= 1
        if i > 0 and out[i - 1].kind is WORD:  # function call: f(...)::type
            i -= 1
        return max(i, 0)
    while i >= 2 and out[i - 1].text == "." and out[i - 2].kind in (WORD, QID):  # a.b.c
        i -= 2
    return i


def read_type(toks: Sequence[Token], j: int) -> tuple[str, int]:
    """The type name starting at toks[j] (after `::`), lower-cased without a pg_catalog. prefix,
    size or array suffix, and the index after it; ("", j) when no type name starts there."""
    while j < len(toks) and toks[j].kind is WS:
        j += 1
    if j >= len(toks) or toks[j].kind not in (WORD, QID):
        return "", j
    name = toks[j].text.strip('"').lower()
    j += 1
    if name == "pg_catalog" and j + 1 < len(toks) and toks[j].text == ".":
        return read_type(toks, j + 1)
    k = j
    while k < len(toks) and toks[k].kind is WS:
        k += 1
    if name in _TYPE_WORDS and k < len(toks) and toks[k].text.lower() == _TYPE_WORDS[name]:
        name, j = f"{name} {_TYPE_WORDS[name]}", k + 1
    elif name in ("timestamp", "time"):
        m = k
        words = []
        while m < len(toks) and (toks[m].kind is WS or toks[m].text.lower() in _ZONE_WORDS):
            if toks[m].kind is not WS:
                words.append(toks[m].text.lower())
            m += 1
        if words[:1] in (["with"], ["without"]) and words[1:3] == ["time", "zone"]:
            j = m
    # (n[, m]) and [] suffixes
    k = j
    while k < len(toks) and toks[k].kind is WS:
        k += 1
    if k < len(toks) and toks[k].text == "(":
        while k < len(toks) and toks[k].text != ")":
            k += 1
        j = k + 1
    if j + 1 < len(toks) and toks[j].text == "[" and toks[j + 1].text == "]":
        j += 2
    return name, j


def split_select_list(toks: Sequence[Token], start: int) -> tuple[list[list[Token]], list[Token]]:
    """The top-level items of a select list beginning at toks[start] (no whitespace tokens),
    and the tokens after the list."""
    items: list[list[Token]] = [[]]
    depth = 0
    for i in range(start, len(toks)):
        tok = toks[i]
        t = tok.text
        if depth == 0 and tok.kind is WORD and t.upper() in SELECT_LIST_END:
            return items, list(toks[i:])
        if t == "(":
            depth += 1
        elif t == ")":
            depth -= 1
        if t == "," and depth == 0:
            items.append([])
        else:
            items[-1].append(tok)
    return items, []
