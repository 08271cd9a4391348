"""PostgreSQL v3 frontend messages: framing and parsing, no I/O.

Frame rules: the startup phase sends `int32 length` + body (length includes itself); after
it, every message is `byte type` + `int32 length` + body. Lengths are checked before any
buffer is allocated, so a hostile length prefix costs nothing.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

PROTOCOL_3 = 196608       # 3.0
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
MAX_STARTUP_LENGTH = 10_000

# Every message type a frontend may send after startup (PostgreSQL's protocol docs). A type
# outside the set is refused from its header, before waiting for a body it announces.
FRONTEND_TYPES = frozenset(b"QXPBDECSHdcfFp")

_I32 = struct.Struct("!i")
_HEADER = struct.Struct("!ci")


class ProtocolError(Exception):
    """The client broke the protocol; the connection gets 08P01 and is closed."""


class EncodingError(ProtocolError):
    """Text in a message is not UTF-8. Where PostgreSQL reads SQL text (Query, Parse, Bind...) it
    answers ERROR 22021 and keeps the connection; where nobody catches it, it stays a ProtocolError."""


def utf8_error(exc: UnicodeDecodeError) -> str:
    """PostgreSQL's message for the first invalid character: as many bytes as its first byte announces."""
    data, i = exc.object, exc.start
    first = data[i]
    n = 2 if first & 0xE0 == 0xC0 else 3 if first & 0xF0 == 0xE0 else 4 if first & 0xF8 == 0xF0 else 1
    return 'invalid byte sequence for encoding "UTF8": ' + " ".join(f"0x{b:02x}" for b in data[i:i + n])


@dataclass(frozen=True)
class Startup:
    code: int
    params: dict[str, str]
    cancel_pid: int = 0
    cancel_key: int = 0


def startup_length(header: bytes) -> int:
    """Body length of a startup-phase packet from its 4-byte length prefix."""
    (length,) = _I32.unpack(header)
    if length < 8 or length > MAX_STARTUP_LENGTH:
        raise ProtocolError(f"invalid startup packet length {length}")
    return length - 4


def parse_startup(body: bytes) -> Startup:
    """Parse a startup-phase packet body (after the length)."""
    if len(body) < 4:
        raise ProtocolError("invalid startup packet: no protocol code")
    (code,) = _I32.unpack_from(body)
    if code == CANCEL_REQUEST:
        if len(body) != 12:
            raise ProtocolError("invalid cancel request length")
        pid, key = struct.unpack_from("!ii", body, 4)
        return Startup(code, {}, pid, key)
    if code in (SSL_REQUEST, GSSENC_REQUEST):
        return Startup(code, {})
    if code >> 16 != 3:
        raise ProtocolError(f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}: "
                            "server supports 3.0")
    parts = body[4:].split(b"\x00")
    # body ends with a terminating zero after the last pair: [..., b"", b""]
    if len(parts) < 2 or parts[-1] != b"" or parts[-2] != b"":
        raise ProtocolError("invalid startup packet layout: missing terminator")
    words = parts[:-2]
    if len(words) % 2:
        raise ProtocolError("invalid startup packet layout: odd number of strings")
    try:
        params = {words[i].decode(): words[i + 1].decode() for i in range(0, len(words), 2)}
    except UnicodeDecodeError as exc:
        raise ProtocolError("invalid UTF-8 in startup packet") from exc
    return Startup(code, params)


def message_header(header: bytes, max_length: int) -> tuple[bytes, int]:
    """Type byte and body length of a regular message from its 5-byte header."""
    kind, length = _HEADER.unpack(header)
    if kind[0] not in FRONTEND_TYPES:
        raise ProtocolError(f"invalid frontend message type {kind[0]}")
    if length < 4:
        raise ProtocolError(f"invalid message length {length}")
    if length - 4 > max_length:
        raise ProtocolError(f"message of {length} bytes exceeds the limit of {max_length}")
    return kind, length - 4


def cstring(body: bytes, offset: int = 0) -> tuple[str, int]:
    """A zero-terminated UTF-8 string at `offset` and the offset after it."""
    end = body.find(b"\x00", offset)
    if end < 0:
        raise ProtocolError("unterminated string in message")
    try:
        return body[offset:end].decode(), end + 1
    except UnicodeDecodeError as exc:
        raise EncodingError(utf8_error(exc)) from exc


def _i16(body: bytes, off: int) -> tuple[int, int]:
    if off + 2 > len(body):
        raise ProtocolError("message too short")
    return struct.unpack_from("!h", body, off)[0], off + 2


def _i32(body: bytes, off: int) -> tuple[int, int]:
    if off + 4 > len(body):
        raise ProtocolError("message too short")
    return struct.unpack_from("!i", body, off)[0], off + 4


@dataclass(frozen=True)
class Parse:
    name: str
    sql: str
    param_oids: tuple[int, ...]


@dataclass(frozen=True)
class Bind:
    portal: str
    statement: str
    param_formats: tuple[int, ...]
    values: tuple[bytes | None, ...]
    result_formats: tuple[int, ...]


def parse_parse(body: bytes) -> Parse:
    name, off = cstring(body)
    sql, off = cstring(body, off)
    n, off = _i16(body, off)
    if n < 0:
        raise ProtocolError("negative parameter count")
    oids = []
    for _ in range(n):
        oid, off = _i32(body, off)
        oids.append(oid & 0xFFFFFFFF)
    return Parse(name, sql, tuple(oids))


def parse_bind(body: bytes) -> Bind:
    portal, off = cstring(body)
    stmt, off = cstring(body, off)
    nf, off = _i16(body, off)
    fmts = []
    for _ in range(max(nf, 0)):
        f, off = _i16(body, off)
        fmts.append(f)
    nv, off = _i16(body, off)
    if nf < 0 or nv < 0:
        raise ProtocolError("negative count in Bind")
    values: list[bytes | None] = []
    for _ in range(nv):
        ln, off = _i32(body, off)
        if ln == -1:
            values.append(None)
            continue
        if ln < 0 or off + ln > len(body):
            raise ProtocolError("parameter value length out of range")
        values.append(body[off:off + ln])
        off += ln
    nr, off = _i16(body, off)
    rfmts = []
    for _ in range(max(nr, 0)):
        f, off = _i16(body, off)
        rfmts.append(f)
    if any(f not in (0, 1) for f in fmts + rfmts):
        raise ProtocolError("format codes must be 0 (text) or 1 (binary)")
    if nf not in (0, 1, nv):
        raise ProtocolError(f"bind message has {nf} parameter formats but {nv} parameters")
    return Bind(portal, stmt, tuple(fmts), tuple(values), tuple(rfmts))


def parse_target(body: bytes) -> tuple[str, str]:
    """Describe and Close: ('S' or 'P', name)."""
    if not body or body[0:1] not in (b"S", b"P"):
        raise ProtocolError("Describe/Close must name 'S' or 'P'")
    name, _ = cstring(body, 1)
    return body[0:1].decode(), name


def parse_password(body: bytes) -> str:
    """PasswordMessage ('p') answering a cleartext or MD5 request: one string."""
    text, off = cstring(body)
    if off != len(body):
        raise ProtocolError("invalid password packet: trailing bytes")
    return text


def parse_sasl_initial(body: bytes) -> tuple[str, bytes]:
    """SASLInitialResponse ('p' after AuthenticationSASL): mechanism and initial client response."""
    mechanism, off = cstring(body)
    length, off = _i32(body, off)
    if length == -1:
        return mechanism, b""
    if length < 0 or off + length != len(body):
        raise ProtocolError("invalid SASLInitialResponse: response length does not match the message")
    return mechanism, body[off:]


def parse_execute(body: bytes) -> tuple[str, int]:
    portal, off = cstring(body)
    max_rows, _ = _i32(body, off)
    return portal, max_rows
