"""Set-returning functions in a select list, which SQLite lacks: `unnest(arr)` and
`generate_subscripts(arr, 1)` become a join with json_each over the array, in the same SELECT.

    SELECT i.indexrelid, unnest(i.indkey) AS attnum, generate_subscripts(i.indkey, 1) AS ord FROM pg_index i
 -> SELECT i.indexrelid, _srf.value AS attnum, (_srf.key + 1) AS ord FROM pg_index i
        JOIN json_each('[' || replace(trim(i.indkey, '{}'), ' ', ',') || ']') AS _srf

Arrays are PostgreSQL array text ('{1,2}') or vector text ('1 2'). Further unnest() calls in the
same select list are read at the same position, as PostgreSQL does for equal-length arrays.
"""
from __future__ import annotations

from sqld.common.sqltext import WORD, WS, Token, tokens
from sqld.edge.catalog.translate import array_json, close, split_args, text

_END = {"WHERE", "GROUP", "ORDER", "LIMIT", "UNION", "HAVING", "EXCEPT", "INTERSECT", "WINDOW"}


_json = array_json


def rewrite(sql: str) -> str:
    low = sql.lower()
    if "unnest" not in low and "generate_subscripts" not in low:
        return sql
    return text(_level(tokens(sql)))


def _level(toks: list[Token]) -> list[Token]:
    out: list[Token] = []
    i = 0
    while i < len(toks):
        if toks[i].text == "(":
            end = close(toks, i)
            out += [toks[i]] + _level(toks[i + 1:end]) + [toks[end]]
            i = end + 1
        else:
            out.append(toks[i])
            i += 1
    return _select(out)


def _select(toks: list[Token]) -> list[Token]:
    depth = 0
    sel = frm = end = -1
    for k, (kind, t) in enumerate(toks):
        if t == "(":
            depth += 1
        elif t == ")":
            depth -= 1
        elif depth == 0 and kind is WORD:
            u = t.upper()
            if u == "SELECT" and sel < 0:
                sel = k
            elif u == "FROM" and sel >= 0 and frm < 0:
                frm = k
            elif u in _END and frm >= 0 and end < 0:
                end = k
    if sel < 0 or frm < 0:
        return toks
    end = len(toks) if end < 0 else end
    head: list[Token] = []
    first = ""
    k = sel
    while k < frm:
        kind, t = toks[k]
        low = t.lower() if kind is WORD else ""
        if low in ("unnest", "generate_subscripts") and k + 1 < frm and toks[k + 1].text == "(":
            end_call = close(toks, k + 1)
            args = [text(a) for a in split_args(toks[k + 2:end_call])]
            if low == "unnest":
                if not first:
                    first = args[0]
                    head.append(Token(WORD, "_srf.value"))
                else:
                    head.append(Token(WORD, f"json_extract({_json(args[0])}, '$[' || _srf.key || ']')"))
            else:
                first = first or args[0]
                keep = [a for a in args[1:] if "?" in a or "$" in a]
                head.append(Token(WORD, f"(_srf.key + 1 + (CASE WHEN 0 THEN coalesce({', '.join(keep)}, NULL) ELSE 0 END))"
                             if keep else "(_srf.key + 1)"))
            k = end_call + 1
            continue
        head.append(toks[k])
        k += 1
    if not first:
        return toks
    join = [Token(WS, " "), Token(WORD, f"JOIN json_each({_json(first)}) AS _srf"), Token(WS, " ")]
    return toks[:sel] + head + toks[frm:end] + join + toks[end:]
