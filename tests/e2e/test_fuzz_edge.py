"""A bounded fuzz run against a live edge: random and mutated pg-wire after a valid login.

Each connection logs in, sends a few chunks (raw random bytes, frames of real types with
random bodies, extended-protocol pipelines with random fields, bit-flipped pipelines),
reads whatever comes back and hangs up. The run fails if any answer is an internal error
(XX000), if the edge logs an ERROR (the own_stack log check), or if the edge stops serving.
SQLD_FUZZ_SECONDS sets the duration (default 15), SQLD_FUZZ_SEED replays a run.
"""
from __future__ import annotations

import os
import random
import struct
import threading
import time

import psycopg

from tests.fixtures.rawpg import Raw, error_fields, frame, query

SECONDS = float(os.environ.get("SQLD_FUZZ_SECONDS", "15"))
THREADS = 4
TYPES = b"QPBDECSHdcfFX@\x00p"
SQL = ["SELECT 1", "SELECT $1", "SELECT $1::int, $2", "INSERT INTO fz VALUES ($1, $2)", "SELECT a, b FROM fz WHERE a = $1",
       "UPDATE fz SET b = $2 WHERE a = $1", "BEGIN", "COMMIT", "ROLLBACK", "SET application_name = $1", "SHOW TimeZone",
       "", ";", "SELECT '\u00e9'", "SELECT * FROM nowhere", "SELECT 1; SELECT 2", "SAVEPOINT s", "RELEASE s"]
OIDS = [0, 16, 17, 20, 21, 23, 25, 700, 701, 1043, 1082, 1114, 1184, 1700, 2950, 114, 3802, 9999, -1]


TEXT_VALUES = [b"Infinity", b"-Infinity", b"NaN", b"12", b"-1", b"1e999", b"1.5", b"t", b"maybe", b"\\x00ff",
               b"\\xzz", b"2024-01-01", b"00000000-0000-0000-0000-000000000000", b"{}", b"\xc3\xa9", b"\xff"]


def cstr(rng: random.Random) -> bytes:
    return rng.choice([b"", b"", b"s1", b"s1", b"p", bytes(rng.randbytes(rng.randint(0, 6)))]) + b"\x00"


def value(rng: random.Random) -> bytes:
    pick = rng.random()
    if pick < 0.1:
        return struct.pack("!i", rng.choice([-1, -1, -2, 1 << 30]))
    if pick < 0.5:
        data = rng.choice(TEXT_VALUES)
    else:
        data = rng.randbytes(rng.choice([0, 1, 2, 4, 8, 16, rng.randint(0, 40)]))
    return struct.pack("!i", len(data)) + data


def parse_msg(rng: random.Random, name: bytes, sql: str, oids: list[int]) -> bytes:
    return frame(b"P", name + sql.encode() + b"\x00" + struct.pack("!h", len(oids))
                 + b"".join(struct.pack("!i", o) for o in oids))


def bind_msg(rng: random.Random, portal: bytes, name: bytes, n: int) -> bytes:
    fmts = [rng.choice([0, 0, 1, 1, 1, 1, 1, 1, 1, 2]) for _ in range(rng.choice([0, 1, n, n]))]
    rfmts = [rng.choice([0, 1]) for _ in range(rng.randint(0, 2))]
    return frame(b"B", portal + name + struct.pack("!h", len(fmts)) + b"".join(struct.pack("!h", f) for f in fmts)
                 + struct.pack("!h", n) + b"".join(value(rng) for _ in range(n)) + struct.pack("!h", len(rfmts))
                 + b"".join(struct.pack("!h", f) for f in rfmts))


def coherent(rng: random.Random) -> bytes:
    """Parse, Bind, Describe, Execute, Sync that fit together, with random types and values."""
    sql = rng.choice(SQL)
    n = sql.count("$")
    name = rng.choice([b"\x00", b"s1\x00"])
    oids = [rng.choice(OIDS) for _ in range(rng.choice([0, n, n, n]))]
    out = parse_msg(rng, name, sql, oids)
    for _ in range(rng.randint(1, 3)):
        out += bind_msg(rng, b"\x00", name, n if rng.random() < 0.9 else n + 1)
        out += frame(b"D", rng.choice([b"P\x00", b"S" + name]))
        out += frame(b"E", b"\x00" + struct.pack("!i", rng.choice([0, 0, 1, 2])))
    out += frame(b"S", b"") if rng.random() < 0.8 else frame(b"H", b"")
    if name != b"\x00":
        out += frame(b"C", b"S" + name) + frame(b"S", b"")
    return out


def extended(rng: random.Random) -> bytes:
    if rng.random() < 0.6:
        return coherent(rng)
    out = b""
    for _ in range(rng.randint(1, 6)):
        kind = rng.choice("PBDECSHQ")
        if kind == "P":
            out += parse_msg(rng, cstr(rng), rng.choice(SQL), [rng.choice(OIDS) for _ in range(rng.randint(0, 3))])
        elif kind == "B":
            out += bind_msg(rng, cstr(rng), cstr(rng), rng.choice([0, 1, 1, 2, 2, 3]))
        elif kind in "DC":
            out += frame(kind.encode(), rng.choice([b"S", b"P", b"S", b"P", b"X"]) + cstr(rng))
        elif kind == "E":
            out += frame(b"E", cstr(rng) + struct.pack("!i", rng.choice([0, 1, 2, -1, 1 << 30])))
        elif kind == "Q":
            out += query(rng.choice(SQL + [rng.randbytes(8).decode("latin-1")]))
        else:
            out += frame(kind.encode(), b"")
    return out


def chunk(rng: random.Random, last: bool) -> bytes:
    """Mostly well-framed pipelines, so that deeper code runs; outright garbage only at the end."""
    pick = rng.random() if last else 0.35 + rng.random() * 0.65
    if pick < 0.15:
        return rng.randbytes(rng.randint(1, 64))
    if pick < 0.35:
        body = rng.randbytes(rng.randint(0, 48))
        kind = bytes([rng.choice(TYPES)])
        length = rng.choice([len(body) + 4] * 6 + [rng.randint(-10, 100), 1 << 30])
        return kind + struct.pack("!i", length) + body
    seq = extended(rng)
    if pick < 0.45 and seq:
        flipped = bytearray(seq)
        for _ in range(rng.randint(1, 3)):
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        return bytes(flipped)
    return seq + (frame(b"S", b"") if rng.random() < 0.7 else b"")


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections = self.chunks = self.closed_by_edge = 0
        self.internal: list[str] = []


def fuzz_connection(port: int, rng: random.Random, tally: Tally) -> None:
    raw = Raw(port)
    try:
        raw.login()
        sent = []
        count = rng.randint(1, 8)
        for i in range(count):
            data = chunk(rng, i == count - 1)
            sent.append(data)
            try:
                raw.send(data)
            except (BrokenPipeError, ConnectionResetError):
                break
        raw.sock.settimeout(0.15)
        closed = False
        try:
            while (msg := raw.message()) is not None:
                if msg[0] == b"E" and error_fields(msg[1]).get("C") == "XX000":
                    with tally.lock:
                        tally.internal.append(f"{error_fields(msg[1])} after {sent!r}")
            closed = True
        except (TimeoutError, ConnectionResetError):
            pass
        with tally.lock:
            tally.connections += 1
            tally.chunks += len(sent)
            tally.closed_by_edge += closed
    finally:
        raw.close()


def test_fuzz_live_edge(own_stack):
    stack = own_stack()
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE fz (a INTEGER PRIMARY KEY, b TEXT)")
    seed = int(os.environ.get("SQLD_FUZZ_SEED", str(random.randrange(2**32))))
    tally = Tally()
    deadline = time.monotonic() + SECONDS

    def worker(n: int) -> None:
        rng = random.Random(seed * 31 + n)
        while time.monotonic() < deadline:
            fuzz_connection(stack.ports.pg, rng, tally)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SECONDS + 60)
    print(f"fuzz seed={seed}: {tally.connections} connections, {tally.chunks} chunks, "
          f"{tally.closed_by_edge} closed by the edge, in {SECONDS:.0f}s")
    assert not any(t.is_alive() for t in threads)
    assert not tally.internal, f"seed {seed}: internal errors:\n" + "\n".join(tally.internal[:5])
    assert tally.connections > 20
    with psycopg.connect(stack.dsn, autocommit=True, connect_timeout=10) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
