"""COPY ... FROM STDIN and COPY ... TO STDOUT in PostgreSQL's text and CSV formats (no I/O).

Binary COPY (asyncpg's copy_records_to_table) is refused with 0A000 and a hint to use
text or CSV. Rows read by COPY FROM are inserted in one batch: atomically, as PostgreSQL does.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

_COPY = re.compile(
    r"^COPY\s+(?:(?P<table>(?:\"(?:[^\"]|\"\")+\"|[\w.$]+))\s*(?:\((?P<cols>[^)]*)\))?|\((?P<query>.+)\))\s+"
    r"(?P<dir>FROM|TO)\s+(?P<target>STDIN|STDOUT|'[^']*')\s*(?P<opts>.*?)\s*;?\s*$", re.I | re.S)


class CopyError(Exception):
    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@dataclass
class CopySpec:
    table: str | None
    columns: list[str]
    query: str | None
    direction: str        # "FROM" or "TO"
    csv: bool = False
    header: bool = False
    delimiter: str = "\t"
    null: str = "\\N"
    quote: str = '"'


def parse(sql: str) -> CopySpec:
    m = _COPY.match(sql.strip())
    if not m:
        raise CopyError("42601", "syntax error in COPY: expected COPY table [(columns)] FROM STDIN | "
                        "COPY {table | (query)} TO STDOUT [WITH (FORMAT csv|text, HEADER, DELIMITER 'c', NULL 's')]")
    if m.group("target").upper() not in ("STDIN", "STDOUT"):
        raise CopyError("42501", "COPY to or from a server file is not allowed; use STDIN/STDOUT (psql \\copy)")
    cols = [c.strip() for c in (m.group("cols") or "").split(",") if c.strip()]
    spec = CopySpec(m.group("table"), cols, m.group("query"), m.group("dir").upper())
    opts = m.group("opts").strip()
    if opts.upper().startswith("WITH"):
        opts = opts[4:].strip()
    if opts.startswith("(") and opts.endswith(")"):
        opts = opts[1:-1]
    tokens = re.findall(r"'(?:[^']|'')*'|[^\s,]+", opts)
    i = 0
    while i < len(tokens):
        word = tokens[i].upper()
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if word == "FORMAT":
            fmt = nxt.strip("'").lower()
            if fmt == "binary":
                raise CopyError("0A000", "COPY in binary format is not supported; use FORMAT text or csv")
            spec.csv = fmt == "csv"
            i += 2
        elif word in ("CSV", "TEXT"):
            spec.csv = word == "CSV"
            i += 1
        elif word == "BINARY":
            raise CopyError("0A000", "COPY in binary format is not supported; use FORMAT text or csv")
        elif word == "HEADER":
            if nxt.upper() in ("TRUE", "ON", "1", "FALSE", "OFF", "0"):
                spec.header = nxt.upper() in ("TRUE", "ON", "1")
                i += 2
            else:
                spec.header = True
                i += 1
        elif word in ("DELIMITER", "NULL", "QUOTE"):
            value = nxt[1:-1].replace("''", "'") if nxt.startswith("'") else nxt
            setattr(spec, word.lower(), value)
            i += 2
        elif word == "AS":
            i += 1
        else:
            raise CopyError("42601", f"COPY option {tokens[i]!r} is not supported")
    if spec.csv:
        if spec.delimiter == "\t":
            spec.delimiter = ","
        if spec.null == "\\N":
            spec.null = ""
    return spec


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
        # Python's csv reader loses the quoted/unquoted distinction, so with the default NULL ''
        # every empty field is NULL (PostgreSQL keeps a quoted "" as an empty string).
        reader = csv.reader(io.StringIO(data), delimiter=spec.delimiter, quotechar=spec.quote)
        rows: list[list[str | None]] = [[None if f == spec.null else f for f in rec] for rec in reader]
        return rows[1:] if spec.header else rows
    lines = data.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if lines and lines[-1] == "\\.":
        lines.pop()
    rows = [[_text_field(f, spec.null) for f in line.rstrip("\r").split(spec.delimiter)] for line in lines]
    return rows[1:] if spec.header else rows


def _escape_text(value: str, delimiter: str) -> str:
    return (value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
            .replace(delimiter, "\\" + delimiter) if delimiter != "\t" else
            value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))


def format_rows(names: list[str], rows: list[list[str | None]], spec: CopySpec) -> list[bytes]:
    """CopyData payloads (one per row, plus the header) for COPY TO STDOUT."""
    out = []
    if spec.csv:
        buf = io.StringIO()
        writer = csv.writer(buf, delimiter=spec.delimiter, quotechar=spec.quote, lineterminator="\n")
        if spec.header:
            writer.writerow(names)
        for row in rows:
            writer.writerow([spec.null if v is None else v for v in row])
        return [line.encode() + b"\n" for line in buf.getvalue().splitlines()]
    if spec.header:
        out.append(spec.delimiter.join(names).encode() + b"\n")
    for row in rows:
        out.append(spec.delimiter.join(spec.null if v is None else _escape_text(v, spec.delimiter)
                                       for v in row).encode() + b"\n")
    return out
