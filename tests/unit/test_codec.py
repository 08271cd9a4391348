"""pg-wire codec with plain bytes."""
from __future__ import annotations

import struct

import pytest

from sqld.edge.pgwire import codec
from sqld.edge.pgwire import messages as m
from sqld.v1 import common_pb2 as pb


def startup_body(**params: str) -> bytes:
    body = struct.pack("!i", codec.PROTOCOL_3)
    for k, v in params.items():
        body += k.encode() + b"\x00" + v.encode() + b"\x00"
    return body + b"\x00"


def test_startup_parses_params():
    s = codec.parse_startup(startup_body(user="postgres", database="main"))
    assert s.code == codec.PROTOCOL_3 and s.params == {"user": "postgres", "database": "main"}


def test_ssl_and_cancel_requests():
    assert codec.parse_startup(struct.pack("!i", codec.SSL_REQUEST)).code == codec.SSL_REQUEST
    c = codec.parse_startup(struct.pack("!iii", codec.CANCEL_REQUEST, 1234, 5678))
    assert (c.cancel_pid, c.cancel_key) == (1234, 5678)


@pytest.mark.parametrize("body", [
    struct.pack("!i", 2 << 16),                               # protocol 2
    struct.pack("!i", codec.PROTOCOL_3) + b"user\x00x",       # no terminator
    struct.pack("!i", codec.PROTOCOL_3) + b"user\x00\x00",    # odd strings
    struct.pack("!i", codec.PROTOCOL_3) + b"u\xff\x00x\x00\x00",  # invalid UTF-8
    struct.pack("!iii", codec.CANCEL_REQUEST, 1, 2) + b"x",   # bad cancel length
])
def test_bad_startup_is_a_protocol_error(body):
    with pytest.raises(codec.ProtocolError):
        codec.parse_startup(body)


@pytest.mark.parametrize("length", [0, 7, 10_001, 2**30])
def test_startup_length_is_bounded(length):
    with pytest.raises(codec.ProtocolError):
        codec.startup_length(struct.pack("!i", length))


def test_message_header_limits_length_before_reading():
    assert codec.message_header(b"Q" + struct.pack("!i", 9), 100) == (b"Q", 5)
    with pytest.raises(codec.ProtocolError):
        codec.message_header(b"Q" + struct.pack("!i", 2**30), 64 * 1024 * 1024)
    with pytest.raises(codec.ProtocolError):
        codec.message_header(b"Q" + struct.pack("!i", 3), 100)


def test_cstring():
    assert codec.cstring(b"abc\x00def\x00", 4) == ("def", 8)
    with pytest.raises(codec.ProtocolError):
        codec.cstring(b"abc")


def test_backend_messages_bytes():
    assert m.ready_for_query(pb.TRANSACTION_STATUS_IN_TRANSACTION) == b"Z\x00\x00\x00\x05T"
    assert m.ready_for_query(pb.TRANSACTION_STATUS_IDLE)[-1:] == b"I"
    assert m.ready_for_query(pb.TRANSACTION_STATUS_FAILED)[-1:] == b"E"
    assert m.command_complete("SELECT 1") == b"C\x00\x00\x00\x0dSELECT 1\x00"
    assert m.data_row([b"1", None]) == b"D\x00\x00\x00\x0f\x00\x02\x00\x00\x00\x011\xff\xff\xff\xff"
    err = m.error_response("42P01", "no such table: x")
    assert err[0:1] == b"E" and b"C42P01\x00" in err and b"SERROR\x00" in err and err.endswith(b"\x00\x00")
    rd = m.row_description([("a", 20, 8)])
    assert rd[0:1] == b"T" and struct.unpack("!i", rd[1:5])[0] == len(rd) - 1


def test_unknown_message_type_is_refused_from_its_header():
    with pytest.raises(codec.ProtocolError, match="invalid frontend message type 0"):
        codec.message_header(b"\x00" + struct.pack("!i", 7424), 100_000)  # a StartupMessage after login
    with pytest.raises(codec.ProtocolError, match="invalid frontend message type 64"):
        codec.message_header(b"@" + struct.pack("!i", 4), 100)
