"""PostgreSQL v3 backend messages as bytes, no I/O."""
from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from sqld.edge import metrics
from sqld.v1 import common_pb2

_I32 = struct.Struct("!i")
_COLUMN = struct.Struct("!ihihih")


def _msg(kind: bytes, body: bytes) -> bytes:
    return kind + _I32.pack(len(body) + 4) + body


def _cstr(s: str) -> bytes:
    return s.encode() + b"\x00"


AUTH_OK = _msg(b"R", _I32.pack(0))
AUTH_CLEARTEXT_PASSWORD = _msg(b"R", _I32.pack(3))
EMPTY_QUERY = _msg(b"I", b"")
PARSE_COMPLETE = _msg(b"1", b"")
BIND_COMPLETE = _msg(b"2", b"")
CLOSE_COMPLETE = _msg(b"3", b"")
NO_DATA = _msg(b"n", b"")
PORTAL_SUSPENDED = _msg(b"s", b"")
# ReadyForQuery by transaction status: the one place the proto's status becomes the wire's byte.
_READY = {
    common_pb2.TRANSACTION_STATUS_IDLE: _msg(b"Z", b"I"),
    common_pb2.TRANSACTION_STATUS_IN_TRANSACTION: _msg(b"Z", b"T"),
    common_pb2.TRANSACTION_STATUS_FAILED: _msg(b"Z", b"E"),
}


def auth_md5_password(salt: bytes) -> bytes:
    """AuthenticationMD5Password: the client answers md5(md5(password + user) + salt)."""
    assert len(salt) == 4
    return _msg(b"R", _I32.pack(5) + salt)


def auth_sasl(mechanisms: Sequence[str]) -> bytes:
    """AuthenticationSASL: the mechanisms the server offers, in order of preference."""
    return _msg(b"R", _I32.pack(10) + b"".join(_cstr(x) for x in mechanisms) + b"\x00")


def auth_sasl_continue(data: bytes) -> bytes:
    return _msg(b"R", _I32.pack(11) + data)


def auth_sasl_final(data: bytes) -> bytes:
    return _msg(b"R", _I32.pack(12) + data)


def parameter_status(name: str, value: str) -> bytes:
    return _msg(b"S", _cstr(name) + _cstr(value))


def backend_key_data(pid: int, key: int) -> bytes:
    return _msg(b"K", struct.pack("!ii", pid, key))


def ready_for_query(status: common_pb2.TransactionStatus) -> bytes:
    return _READY[status]


def row_description(columns: Sequence[tuple[str, int, int]], formats: Sequence[int] | None = None) -> bytes:
    """columns: (name, type oid, type size); formats: 0 text / 1 binary per column."""
    parts = [struct.pack("!h", len(columns))]
    for i, (name, oid, size) in enumerate(columns):
        parts.append(_cstr(name) + _COLUMN.pack(0, 0, oid, size, -1, formats[i] if formats else 0))
    return _msg(b"T", b"".join(parts))


def parameter_description(oids: Sequence[int]) -> bytes:
    return _msg(b"t", struct.pack(f"!h{len(oids)}I", len(oids), *oids))  # OIDs are unsigned


_ROW_HEAD = struct.Struct("!ih")
_NULL = _I32.pack(-1)


def data_row(values: Iterable[bytes | None]) -> bytes:
    pack = _I32.pack
    parts = [_NULL if v is None else pack(len(v)) + v for v in values]
    body = b"".join(parts)
    return b"D" + _ROW_HEAD.pack(len(body) + 6, len(parts)) + body


def command_complete(tag: str) -> bytes:
    return _msg(b"C", _cstr(tag))


def _fields(severity: str, sqlstate: str, message: str, detail: str = "", hint: str = "", extra: bytes = b"") -> bytes:
    body = b"S" + _cstr(severity) + b"V" + _cstr(severity) + b"C" + _cstr(sqlstate) + b"M" + _cstr(message)
    if detail:
        body += b"D" + _cstr(detail)
    if hint:
        body += b"H" + _cstr(hint)
    return body + extra + b"\x00"


def error_response(sqlstate: str, message: str, severity: str = "ERROR", detail: str = "", hint: str = "",
                   extra: bytes = b"") -> bytes:
    """`extra`: more fields, each a type byte and a NUL-terminated value (edge/sqlitewire.py)."""
    metrics.ERRORS.labels(sqlstate[:2] or "XX").inc()  # every ErrorResponse is built here
    return _msg(b"E", _fields(severity, sqlstate, message, detail, hint, extra))


def notice_response(sqlstate: str, message: str, severity: str = "WARNING") -> bytes:
    return _msg(b"N", _fields(severity, sqlstate, message))


def copy_in_response(ncols: int) -> bytes:
    return _msg(b"G", struct.pack(f"!bh{ncols}h", 0, ncols, *([0] * ncols)))


def copy_out_response(ncols: int) -> bytes:
    return _msg(b"H", struct.pack(f"!bh{ncols}h", 0, ncols, *([0] * ncols)))


def copy_data(data: bytes) -> bytes:
    return _msg(b"d", data)


COPY_DONE = _msg(b"c", b"")
