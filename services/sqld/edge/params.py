"""Bind parameters: PostgreSQL text or binary values → SQLite values (proto Value).

The OID comes from the client's Parse, or from the ParameterDescription we sent it.
Values SQLite has no class for keep PostgreSQL's text spelling: dates and timestamps as
ISO-8601 text, uuids as text, json as text, bool as 0/1, numeric as integer or real.
"""
from __future__ import annotations

import datetime
import decimal
import struct
import uuid

from sqld.common import sqlstate
from sqld.common.sqlstate import SqlError
from sqld.edge import types as t
from sqld.edge.pgwire import codec
from sqld.v1 import common_pb2

INT2, INT4 = t.INT2, t.INT4
FLOAT4, DATE, TIME, TIMESTAMP, TIMESTAMPTZ, UUID, JSON, JSONB, UNKNOWN = 700, 1082, 1083, 1114, 1184, 2950, 114, 3802, 705
_EPOCH = datetime.datetime(2000, 1, 1)
_EPOCH_DATE = datetime.date(2000, 1, 1)


def _numeric(d: decimal.Decimal) -> common_pb2.Value:
    if d.is_nan():
        return common_pb2.Value(real=float("nan"))
    if d.is_infinite():  # 'Infinity' has no integer exponent to test below
        return common_pb2.Value(real=float(d))
    if d == d.to_integral_value() and d.as_tuple().exponent >= 0 and abs(d) < 2**63:  # type: ignore[operator]
        return common_pb2.Value(integer=int(d))
    return common_pb2.Value(real=float(d))


def _decode_numeric_binary(data: bytes) -> decimal.Decimal:
    ndigits, weight, sign, dscale = struct.unpack_from("!hhHh", data)
    if sign == 0xC000:
        return decimal.Decimal("NaN")
    if sign in (0xD000, 0xF000):
        return decimal.Decimal("Infinity" if sign == 0xD000 else "-Infinity")
    digits = struct.unpack_from(f"!{ndigits}h", data, 8)
    value = decimal.Decimal(0)
    for i, dg in enumerate(digits):
        value += decimal.Decimal(dg).scaleb(4 * (weight - i))
    return -value if sign == 0x4000 else value


def _ts_text(dt: datetime.datetime, tz: bool) -> str:
    s = dt.isoformat(sep=" ")
    return s + "+00" if tz else s


def decode(data: bytes | None, oid: int, fmt: int) -> common_pb2.Value:
    if data is None:
        return common_pb2.Value(null=True)
    try:
        return _decode_binary(data, oid) if fmt == 1 else _decode_text(data.decode(), oid)
    except SqlError:
        raise
    except UnicodeDecodeError as exc:
        raise SqlError(sqlstate.CHARACTER_NOT_IN_REPERTOIRE, codec.utf8_error(exc)) from exc
    except (ValueError, struct.error, decimal.InvalidOperation, OverflowError) as exc:
        raise SqlError(sqlstate.INVALID_TEXT_REPRESENTATION,
                       f"invalid input for parameter of type oid {oid}: {exc}") from exc


def _decode_text(s: str, oid: int) -> common_pb2.Value:
    if oid in (t.INT8, INT4, INT2):
        return common_pb2.Value(integer=int(s))
    if oid in (t.FLOAT8, FLOAT4):
        return common_pb2.Value(real=float(s))
    if oid == t.NUMERIC:
        return _numeric(decimal.Decimal(s))
    if oid == t.BOOL:
        low = s.strip().lower()
        if low in ("t", "true", "y", "yes", "on", "1"):
            return common_pb2.Value(integer=1)
        if low in ("f", "false", "n", "no", "off", "0"):
            return common_pb2.Value(integer=0)
        raise SqlError(sqlstate.INVALID_TEXT_REPRESENTATION, f'invalid input syntax for type boolean: "{s}"')
    if oid == t.BYTEA:
        if s.startswith("\\x"):
            return common_pb2.Value(blob=bytes.fromhex(s[2:]))
        return common_pb2.Value(blob=s.encode())
    return common_pb2.Value(text=s)


def _decode_binary(b: bytes, oid: int) -> common_pb2.Value:
    if oid == t.INT8:
        return common_pb2.Value(integer=struct.unpack("!q", b)[0])
    if oid == INT4:
        return common_pb2.Value(integer=struct.unpack("!i", b)[0])
    if oid == INT2:
        return common_pb2.Value(integer=struct.unpack("!h", b)[0])
    if oid == t.FLOAT8:
        return common_pb2.Value(real=struct.unpack("!d", b)[0])
    if oid == FLOAT4:
        return common_pb2.Value(real=struct.unpack("!f", b)[0])
    if oid == t.BOOL:
        return common_pb2.Value(integer=1 if b != b"\x00" else 0)
    if oid == t.BYTEA:
        return common_pb2.Value(blob=b)
    if oid == t.NUMERIC:
        return _numeric(_decode_numeric_binary(b))
    if oid == UUID:
        return common_pb2.Value(text=str(uuid.UUID(bytes=b)))
    if oid == DATE:
        return common_pb2.Value(text=(_EPOCH_DATE + datetime.timedelta(days=struct.unpack("!i", b)[0])).isoformat())
    if oid in (TIMESTAMP, TIMESTAMPTZ):
        us = struct.unpack("!q", b)[0]
        return common_pb2.Value(text=_ts_text(_EPOCH + datetime.timedelta(microseconds=us), oid == TIMESTAMPTZ))
    if oid == JSONB:
        if not b or b[0] != 1:
            raise SqlError(sqlstate.INVALID_TEXT_REPRESENTATION, "unsupported jsonb version")
        return common_pb2.Value(text=b[1:].decode())
    if oid in (t.TEXT, t.VARCHAR, JSON, UNKNOWN, 0, 19, 1042):
        return common_pb2.Value(text=b.decode())
    raise SqlError(sqlstate.FEATURE_NOT_SUPPORTED,
                   f"binary parameters of type oid {oid} are not supported; send them as text")
