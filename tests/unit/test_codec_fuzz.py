"""Property tests (hypothesis) over the frontend codec and the auth exchange.

Whatever the bytes, a parser either returns or raises codec.ProtocolError (the connection
then gets 08P01): never another exception, which would be an internal error. Runs are
bounded by max_examples; SQLD_FUZZ_EXAMPLES raises or lowers the count.
"""
from __future__ import annotations

import os
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqld.common.sqlstate import SqlError
from sqld.edge import params, types
from sqld.edge.auth import AuthFailed, exchange, userfile
from sqld.edge.pgwire import codec

EXAMPLES = int(os.environ.get("SQLD_FUZZ_EXAMPLES", "1000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

i16 = st.integers(-(2**15), 2**15 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
small_i16 = st.one_of(st.integers(-3, 6), i16)
text = st.one_of(st.binary(max_size=20), st.text(max_size=20).map(str.encode))
cstr = st.one_of(text.map(lambda b: b + b"\x00"), text)


def returns_or_protocol_error(fn, *args):
    try:
        return fn(*args)
    except codec.ProtocolError:
        return None


@FUZZ
@given(st.binary(min_size=4, max_size=4))
def test_startup_length(header):
    n = returns_or_protocol_error(codec.startup_length, header)
    assert n is None or 4 <= n <= codec.MAX_STARTUP_LENGTH - 4


@FUZZ
@given(st.one_of(
    st.binary(max_size=64),
    st.tuples(st.sampled_from([codec.PROTOCOL_3, codec.SSL_REQUEST, codec.CANCEL_REQUEST, 3 << 16 | 5]),
              st.lists(cstr, max_size=6)).map(lambda t: struct.pack("!i", t[0]) + b"".join(t[1]) + b"\x00"),
))
def test_parse_startup(body):
    start = returns_or_protocol_error(codec.parse_startup, body)
    if start is not None and start.code >> 16 == 3:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in start.params.items())


@FUZZ
@given(st.binary(min_size=5, max_size=5), st.integers(0, 2**31))
def test_message_header(header, limit):
    got = returns_or_protocol_error(codec.message_header, header, limit)
    if got is not None:
        assert 0 <= got[1] <= limit


@FUZZ
@given(st.binary(max_size=64), st.integers(0, 70))
def test_cstring(body, offset):
    returns_or_protocol_error(codec.cstring, body, offset)


def _parse_body(name: bytes, sql: bytes, count: int, oids: list[int]) -> bytes:
    return name + sql + struct.pack("!h", count) + b"".join(struct.pack("!i", o) for o in oids)


@FUZZ
@given(st.one_of(st.binary(max_size=80),
                 st.builds(_parse_body, cstr, cstr, small_i16, st.lists(i32, max_size=5))))
def test_parse_parse(body):
    msg = returns_or_protocol_error(codec.parse_parse, body)
    if msg is not None:
        assert all(0 <= o < 2**32 for o in msg.param_oids)


def _bind_body(portal, stmt, nf, fmts, nv, values, nr, rfmts) -> bytes:
    out = portal + stmt + struct.pack("!h", nf) + b"".join(struct.pack("!h", f) for f in fmts)
    out += struct.pack("!h", nv)
    for length, data in values:
        out += struct.pack("!i", length) + data
    return out + struct.pack("!h", nr) + b"".join(struct.pack("!h", f) for f in rfmts)


fmt = st.one_of(st.sampled_from([0, 1]), i16)
bind_values = st.lists(st.tuples(st.one_of(st.integers(-2, 12), i32), st.binary(max_size=12)), max_size=4)


@FUZZ
@given(st.one_of(st.binary(max_size=80),
                 st.builds(_bind_body, cstr, cstr, small_i16, st.lists(fmt, max_size=4), small_i16,
                           bind_values, small_i16, st.lists(fmt, max_size=4))))
def test_parse_bind(body):
    msg = returns_or_protocol_error(codec.parse_bind, body)
    if msg is not None:
        assert set(msg.param_formats + msg.result_formats) <= {0, 1}
        assert len(msg.param_formats) in (0, 1, len(msg.values))


@FUZZ
@given(st.one_of(st.binary(max_size=40), st.tuples(st.sampled_from([b"S", b"P", b"X"]), cstr).map(b"".join)))
def test_parse_target(body):
    got = returns_or_protocol_error(codec.parse_target, body)
    assert got is None or got[0] in ("S", "P")


@FUZZ
@given(st.one_of(st.binary(max_size=40), st.tuples(cstr, i32).map(lambda t: t[0] + struct.pack("!i", t[1]))))
def test_parse_execute(body):
    returns_or_protocol_error(codec.parse_execute, body)


@FUZZ
@given(st.binary(max_size=60))
def test_password_messages(body):
    returns_or_protocol_error(codec.parse_password, body)
    returns_or_protocol_error(codec.parse_sasl_initial, body)


_POLICY = exchange.Policy(exchange.SCRAM, {"alice": userfile.Secret(scram=userfile.scram_verifier("pencil"))})
scram_first = st.one_of(
    st.binary(max_size=60),
    st.lists(st.sampled_from(["n", "y", "p=x", "", "a=u", "n=alice", "n=", "r=abc", "r=", "m=1", "x", "=", ","]),
             max_size=6).map(lambda parts: ",".join(parts).encode()))


@FUZZ
@given(scram_first, st.binary(max_size=120))
def test_scram_exchange(first, final):
    """Random SCRAM messages: the exchange fails with 08P01 or 28P01, never anything else."""
    ex = exchange.start(_POLICY, "alice")
    ex.first()
    try:
        ex.step(b"SCRAM-SHA-256\x00" + struct.pack("!i", len(first)) + first)
        ex.step(final)
    except (codec.ProtocolError, AuthFailed):
        return
    raise AssertionError("a random client-final message was accepted")


@FUZZ
@given(st.binary(max_size=24), st.sampled_from(sorted({0, 16, 17, 20, 21, 23, 25, 700, 701, 1043, 1082, 1114, 1184,
                                                      1700, 2950, 114, 3802, 705, 19, 1042, 1083, 9999})),
       st.sampled_from([0, 1]))
def test_bind_parameter_values(data, oid, fmt_code):
    """A Bind value of any bytes becomes a Value or a SqlError (22P02, 0A000)."""
    try:
        params.decode(data, oid, fmt_code)
    except SqlError:
        pass


@FUZZ
@given(st.sampled_from(["Infinity", "-Infinity", "NaN", "sNaN", "1e999999", "-0", "1e-400", "12345678901234567890",
                        "0x10", " 1 ", "1_000"]),
       st.sampled_from([types.NUMERIC, types.INT8, types.FLOAT8, types.BOOL, types.BYTEA]))
def test_text_parameter_spellings(s, oid):
    try:
        params.decode(s.encode(), oid, 0)
    except SqlError:
        pass
