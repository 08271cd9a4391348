"""SQLite values → PostgreSQL types: column OIDs and text output as PostgreSQL prints it.

Only the edge knows PostgreSQL types. A column's OID comes from its declared type by
SQLite's affinity rules (https://sqlite.org/datatype3.html#determination_of_column_affinity);
when the declared type is missing, or the values do not fit it, the values' storage
classes decide, so a client never receives a value that contradicts its column's type.
"""
from __future__ import annotations

import decimal
import math
import re
import struct
from collections.abc import Iterable

from sqld.common import sqlstate
from sqld.common.sqlstate import SqlError
from sqld.v1 import common_pb2

BOOL, BYTEA, INT8, INT2, INT4, TEXT, FLOAT4, FLOAT8, VARCHAR, NUMERIC = 16, 17, 20, 21, 23, 25, 700, 701, 1043, 1700

CHAR, NAME, OID = 18, 19, 26
TEXT_ARRAY, INT8_ARRAY = 1009, 1016
TYPE_SIZE = {BOOL: 1, INT8: 8, INT2: 2, INT4: 4, FLOAT4: 4, FLOAT8: 8, CHAR: 1, NAME: 64, OID: 4}

# PostgreSQL type names the catalog emulation puts in hints as "pg:<typname>" (edge/catalog).
PG_NAMES = {"bool": BOOL, "bytea": BYTEA, "char": CHAR, "name": NAME, "int8": INT8, "int2": INT2, "int4": INT4,
            "int2vector": 22, "text": TEXT, "oid": OID, "oidvector": 30, "float4": FLOAT4, "float8": FLOAT8,
            "_text": TEXT_ARRAY, "_int2": 1005, "_oid": 1028, "_char": 1002, "_int8": INT8_ARRAY,
            "anyarray": TEXT_ARRAY}
_INT_ARRAY = re.compile(r"^\{(-?\d+(,-?\d+)*)?\}$")


def _pg_oid(decltype: str, values: Iterable[common_pb2.Value] = ()) -> int:
    name = decltype[3:].lower()
    if name == "anyarray":  # an array_agg: integers if every element is one, else text
        texts = [v.text for v in values if v.WhichOneof("value") == "text"]
        return INT8_ARRAY if texts and all(_INT_ARRAY.match(t) for t in texts) else TEXT_ARRAY
    return PG_NAMES.get(name, TEXT)

# Storage classes each OID can carry faithfully.
_FITS = {
    INT8: {"integer"},
    FLOAT8: {"real", "integer"},
    NUMERIC: {"integer", "real"},
    BOOL: {"integer"},
    TEXT: {"text"},
    BYTEA: {"blob"},
}
_BY_CLASS = {"integer": INT8, "real": FLOAT8, "text": TEXT, "blob": BYTEA}


def affinity_oid(decltype: str) -> int | None:
    """The OID for a declared type, or None when SQLite gives it BLOB (no) affinity."""
    t = decltype.upper()
    if not t:
        return None
    if t.startswith("PG:"):
        return _pg_oid(decltype)
    if "INT" in t:
        return INT8
    if "CHAR" in t or "CLOB" in t or "TEXT" in t:
        return TEXT
    if "BLOB" in t:
        return None
    if "REAL" in t or "FLOA" in t or "DOUB" in t:
        return FLOAT8
    if "BOOL" in t:
        return BOOL
    return NUMERIC


def column_oid(decltype: str, values: Iterable[common_pb2.Value]) -> int:
    if decltype[:3].upper() == "PG:":
        return _pg_oid(decltype, values)
    classes = {v.WhichOneof("value") for v in values} - {"null", None}
    oid = affinity_oid(decltype)
    if oid is not None and classes <= _FITS[oid]:
        if oid == BOOL and classes:
            return oid if all(v.integer in (0, 1) for v in values if v.WhichOneof("value") == "integer") else INT8
        return oid
    if not classes:
        return TEXT
    if len(classes) == 1:
        return _BY_CLASS[classes.pop()]
    if classes == {"integer", "real"}:
        return FLOAT8
    return TEXT


def format_float8(x: float) -> str:
    """float8 text as PostgreSQL 15 prints it (shortest round-trip digits, %g-like layout)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    sign, digits, exp = decimal.Decimal(repr(x)).as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    # value = 0.ds * 10^(point); decimal exponent of the first digit is point - 1
    point = len(digits) + exp  # type: ignore[operator]
    e10 = point - 1
    out = "-" if sign else ""
    if -4 <= e10 < 15:
        if point <= 0:
            out += "0." + "0" * (-point) + ds
        elif point >= len(ds):
            out += ds + "0" * (point - len(ds))
        else:
            out += ds[:point] + "." + ds[point:]
    else:
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        out += f"{mant}e{'+' if e10 >= 0 else '-'}{abs(e10):02d}"
    return out


def format_numeric(v: common_pb2.Value) -> str:
    if v.WhichOneof("value") == "integer":
        return str(v.integer)
    x = v.real
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return format(decimal.Decimal(repr(x)), "f")


def to_text(v: common_pb2.Value, oid: int) -> bytes | None:
    """A value in PostgreSQL's text format for `oid`; None for NULL."""
    kind = v.WhichOneof("value")
    if kind is None or kind == "null":
        return None
    if kind == "integer":
        if oid == BOOL:
            return b"t" if v.integer else b"f"
        if oid == FLOAT8:
            return format_float8(float(v.integer)).encode()
        return str(v.integer).encode()
    if kind == "real":
        if oid == NUMERIC:
            return format_numeric(v).encode()
        return format_float8(v.real).encode()
    if kind == "text":
        return v.text.encode()
    return b"\\x" + v.blob.hex().encode()


def to_binary(v: common_pb2.Value, oid: int) -> bytes | None:
    """A value in PostgreSQL's binary format for `oid`; None for NULL."""
    kind = v.WhichOneof("value")
    if kind is None or kind == "null":
        return None
    try:
        if oid == INT8:
            return struct.pack("!q", v.integer if kind == "integer" else _as_int(v))
        if oid == FLOAT8:
            return struct.pack("!d", float(getattr(v, kind)) if kind in ("integer", "real") else float(v.text))
        if oid == BOOL:
            return b"\x01" if (v.integer if kind == "integer" else _as_int(v)) else b"\x00"
        if oid == NUMERIC:
            return _numeric_binary(decimal.Decimal(v.integer) if kind == "integer"
                                   else decimal.Decimal(repr(v.real)) if kind == "real" else decimal.Decimal(v.text))
        if oid == BYTEA:
            return v.blob if kind == "blob" else (to_text(v, TEXT) or b"")
        if oid in _FIXED_INT:
            return struct.pack(_FIXED_INT[oid], v.integer if kind == "integer" else _as_int(v))
        if oid == FLOAT4:
            return struct.pack("!f", float(getattr(v, kind)) if kind in ("integer", "real") else float(v.text))
    except (ValueError, decimal.InvalidOperation, TypeError) as exc:
        raise SqlError(sqlstate.INVALID_TEXT_REPRESENTATION,
                       f"cannot send {kind} value as type oid {oid}: {exc}") from exc
    # text, varchar and anything else: the text form
    if kind == "blob":
        return v.blob
    return to_text(v, oid if oid in (BOOL, NUMERIC, FLOAT8) else TEXT)


_FIXED_INT = {INT2: "!h", INT4: "!i", OID: "!I"}


def _as_int(v: common_pb2.Value) -> int:
    kind = v.WhichOneof("value")
    if kind == "real":
        if not v.real.is_integer():
            raise ValueError(f"{v.real} is not an integer")
        return int(v.real)
    return int(v.text if kind == "text" else v.blob.decode())


def _numeric_binary(d: decimal.Decimal) -> bytes:
    if d.is_nan():
        return struct.pack("!hhHh", 0, 0, 0xC000, 0)
    if d.is_infinite():
        return struct.pack("!hhHh", 0, 0, 0xD000 if d > 0 else 0xF000, 0)
    sign, digits, exp = d.as_tuple()
    dscale = max(0, -exp)  # type: ignore[operator]
    s = "".join(map(str, digits))
    exp = int(exp)
    # pad so the decimal point falls on a 4-digit boundary
    int_len = len(s) + exp
    frac_pad = (-exp) % 4 if exp < 0 else 0
    s = s + "0" * frac_pad if exp < 0 else s + "0" * exp
    int_len = len(s) - (-exp + frac_pad if exp < 0 else 0)
    lead_pad = (-int_len) % 4
    s = "0" * lead_pad + s
    int_len += lead_pad
    groups = [int(s[i:i + 4]) for i in range(0, len(s), 4)]
    weight = int_len // 4 - 1
    while groups and groups[0] == 0:
        groups.pop(0)
        weight -= 1
    while groups and groups[-1] == 0:
        groups.pop()
    if not groups:
        return struct.pack("!hhHh", 0, 0, 0, dscale)
    return struct.pack(f"!hhHh{len(groups)}h", len(groups), weight, 0x4000 if sign else 0, dscale, *groups)


def coerce_text(v: common_pb2.Value, oid: int) -> bytes | None:
    """Text format for a column whose type the client already knows (from a Describe)."""
    kind = v.WhichOneof("value")
    if oid == INT8 and kind not in ("integer", "null", None):
        try:
            return str(_as_int(v)).encode()
        except (ValueError, UnicodeDecodeError) as exc:
            raise SqlError(sqlstate.INVALID_TEXT_REPRESENTATION, f"cannot send {kind} value as bigint: {exc}") from exc
    if oid == BYTEA and kind == "text":
        return b"\\x" + v.text.encode().hex().encode()
    return to_text(v, oid)
