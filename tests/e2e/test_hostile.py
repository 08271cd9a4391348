"""Hostile and broken clients over real sockets: each gets 08P01 (or silence) and a closed
connection; the edge keeps serving, and a session opened before the attack is unharmed.
Text that is not UTF-8 is an ordinary ERROR (22021) instead, as in PostgreSQL.
"""
from __future__ import annotations

import os
import struct
import time

import psycopg
import pytest

from tests.fixtures.rawpg import Raw, error_fields, frame, query, startup_packet
from tests.fixtures.stack import make_stack

STARTUP_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = make_stack("hostile", tmp_path_factory.mktemp("hostile"),
                   {"SQLD_EDGE_STARTUP_TIMEOUT": str(STARTUP_TIMEOUT)}, replicas=0)
    yield s
    s.stop()
    errors = s.log_errors()
    assert not errors, "unexpected ERROR log lines:\n" + "\n".join(errors)


@pytest.fixture
def bystander(site):
    """A session that lives through the attack, in an open transaction, and must not notice it."""
    with psycopg.connect(site.dsn) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS calm (n INTEGER)")
        conn.commit()
        conn.execute("INSERT INTO calm VALUES (1)")
        yield conn
        assert conn.execute("SELECT count(*) FROM calm").fetchone()[0] >= 1
        conn.rollback()
    with psycopg.connect(site.dsn, connect_timeout=10) as fresh:
        assert fresh.execute("SELECT 1").fetchone() == (1,)


def protocol_error(msgs: list[tuple[bytes, bytes]]) -> dict[str, str]:
    errors = [error_fields(body) for kind, body in msgs if kind == b"E"]
    assert errors, f"expected an ErrorResponse, got {msgs}"
    assert errors[-1]["C"] == "08P01" and errors[-1]["S"] == "FATAL", errors[-1]
    return errors[-1]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


AFTER_LOGIN = {
    "1 GB length prefix": frame(b"Q", b"")[:1] + struct.pack("!i", 1 << 30),
    "negative length": b"Q" + struct.pack("!i", -5),
    "length below 4": b"Q" + struct.pack("!i", 2),
    "unknown message type": frame(b"@", b"hello"),
    "unterminated Query": frame(b"Q", b"SELECT 1"),
    "truncated Bind": frame(b"B", b"\x00\x00\x00\x02\x00"),
    "Bind with a value past the end": frame(b"B", b"\x00\x00\x00\x00\x00\x01\x00\x00\x10\x00ab"),
    "Describe of neither S nor P": frame(b"D", b"Xname\x00"),
    "Execute without its row count": frame(b"E", b"\x00"),
    "a second StartupMessage": startup_packet(user="postgres"),
}


@pytest.mark.parametrize("name", list(AFTER_LOGIN))
def test_bad_message_after_login_is_a_protocol_error(site, bystander, name):
    raw = Raw(site.ports.pg)
    raw.login()
    before = rss_kib(site.procs["edge"].pid)
    raw.send(AFTER_LOGIN[name])
    err = protocol_error(raw.until_closed())
    assert err["M"]
    assert rss_kib(site.procs["edge"].pid) - before < 50_000  # a length prefix allocates nothing
    raw.close()


def packet(body: bytes) -> bytes:
    return struct.pack("!i", len(body) + 4) + body


V3 = struct.pack("!i", 196608)
STARTUP = {
    "1 GB startup length": struct.pack("!i", 1 << 30) + b"\x00\x03\x00\x00",
    "negative startup length": struct.pack("!i", -8),
    "protocol 2": struct.pack("!ii", 8, 2 << 16),
    "garbage protocol code": struct.pack("!i", 12) + os.urandom(8),
    "no terminator": packet(V3 + b"user\x00post"),
    "odd strings": packet(V3 + b"user\x00x\x00y\x00\x00"),
    "invalid UTF-8 in a parameter": packet(V3 + b"user\x00\xff\xfe\x00\x00"),
    "cancel request of the wrong size": struct.pack("!iiii", 16 + 4, 80877102, 1, 2) + b"xxxx",
    "SSLRequest over and over then garbage": struct.pack("!ii", 8, 80877103) * 3 + b"\x00\x00\x00\x09zzzzz",
}


@pytest.mark.parametrize("name", list(STARTUP))
def test_bad_startup_is_a_protocol_error(site, bystander, name):
    raw = Raw(site.ports.pg)
    started = time.monotonic()
    raw.send(STARTUP[name])
    raw.sock.settimeout(10)
    while True:  # 'N' answers to SSLRequests come first, unframed
        if raw.buf[:1] == b"N":
            raw.buf = raw.buf[1:]
            continue
        if raw.buf[:1] == b"E" or not raw._fill():
            break
    err = protocol_error(raw.until_closed())
    assert "timeout" not in err["M"] and time.monotonic() - started < STARTUP_TIMEOUT / 2  # refused at once
    raw.close()


def test_missing_user_is_28000(site, bystander):
    raw = Raw(site.ports.pg)
    raw.send(startup_packet(database="main"))
    errors = [error_fields(b) for k, b in raw.until_closed() if k == b"E"]
    assert errors and errors[0]["C"] == "28000"


def test_truncated_message_then_close(site, bystander):
    raw = Raw(site.ports.pg)
    raw.login()
    raw.send(query("SELECT 1")[:7])
    raw.close()
    half = Raw(site.ports.pg)
    half.send(startup_packet(user="postgres")[:6])
    half.close()


def test_stalled_clients_do_not_block_others_and_are_closed(site, bystander):
    """Half a startup packet, half a SCRAM-free login, half a query: others carry on."""
    mid_startup = Raw(site.ports.pg)
    mid_startup.send(startup_packet(user="postgres")[:9])
    after_ssl = Raw(site.ports.pg)
    after_ssl.send(struct.pack("!ii", 8, 80877103))
    assert after_ssl.sock.recv(1) == b"N"
    mid_query = Raw(site.ports.pg)
    mid_query.login()
    mid_query.send(query("SELECT 1")[:8])
    started = time.monotonic()
    with psycopg.connect(site.dsn, connect_timeout=10) as other:
        assert other.execute("SELECT 1").fetchone() == (1,)
    assert bystander.execute("SELECT 2").fetchone() == (2,)
    assert time.monotonic() - started < STARTUP_TIMEOUT  # nobody waited for the stalled ones
    for raw in (mid_startup, after_ssl):  # the startup timeout closes those stuck before login
        err = [error_fields(b) for k, b in raw.until_closed(STARTUP_TIMEOUT + 8) if k == b"E"]
        assert err and err[0]["M"] == "canceling authentication due to timeout"
    assert time.monotonic() - started >= STARTUP_TIMEOUT - 0.5
    mid_query.send(query("SELECT 3")[8:])  # a slow client after login is merely slow
    msgs = mid_query.until_ready()
    assert [k for k, _ in msgs] == [b"T", b"D", b"C", b"Z"] and msgs[1][1].endswith(b"3")
    for raw in (mid_startup, after_ssl, mid_query):
        raw.close()


def test_many_connections_at_once(site, bystander):
    """200 sockets open together: 100 idle mid-startup, 100 logged in and querying."""
    idle = [Raw(site.ports.pg) for _ in range(100)]
    busy = [Raw(site.ports.pg) for _ in range(100)]
    for raw in busy:
        raw.send(startup_packet(user="postgres", database="main"))
    for raw in busy:
        assert raw.until_ready()[-1] == (b"Z", b"I")
    for i, raw in enumerate(busy):
        raw.send(query(f"SELECT {i}"))
    for i, raw in enumerate(busy):
        msgs = raw.until_ready()
        assert msgs[1][0] == b"D" and msgs[1][1].endswith(str(i).encode())
    assert bystander.execute("SELECT 3").fetchone() == (3,)
    for raw in idle + busy:
        raw.close()


def parse(name: bytes, sql: bytes, oids: list[int]) -> bytes:
    return frame(b"P", name + b"\x00" + sql + b"\x00" + struct.pack("!h", len(oids))
                 + b"".join(struct.pack("!I", o) for o in oids))


def test_fuzz_findings_stay_fixed(site, bystander):
    """Found by test_fuzz_edge: each was an internal error (XX000) that closed the connection."""
    raw = Raw(site.ports.pg)
    raw.login()
    # Describe of a portal that is never executed, then Sync: flush and describe called each other forever
    raw.send(parse(b"", b"SELECT 1", []) + frame(b"B", b"\x00\x00" + b"\x00\x00" * 3) + frame(b"D", b"P\x00")
             + frame(b"S", b""))
    assert [k for k, _ in raw.until_ready()] == [b"1", b"2", b"T", b"Z"]
    # a parameter OID of 2**32 - 1: ParameterDescription packed it as a signed int
    raw.send(parse(b"s", b"SELECT $1", [0xFFFFFFFF]) + frame(b"D", b"Ss\x00") + frame(b"S", b""))
    msgs = raw.until_ready()
    assert msgs[1] == (b"t", struct.pack("!hI", 1, 0xFFFFFFFF))
    # numeric text 'Infinity' as a parameter
    raw.send(parse(b"n", b"SELECT $1", [1700]) + frame(b"B", b"\x00n\x00\x00\x00\x00\x01" + struct.pack("!i", 8)
                                                      + b"Infinity\x00\x00") + frame(b"E", b"\x00\x00\x00\x00\x00")
             + frame(b"S", b""))
    msgs = raw.until_ready()
    assert [k for k, _ in msgs] == [b"1", b"2", b"D", b"C", b"Z"], msgs
    assert msgs[2][1].endswith(b"Infinity")
    raw.close()


def errors_of(msgs: list[tuple[bytes, bytes]]) -> list[dict[str, str]]:
    return [error_fields(body) for kind, body in msgs if kind == b"E"]


BAD_UTF8 = 'invalid byte sequence for encoding "UTF8": '


def test_invalid_utf8_is_an_error_not_a_closed_connection(site, bystander):
    """As PostgreSQL: ERROR 22021 naming the bytes of the first bad character, and the session goes on."""
    raw = Raw(site.ports.pg)
    raw.login()
    raw.send(query(b"SELECT '\xff\xfe'"))
    msgs = raw.until_ready()
    assert [k for k, _ in msgs] == [b"E", b"Z"] and msgs[-1][1] == b"I"
    err = errors_of(msgs)[0]
    assert (err["S"], err["C"], err["M"]) == ("ERROR", "22021", BAD_UTF8 + "0xff")
    raw.send(query(b"SELECT 'caf\xc3\x28'"))  # a two-byte lead byte shows both bytes
    assert errors_of(raw.until_ready())[0]["M"] == BAD_UTF8 + "0xc3 0x28"
    # extended protocol (the quote after the cut character counts as its third byte, as in PostgreSQL):
    # Parse fails, the Bind and Execute after it are skipped up to Sync
    raw.send(parse(b"", b"SELECT '\xe2\x82'", []) + frame(b"B", b"\x00\x00" + b"\x00\x00" * 3)
             + frame(b"E", b"\x00\x00\x00\x00\x00") + frame(b"S", b""))
    msgs = raw.until_ready()
    assert [k for k, _ in msgs] == [b"E", b"Z"]
    assert errors_of(msgs)[0]["C"] == "22021" and errors_of(msgs)[0]["M"] == BAD_UTF8 + "0xe2 0x82 0x27"
    # a text parameter that is not UTF-8
    raw.send(parse(b"", b"SELECT $1", [25]) + frame(b"B", b"\x00\x00\x00\x00\x00\x01" + struct.pack("!i", 2)
                                                     + b"\xc3\xc3\x00\x00") + frame(b"E", b"\x00\x00\x00\x00\x00")
             + frame(b"S", b""))
    msgs = raw.until_ready()
    assert [k for k, _ in msgs] == [b"1", b"E", b"Z"] and errors_of(msgs)[0]["C"] == "22021"
    raw.send(query("SELECT 'still here'"))
    assert raw.until_ready()[1] == (b"D", struct.pack("!hi", 1, 10) + b"still here")
    # inside a transaction block the error fails the transaction, as any error does
    raw.send(query("BEGIN"))
    assert raw.until_ready()[-1] == (b"Z", b"T")
    raw.send(query(b"SELECT '\xff'"))
    assert raw.until_ready()[-1] == (b"Z", b"E")
    raw.send(query("ROLLBACK"))
    assert raw.until_ready()[-1] == (b"Z", b"I")
    # and in the extended protocol: the transaction is failed at Sync, later statements get 25P02
    raw.send(query("BEGIN"))
    assert raw.until_ready()[-1] == (b"Z", b"T")
    raw.send(parse(b"", b"SELECT '\xe2\x82'", []) + frame(b"S", b""))
    msgs = raw.until_ready()
    assert errors_of(msgs)[0]["C"] == "22021" and msgs[-1] == (b"Z", b"E")
    raw.send(query("SELECT 1"))
    msgs = raw.until_ready()
    assert errors_of(msgs)[0]["C"] == "25P02" and msgs[-1] == (b"Z", b"E")
    raw.send(query("ROLLBACK"))
    assert raw.until_ready()[-1] == (b"Z", b"I")
    raw.close()
