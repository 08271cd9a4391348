"""PostgreSQL catalog spellings -> SQLite, on tokens (strings, identifiers and comments are kept).

What it rewrites: `pg_catalog.` and `information_schema.` prefixes, `OPERATOR(pg_catalog.~)` and the
regex operators (`~`, `!~`, `~*`, `!~*` -> REGEXP, served by storage's `regexp` compatibility
function), `COLLATE pg_catalog.default`, `E'...'` strings, `= ANY (ARRAY[...])`, casts to
regclass/regtype/regnamespace, and PostgreSQL's catalog functions (table FUNCTIONS below), which
become subqueries over the catalog relations of catalog/schema.py.
"""
from __future__ import annotations

import re

from sqld.common.sqltext import CAST, NUM, OP, QID, STR, WORD, WS, Token, tokens
from sqld.edge.sqlparts import operand_start, read_type, split_select_list


def _lookup(rel: str) -> str:
    """A scalar lookup through a (_k, _v) relation: its column names cannot capture the caller's."""
    return f"(SELECT _v FROM {rel} WHERE _k = ({{0}}))"


def _pretty() -> str:
    """pg_size_pretty as PostgreSQL 15 computes it: bytes below 10 kB, then kB, MB, GB, TB, PB, each
    used below 20,480 of it (rounded half away from zero), in integer steps of 2^10."""
    def half(x: str) -> str:
        return f"(({x} + CASE WHEN {x} < 0 THEN -1 ELSE 1 END) / 2)"
    whens = ["WHEN abs(s) < 10240 THEN s || ' bytes'"]
    for n, unit in enumerate(("kB", "MB", "GB", "TB")):
        h = f"(s / {512 * 1024 ** n})"
        whens.append(f"WHEN abs({h}) < 20479 THEN {half(h)} || ' {unit}'")
    return (f"(SELECT CASE {' '.join(whens)} ELSE {half(f'(s / {512 * 1024 ** 4})')} || ' PB' END "
            "FROM (SELECT ({0}) AS s))")


def _btree_size(names: str) -> str:
    """Bytes in SQLite's b-trees named by the subquery `names` (dbstat, aggregated per b-tree)."""
    return f"(SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE aggregate = 1 AND name IN ({names}))"


_SQNAME = "(SELECT _v FROM _lk_sqname WHERE _k = ({0}))"

# name -> template over the call's arguments {0}, {1}, ...; "{*}" keeps all arguments (for parameters).
FUNCTIONS = {
    "format_type": _lookup("_lk_format"),
    "pg_get_userbyid": _lookup("_lk_user"),
    "pg_get_indexdef": _lookup("_lk_indexdef"),
    "pg_get_constraintdef": _lookup("_lk_condef"),
    "pg_get_triggerdef": _lookup("_lk_trigdef"),
    "pg_get_expr": "({0})",
    "pg_table_is_visible": "1", "pg_type_is_visible": "1", "pg_function_is_visible": "1",
    "pg_collation_is_visible": "1", "pg_relation_is_publishable": "0", "pg_conversion_is_visible": "1",
    "pg_opfamily_is_visible": "1", "pg_opclass_is_visible": "1", "pg_operator_is_visible": "1",
    "pg_ts_config_is_visible": "1", "pg_ts_dict_is_visible": "1", "pg_ts_parser_is_visible": "1",
    "pg_ts_template_is_visible": "1", "pg_statistics_obj_is_visible": "1",
    "pg_encoding_to_char": "'UTF8'", "getdatabaseencoding": "'UTF8'", "pg_char_to_encoding": "6", "pg_partition_ancestors": "({0})",
    "pg_get_serial_sequence": "NULL", "col_description": "NULL",
    "obj_description": "(SELECT description FROM pg_description WHERE objoid = ({0}) AND objsubid = 0)",
    "pg_get_viewdef": "(SELECT ' ' || trim(substr(sql, instr(upper(sql), ' AS ') + 4)) || ';' FROM sqlite_schema "
                      "WHERE type = 'view' AND 16384 + rowid = ({0}))",
    "pg_size_pretty": _pretty(),
    "pg_relation_size": _btree_size(f"SELECT {_SQNAME}"), "pg_table_size": _btree_size(f"SELECT {_SQNAME}"),
    "pg_indexes_size": _btree_size(f"SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = {_SQNAME}"),
    "pg_total_relation_size": _btree_size(f"SELECT name FROM sqlite_schema WHERE name = {_SQNAME} "
                                          f"OR (type = 'index' AND tbl_name = {_SQNAME})"),
    "pg_database_size": "(SELECT page_count * page_size FROM pragma_page_count, pragma_page_size "
                        "WHERE ({0}) IN (sqld_session_database(), (SELECT oid FROM pg_database "
                        "WHERE datname = sqld_session_database())))",
    "has_database_privilege": "1", "has_table_privilege": "1", "has_schema_privilege": "1",
    "has_column_privilege": "1", "has_function_privilege": "1", "pg_has_role": "1",
    "pg_tablespace_location": "''", "set_config": "({1})", "acldefault": "NULL",
    "current_schemas": "'{{public}}'", "quote_literal": "quote({0})",
    "quote_ident": "(CASE WHEN ({0}) REGEXP '^[a-z_][a-z0-9_$]*$' THEN ({0}) "
                   "ELSE '\"' || replace({0}, '\"', '\"\"') || '\"' END)",
    "array_remove": "({0})",
    "pg_options_to_table": "(SELECT NULL AS option_name, NULL AS option_value WHERE 0)",
    "shobj_description": "NULL", "pg_get_statisticsobjdef_columns": "NULL",
    "array_to_string": "replace(substr({0}, 2, length({0}) - 2), ',', {1})",
    "to_regtype": _lookup("_lk_typeoid"),
    "to_regclass": _lookup("_lk_reloid"),
    "json_build_object": "json_object({*})",
    "bool_and": "min({*})", "bool_or": "max({*})", "string_agg": "group_concat({*})",
    "array_length": "(length({0}) - length(replace({0}, ',', '')) + (length({0}) > 2))",
}
# x::regclass: a literal names a relation (its OID, for comparing); an expression is an OID (shown as its name).
REG_LITERAL = {"regclass": _lookup("_lk_reloid"),
               "regtype": _lookup("_lk_typeoid")}
REG_CASTS = {
    "regclass": _lookup("_lk_relname"),
    "regtype": _lookup("_lk_format"),
    "regnamespace": _lookup("_lk_nsp"),
    "regproc": "({0})",
}


def _skip_ws(toks: list[Token], i: int) -> int:
    while i < len(toks) and toks[i].kind is WS:
        i += 1
    return i


def close(toks: list[Token], i: int) -> int:
    """Index of the ')' or ']' matching the opener at toks[i]."""
    depth = 0
    for j in range(i, len(toks)):
        t = toks[j].text
        if t in ("(", "["):
            depth += 1
        elif t in (")", "]"):
            depth -= 1
            if depth == 0:
                return j
    raise ValueError("unbalanced parentheses")


def split_args(toks: list[Token]) -> list[list[Token]]:
    """The arguments of a call, toks being what is between its parentheses."""
    args: list[list[Token]] = [[]]
    depth = 0
    for tok in toks:
        if tok.text in ("(", "["):
            depth += 1
        elif tok.text in (")", "]"):
            depth -= 1
        if tok.text == "," and depth == 0:
            args.append([])
        else:
            args[-1].append(tok)
    return [a for a in args if any(t.kind is not WS for t in a)]


def text(toks: list[Token]) -> str:
    return "".join(t.text for t in toks).strip()


def _e_string(s: str) -> str:
    body = s[2:-1].replace("''", "'")
    body = body.replace("\\n", "\n").replace("\\t", "\t").replace("\\\\", "\\").replace("\\'", "'")
    return "'" + body.replace("'", "''") + "'"


_NUMERIC_STR = re.compile(r"^'-?\d+'$")


def _next_to_equals(toks: list[Token], out: list[Token], i: int) -> bool:
    """A comparison operator next to toks[i]: one ending in =, < or > before it (`>=`, `<>`),
    one starting with = after it."""
    before = next((t.text for t in reversed(out) if t.kind is not WS), "")
    j = _skip_ws(toks, i + 1)
    return before[-1:] in ("=", ">", "<") or (j < len(toks) and toks[j].text[:1] == "=")


def _prefixes(toks: list[Token]) -> list[Token]:
    """Drop pg_catalog. qualifiers; information_schema.x -> information_schema_x; E'' strings."""
    out: list[Token] = []
    i = 0
    while i < len(toks):
        kind, t = toks[i]
        low = t.strip('"').lower() if kind in (WORD, QID) else ""
        if low in ("pg_catalog", "information_schema") and i + 1 < len(toks) and toks[i + 1].text == ".":
            if low == "information_schema" and i + 2 < len(toks):
                out.append(Token(WORD, "information_schema_" + toks[i + 2].text.strip('"').lower()))
                i += 3
            else:
                i += 2
            continue
        if kind is STR and t[:1] in "eE":
            out.append(Token(STR, _e_string(t)))
        elif kind is STR and _NUMERIC_STR.match(t) and _next_to_equals(toks, out, i):
            out.append(Token(NUM, t[1:-1]))  # c.oid = '16384': PostgreSQL coerces, SQLite would not
        else:
            out.append(toks[i])
        i += 1
    return out


def _operators(toks: list[Token]) -> list[Token]:
    """OPERATOR(~) and the regex operators -> REGEXP; COLLATE default dropped."""
    out: list[Token] = []
    i = 0
    while i < len(toks):
        kind, t = toks[i]
        up = t.upper() if kind is WORD else ""
        if up == "OPERATOR" and _skip_ws(toks, i + 1) < len(toks) and toks[_skip_ws(toks, i + 1)].text == "(":
            j = close(toks, _skip_ws(toks, i + 1))
            op = "".join(x.text for x in toks[_skip_ws(toks, i + 1) + 1:j] if x.kind is not WS)
            toks = toks[:i] + [Token(OP, c) for c in op] + toks[j + 1:]  # one character each, as ~ and !~ are read
            continue
        if up == "COLLATE":
            j = _skip_ws(toks, i + 1)
            if j < len(toks) and toks[j].text.strip('"').lower() in ("default", "c"):
                i = j + 1
                continue
        if t == "~" or (t == "!" and i + 1 < len(toks) and toks[i + 1].text == "~"):
            neg = t == "!"
            i += 2 if neg else 1
            ci = i < len(toks) and toks[i].text == "*"
            if ci:
                i += 1
            out.append(Token(WORD, " NOT REGEXP " if neg else " REGEXP "))
            if ci:
                out.append(Token(STR, "'(?i)' || "))
            continue
        out.append(toks[i])
        i += 1
    return out


def _calls(toks: list[Token]) -> list[Token]:
    """Catalog functions, array_agg, = ANY(...), ARRAY[...] and reg* casts (innermost first)."""
    out: list[Token] = []
    i = 0
    while i < len(toks):
        kind, t = toks[i]
        low = t.lower() if kind is WORD else ""
        j = _skip_ws(toks, i + 1)
        prev = next((x.text for x in reversed(out) if x.kind is not WS), "")
        if low == "cast" and j < len(toks) and toks[j].text == "(":
            end = close(toks, j)
            inner = _calls(toks[j + 1:end])
            words = [k for k, x in enumerate(inner) if x.kind is WORD and x.text.upper() == "AS"]
            target = inner[words[-1] + 1:] if words else []
            tname = text(target).strip('"').lower()
            if tname in REG_CASTS:
                out.append(Token(WORD, _reg_cast(tname, text(inner[:words[-1]]))))
            else:
                out += toks[i:j + 1] + inner + [toks[end]]
            i = end + 1
            continue
        if low == "array" and j < len(toks) and toks[j].text == "(":  # ARRAY(SELECT ...)
            end = close(toks, j)
            out.append(Token(WORD, _array_subquery(_calls(toks[j + 1:end]))))
            i = end + 1
            continue
        if low == "unnest" and j < len(toks) and toks[j].text == "(" and prev.upper() in ("FROM", "JOIN", ","):
            end = close(toks, j)
            alias, k = _alias_after(toks, end + 1)
            column = alias or "unnest"
            m = _skip_ws(toks, k)
            if alias and m < len(toks) and toks[m].text == "(":  # unnest(a) AS t(x)
                k = close(toks, m) + 1
                column = text(toks[m + 1:k - 1])
            arr = re.sub(r"::\s*[\w.]+\s*\[\]$", "", text(_calls(toks[j + 1:end])))  # '{1,2}'::oid[]: its text
            out.append(Token(WORD, f"(SELECT value AS {column} FROM json_each({array_json(arr)})) AS {alias or column}"))
            i = k
            continue
        if low and j < len(toks) and toks[j].text == "(" and prev != ".":
            end = close(toks, j)
            inner = _calls(toks[j + 1:end])
            if low in FUNCTIONS or low == "array_agg" or low == "any":
                args = split_args(inner)
                out.append(Token(WORD, _call(low, args, inner, out)))
                i = end + 1
                continue
            out += toks[i:j + 1] + inner + [toks[end]]
            i = end + 1
            continue
        if low == "array" and j < len(toks) and toks[j].text == "[":
            end = close(toks, j)
            out.append(Token(WORD, "(" + text(_calls(toks[j + 1:end])) + ")"))
            i = end + 1
            continue
        if kind is CAST:
            name, k = read_type(toks, i + 1)
            if name in REG_CASTS:
                start = operand_start(out)
                operand = text(out[start:])
                del out[start:]
                out.append(Token(WORD, _reg_cast(name, operand)))
                i = k
                continue
        out.append(toks[i])
        i += 1
    return out


def array_json(arr: str) -> str:
    """A PostgreSQL array's text ('{1,2}') or vector text ('1 2') as a JSON array, for json_each."""
    return f"('[' || replace(trim({arr}, '{{}}'), ' ', ',') || ']')"


def _alias_after(toks: list[Token], i: int) -> tuple[str, int]:
    """The alias after a FROM item (`AS x` or `x`) and the index after it; ("", i) when none."""
    j = _skip_ws(toks, i)
    if j < len(toks) and toks[j].kind is WORD and toks[j].text.upper() == "AS":
        j = _skip_ws(toks, j + 1)
    if j < len(toks) and toks[j].kind in (WORD, QID) and toks[j].text.upper() not in _NOT_ALIAS:
        return toks[j].text, j + 1
    return "", i


_NOT_ALIAS = {"WHERE", "JOIN", "LEFT", "RIGHT", "INNER", "CROSS", "FULL", "ON", "GROUP", "ORDER", "LIMIT",
              "UNION", "HAVING", "WINDOW", "EXCEPT", "INTERSECT", "USING", "NATURAL"}


def _array_subquery(inner: list[Token]) -> str:
    """ARRAY(SELECT x FROM ...) -> the array's text, '{a,b}' ('{}' when no row)."""
    words = [t for t in inner if t.kind is not WS]
    start = 2 if len(words) > 1 and words[1].text.upper() == "DISTINCT" else 1
    items, rest = split_select_list(words, start)
    item = items[0]
    if len(item) >= 2 and item[-2].text.upper() == "AS":
        item = item[:-2]
    head = " ".join(t.text for t in words[:start])
    sub = f"{head} {' '.join(t.text for t in item)} AS _v {' '.join(t.text for t in rest)}"
    return f"(SELECT '{{' || coalesce(group_concat(_v, ','), '') || '}}' FROM ({sub}))"


def _reg_cast(name: str, operand: str) -> str:
    if _NUMERIC_STR.match(operand):
        return operand[1:-1]
    if operand.startswith("'") and name in REG_LITERAL:
        return REG_LITERAL[name].format(operand)
    return REG_CASTS[name].format(operand)


def _call(name: str, args: list[list[Token]], inner: list[Token], out: list[Token]) -> str:
    if name == "array_agg":
        body = text(inner)
        order = ""
        up = body.upper()
        at = up.rfind(" ORDER BY ")
        if at > 0:
            body, order = body[:at], body[at:]
        return f"('{{' || group_concat({body}, ','{order}) || '}}')"
    if name == "any":  # x = ANY (ARRAY[...]) was made x = ANY ((...)); x = ANY (arr) for a PG array text
        arg = text(inner)
        for k in range(len(out) - 1, -1, -1):
            if out[k].kind is not WS:
                if out[k].text == "=":
                    out[k] = Token(WORD, " IN ")
                break
        if arg.startswith("(") and arg.endswith(")"):
            return arg
        arg = re.sub(r"::\s*\w+\s*\[\]$", "", arg)  # $1::oid[]: the array's text is what we read
        items = f"('[' || substr({arg}, 2, length({arg}) - 2) || ']')"  # not JSON for text items: none match
        return f"(SELECT value FROM json_each(CASE WHEN json_valid({items}) THEN {items} ELSE '[]' END))"
    template = FUNCTIONS[name]
    texts = [text(a) for a in args]
    if name == "format_type" and texts and texts[0].lower().endswith("atttypid"):  # a column: its declared type
        return texts[0][:-len("atttypid")] + "_typname"
    body = template.replace("{*}", ", ".join(texts)).format(*texts, *([""] * 4))
    dropped = [a for k, a in enumerate(texts) if "{*}" not in template and f"{{{k}}}" not in template]
    params = [a for a in dropped if "?" in a or "$" in a]
    if params:  # keep parameters referenced so the statement still takes them
        body = f"(CASE WHEN 0 THEN coalesce({', '.join(params)}, NULL) ELSE {body} END)"
    return body


_FIRST_CHAR = re.compile(r"\b(\w*typname)\[0\]")  # pg_dump: typname[0] = '_'


# psql's \d: a partition's ancestors (none here: no partitions)
_ANCESTORS = re.compile(r"(?:pg_catalog\.)?pg_partition_ancestors\s*\([^()]*\)\s+WITH\s+ORDINALITY\s+AS\s+(\w+)\s*"
                        r"\(\s*(\w+)\s*,\s*(\w+)\s*\)", re.I)


def translate(sql: str) -> str:
    sql = _ANCESTORS.sub(r"(SELECT NULL AS \2, NULL AS \3 WHERE 0) AS \1", sql)
    toks = tokens(_FIRST_CHAR.sub(r"substr(\1, 1, 1)", sql))
    toks = _prefixes(toks)
    toks = _operators(toks)
    toks = _calls(toks)
    return text(toks)
