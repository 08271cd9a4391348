"""COPY ... FROM STDIN and COPY ... TO STDOUT in PostgreSQL's text and CSV formats (no I/O; copy.py drives it).

Binary COPY (asyncpg's copy_records_to_table) is refused with 0A000 and a hint to use
text or CSV. Rows read by COPY FROM are inserted in one batch: atomically, as PostgreSQL does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqld.common import sqlstate
from sqld.common.sqlstate import SqlError

_COPY = re.compile(
    r"^COPY\s+(?:(?P<table>(?:\"(?:[^\"]|\"\")+\"|[\w.$]+))\s*(?:\((?P<cols>[^)]*)\))?|\((?P<query>.+)\))\s+"
    r"(?P<dir>FROM|TO)\s+(?P<target>STDIN|STDOUT|'[^']*')\s*(?P<opts>.*?)\s*;?\s*$", re.I | re.S)


@dataclass
class CopySpec:
    table: str | None
    columns: list[str]
    query: str | None
    direction: str        # "FROM" or "TO"
    csv: bool = False
    header: bool = False
    delimiter: str = "\t"  # ',' in CSV unless given
    null: str = "\\N"       # '' in CSV unless given
    quote: str = '"'
    escape: str = ""      # CSV; "" = the quote character
    force_not_null: list[str] = field(default_factory=list)  # CSV COPY FROM: column names, or ["*"]
    force_null: list[str] = field(default_factory=list)


def parse(sql: str) -> CopySpec:
    m = _COPY.match(sql.strip())
    if not m:
        raise SqlError(sqlstate.SYNTAX_ERROR, "syntax error in COPY: expected COPY table [(columns)] FROM STDIN | "
                        "COPY {table | (query)} TO STDOUT [WITH (FORMAT csv|text, HEADER, DELIMITER 'c', NULL 's')]")
    if m.group("target").upper() not in ("STDIN", "STDOUT"):
        raise SqlError(sqlstate.INSUFFICIENT_PRIVILEGE, "COPY to or from a server file is not allowed; use STDIN/STDOUT (psql \\copy)")
    cols = [c.strip() for c in (m.group("cols") or "").split(",") if c.strip()]
    table = m.group("table")
    if table and table.lower().startswith(("public.", '"public".')):  # PostgreSQL's schema: SQLite's main
        table = table.split(".", 1)[1]
    spec = CopySpec(table, cols, m.group("query"), m.group("dir").upper())
    opts = m.group("opts").strip()
    if opts.upper().startswith("WITH"):
        opts = opts[4:].strip()
    if opts.startswith("(") and opts.endswith(")"):
        opts = opts[1:-1]
    given: set[str] = set()  # options written out, so CSV defaults do not overwrite them
    tokens = re.findall(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|[()]|[^\s,()]+", opts)
    i = 0
    while i < len(tokens):
        word = tokens[i].upper()
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if word == "FORMAT":
            fmt = nxt.strip("'").lower()
            if fmt == "binary":
                raise SqlError(sqlstate.FEATURE_NOT_SUPPORTED, "COPY in binary format is not supported; use FORMAT text or csv")
            spec.csv = fmt == "csv"
            i += 2
        elif word in ("CSV", "TEXT"):
            spec.csv = word == "CSV"
            i += 1
        elif word == "BINARY":
            raise SqlError(sqlstate.FEATURE_NOT_SUPPORTED, "COPY in binary format is not supported; use FORMAT text or csv")
        elif word == "HEADER":
            if nxt.upper() in ("TRUE", "ON", "1", "FALSE", "OFF", "0"):
                spec.header = nxt.upper() in ("TRUE", "ON", "1")
                i += 2
            else:
                spec.header = True
                i += 1
        elif word in ("DELIMITER", "NULL", "QUOTE", "ESCAPE"):
            value = nxt[1:-1].replace("''", "'") if nxt.startswith("'") else nxt
            setattr(spec, word.lower(), value)
            given.add(word)
            i += 2
        elif word in ("FORCE_NOT_NULL", "FORCE_NULL"):
            names, i = _column_list(tokens, i + 1)
            setattr(spec, word.lower(), names)
        elif word == "AS":
            i += 1
        else:
            raise SqlError(sqlstate.SYNTAX_ERROR, f"COPY option {tokens[i]!r} is not supported")
    if spec.force_not_null or spec.force_null:
        if not spec.csv:
            raise SqlError(sqlstate.FEATURE_NOT_SUPPORTED, "COPY FORCE_NOT_NULL and FORCE_NULL are available only in CSV mode")
        if spec.direction != "FROM":
            raise SqlError(sqlstate.FEATURE_NOT_SUPPORTED, "COPY FORCE_NOT_NULL and FORCE_NULL are only available using COPY FROM")
    if spec.csv:
        spec.delimiter = spec.delimiter if "DELIMITER" in given else ","
        spec.null = spec.null if "NULL" in given else ""
    return spec


def column_key(name: str) -> str:
    """A column name as SQLite compares it: unquoted, case-insensitive."""
    return (name[1:-1].replace('""', '"') if name.startswith('"') else name).lower()


def _column_list(tokens: list[str], i: int) -> tuple[list[str], int]:
    """`*` or `(a, b)` at tokens[i], and the index after it."""
    if i < len(tokens) and tokens[i] == "*":
        return ["*"], i + 1
    if i >= len(tokens) or tokens[i] != "(" or ")" not in tokens[i:]:
        raise SqlError(sqlstate.SYNTAX_ERROR, "COPY FORCE_NOT_NULL and FORCE_NULL need a column list in parentheses, or *")
    end = tokens.index(")", i)
    return [column_key(t) for t in tokens[i + 1:end]], end + 1


_UNESCAPE = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def _text_field(raw: str, null: str) -> str | None:
    if raw == null:
        return None
    if "\\" not in raw:
        return raw
    out, i = [], 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            out.append(_UNESCAPE.get(raw[i + 1], raw[i + 1]))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def parse_rows(data: str, spec: CopySpec) -> list[list[str | None]]:
    """Rows from the bytes a client sent with COPY FROM STDIN."""
    if spec.csv:
        rows = _csv_rows(data, spec)
        return rows[1:] if spec.header else rows
    lines = data.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if lines and lines[-1] == "\\.":
        lines.pop()
    rows = [[_text_field(f, spec.null) for f in line.rstrip("\r").split(spec.delimiter)] for line in lines]
    return rows[1:] if spec.header else rows


def _csv_rows(data: str, spec: CopySpec) -> list[list[str | None]]:
    """PostgreSQL's CSV reading: quotes may start anywhere in a field, the escape character
    (the quote by default) escapes a quote or itself inside quotes, and a field is NULL when its
    unquoted text is the NULL string, so a quoted "" is an empty string. `\\.` alone ends the data."""
    delim, quote, escape = spec.delimiter, spec.quote, spec.escape or spec.quote
    rows: list[list[str | None]] = []
    row: list[str | None] = []
    chars: list[str] = []
    saw_quote = in_quote = False
    i, n = 0, len(data)

    def end_field() -> None:
        nonlocal saw_quote
        value = "".join(chars)
        row.append(None if not saw_quote and value == spec.null else value)
        chars.clear()
        saw_quote = False

    while i < n:
        if not row and not chars and not saw_quote and data.startswith("\\.", i) \
                and data[i + 2:i + 3] in ("", "\n", "\r"):
            return rows
        c = data[i]
        i += 1
        if in_quote:
            if c == escape and data[i:i + 1] in (quote, escape):
                chars.append(data[i])
                i += 1
            elif c == quote:
                in_quote = False
            else:
                chars.append(c)
        elif c == delim:
            end_field()
        elif c == quote:
            saw_quote = in_quote = True
        elif c in "\r\n":
            if c == "\r" and data[i:i + 1] == "\n":
                i += 1
            end_field()
            rows.append(row)
            row = []
        else:
            chars.append(c)
    if in_quote:
        raise SqlError(sqlstate.BAD_COPY_FILE_FORMAT, "unterminated CSV quoted field")
    if row or chars or saw_quote:
        end_field()
        rows.append(row)
    return rows


def force(rows: list[list[str | None]], spec: CopySpec, columns: list[str]) -> None:
    """FORCE_NOT_NULL (an unquoted NULL string is the string) and FORCE_NULL (a quoted one is
    NULL) on the rows, in place; `columns` names the rows' columns (column_key), needed
    unless the options say `*`."""
    width = max((len(r) for r in rows), default=0)
    not_null = _picked("FORCE_NOT_NULL", spec.force_not_null, columns, width)
    null = _picked("FORCE_NULL", spec.force_null, columns, width)
    for row in rows:
        for j in not_null | null:
            if j >= len(row):
                continue
            if row[j] is None and j in not_null:
                row[j] = spec.null
            elif row[j] is not None and j in null and row[j] == spec.null:
                row[j] = None


def _picked(option: str, names: list[str], columns: list[str], width: int) -> set[int]:
    if names == ["*"]:
        return set(range(width))
    for name in names:
        if name not in columns:
            raise SqlError(sqlstate.INVALID_COLUMN_REFERENCE, f'{option} column "{name}" not referenced by COPY')
    return {columns.index(name) for name in names}


def _escape_text(value: str, delimiter: str) -> str:
    return (value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
            .replace(delimiter, "\\" + delimiter) if delimiter != "\t" else
            value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))


def _csv_field(value: str | None, spec: CopySpec, single: bool) -> str:
    """One CSV field as PostgreSQL writes it: quoted when it holds a delimiter, quote or newline,
    or equals the NULL string (so an empty string is \"\" and NULL stays unquoted)."""
    if value is None:
        return spec.null
    quote, escape = spec.quote, spec.escape or spec.quote
    special = (spec.delimiter, quote, "\n", "\r")
    if value == spec.null or (single and value == "\\.") or any(c in value for c in special):
        return quote + "".join(escape + c if c in (quote, escape) else c for c in value) + quote
    return value


def format_rows(names: list[str], rows: list[list[str | None]], spec: CopySpec) -> list[bytes]:
    """CopyData payloads (one per row, plus the header) for COPY TO STDOUT."""
    out = []
    if spec.csv:
        lines = [names] if spec.header else []
        return [(spec.delimiter.join(_csv_field(v, spec, len(r) == 1) for v in r) + "\n").encode()
                for r in lines + rows]
    if spec.header:
        out.append(spec.delimiter.join(names).encode() + b"\n")
    for row in rows:
        out.append(spec.delimiter.join(spec.null if v is None else _escape_text(v, spec.delimiter)
                                       for v in row).encode() + b"\n")
    return out
