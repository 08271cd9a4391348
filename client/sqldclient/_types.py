"""Values both ways: Python → the server's parameter types, results → SQLite storage classes.

The client asks for the server's SQLite wire extension, so result values arrive tagged with
their storage class (VALUE_OID). Results the edge answers itself (SHOW, and servers without
the extension) name each column with a PostgreSQL type OID instead, mapped back here:
integer OIDs → int, float OIDs → float, numeric → int or float by its spelling, bool → 0/1,
bytea → bytes, everything else → text through the connection's text_factory. Parameters go as
int8 and float8 in binary (exact, NaN and infinities included), text as `text`, bytes as `bytea`.
Also sqlite3's adapter and converter registries, with its default date/datetime pair.
"""
from __future__ import annotations

import datetime
import struct
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import adapt
from psycopg.pq import Format

from . import _errors

INT_OIDS = (20, 21, 23, 26)
FLOAT_OIDS = (700, 701)
NUMERIC, BOOL, BYTEA = 1700, 16, 17
TEXT_OIDS = (25, 1043, 19, 18, 705, 0)


class PrepareProtocol:
    """sqlite3.PrepareProtocol: the protocol argument of adapters and __conform__."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass


adapters: dict[tuple[type, type], Callable[[Any], Any]] = {}
converters: dict[str, Callable[[bytes], Any]] = {}


def register_adapter(type_: type, adapter: Callable[[Any], Any], /) -> None:
    adapters[(type_, PrepareProtocol)] = adapter


def register_converter(typename: str, converter: Callable[[bytes], Any], /) -> None:
    converters[typename.upper()] = converter


_NO_ALT: Any = object()


def adapt_value(obj: Any, proto: type = PrepareProtocol, alt: Any = _NO_ALT) -> Any:
    """sqlite3.adapt: the registered adapter, else obj.__conform__, else alt (or an error)."""
    adapter = adapters.get((type(obj), proto))
    if adapter is not None:
        return adapter(obj)
    conform = getattr(obj, "__conform__", None)
    if conform is not None:
        value = conform(proto)
        if value is not None:
            return value
    if alt is not _NO_ALT:
        return alt
    raise _errors.ProgrammingError("can't adapt")


_BASE = (int, float, str, bytes, bytearray)


def bind_value(obj: Any, position: int) -> Any:
    """One parameter as sqlite3 binds it: adapted, then checked against SQLite's classes."""
    if obj is not None and (type(obj) not in _BASE or (type(obj), PrepareProtocol) in adapters):
        obj = adapt_value(obj, PrepareProtocol, obj)
    if obj is None or isinstance(obj, (float, str)):
        return obj
    if isinstance(obj, int):
        if not -2**63 <= obj < 2**63:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")
        return int(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj)
    raise _errors.ProgrammingError(
        f"Error binding parameter {position}: type '{type(obj).__name__}' is not supported")


# Dumpers: the parameter types the edge maps to SQLite's storage classes (edge/params.py).
class _Int8(adapt.Dumper):
    format = Format.BINARY
    oid = 20

    def dump(self, obj: Any) -> bytes:
        return struct.pack("!q", obj)


class _Float8(adapt.Dumper):
    format = Format.BINARY
    oid = 701

    def dump(self, obj: Any) -> bytes:
        return struct.pack("!d", obj)


class _Text(adapt.Dumper):
    format = Format.TEXT
    oid = 25

    def dump(self, obj: Any) -> bytes:
        return obj.encode()


class _Bytea(adapt.Dumper):
    format = Format.BINARY
    oid = 17

    def dump(self, obj: Any) -> bytes:
        return bytes(obj)


# Loaders: text-format results back to storage classes.
class _IntLoader(adapt.Loader):
    def load(self, data: Any) -> int:
        return int(bytes(data))


class _FloatLoader(adapt.Loader):
    def load(self, data: Any) -> float:
        return float(bytes(data))


class _NumericLoader(adapt.Loader):
    def load(self, data: Any) -> int | float:
        raw = bytes(data)
        if raw.lstrip(b"-").isdigit():
            return int(raw)
        return float(raw)


class _BoolLoader(adapt.Loader):
    def load(self, data: Any) -> int:
        return 1 if bytes(data) == b"t" else 0


class _ByteaLoader(adapt.Loader):
    def load(self, data: Any) -> bytes:
        raw = bytes(data)
        return bytes.fromhex(raw[2:].decode()) if raw.startswith(b"\\x") else raw


class RawText(bytes):
    """Text as it arrived: the cursor applies the connection's text_factory to it."""


class _RawText(adapt.Loader):
    def load(self, data: Any) -> RawText:
        return RawText(data)


# The server's SQLite wire extension (README "SQLite wire extensions"): every value tagged with
# its storage class, so a column mixing classes keeps each value's.
VALUE_OID = 0x53514C56


class _ValueLoader(adapt.Loader):
    def load(self, data: Any) -> Any:
        raw = bytes(data)
        tag, body = raw[:1], raw[1:]
        if tag == b"i":
            return int(body)
        if tag == b"t":
            return RawText(body)
        if tag == b"r":
            return float(body)
        if tag == b"b":
            return body
        raise _errors.InterfaceError(f"unknown storage class tag {tag!r} from the server")


def configure(conn: psycopg.Connection[Any]) -> None:
    """Install this module's dumpers and loaders on one psycopg connection."""
    a = conn.adapters
    a.register_dumper(int, _Int8)
    a.register_dumper(bool, _Int8)
    a.register_dumper(float, _Float8)
    a.register_dumper(str, _Text)
    for blob in (bytes, bytearray, memoryview):
        a.register_dumper(blob, _Bytea)
    for oid in INT_OIDS:
        a.register_loader(oid, _IntLoader)
    for oid in FLOAT_OIDS:
        a.register_loader(oid, _FloatLoader)
    a.register_loader(NUMERIC, _NumericLoader)
    a.register_loader(BOOL, _BoolLoader)
    a.register_loader(BYTEA, _ByteaLoader)
    for oid in TEXT_OIDS:
        a.register_loader(oid, _RawText)
    a.register_loader(VALUE_OID, _ValueLoader)


def as_bytes(value: Any) -> bytes:
    """What a converter receives: SQLite's text of the value (sqlite3_column_blob)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return str(value).encode()


# The DB-API constructors and sqlite3's default adapters and converters.
Date = datetime.date
Time = datetime.time
Timestamp = datetime.datetime


def DateFromTicks(ticks: float) -> datetime.date:
    return Date(*time.localtime(ticks)[:3])


def TimeFromTicks(ticks: float) -> datetime.time:
    return Time(*time.localtime(ticks)[3:6])


def TimestampFromTicks(ticks: float) -> datetime.datetime:
    return Timestamp(*time.localtime(ticks)[:6])


Binary = memoryview


def _convert_date(val: bytes) -> datetime.date:
    return datetime.date(*map(int, val.split(b"-")))


def _convert_timestamp(val: bytes) -> datetime.datetime:
    datepart, timepart = val.split(b" ")
    year, month, day = map(int, datepart.split(b"-"))
    timepart_full = timepart.split(b".")
    hours, minutes, seconds = map(int, timepart_full[0].split(b":"))
    micro = int(f"{timepart_full[1].decode():0<6.6}") if len(timepart_full) == 2 else 0
    return datetime.datetime(year, month, day, hours, minutes, seconds, micro)


register_adapter(datetime.date, lambda d: d.isoformat())
register_adapter(datetime.datetime, lambda d: d.isoformat(" "))
register_converter("date", _convert_date)
register_converter("timestamp", _convert_timestamp)
