"""Authentication without sockets: users file, SCRAM-SHA-256 (RFC 7677 vector), md5, cleartext.

The client side of each method is written here from the RFCs / PostgreSQL docs, independently
of edge.auth, so a mistake must be made twice to pass.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import struct

import pytest

from sqld.edge.auth import AuthFailed, exchange, scram, userfile
from sqld.edge.pgwire import codec


def auth_code(msg: bytes) -> tuple[int, bytes]:
    assert msg[:1] == b"R"
    (length,) = struct.unpack("!i", msg[1:5])
    assert length == len(msg) - 1
    return struct.unpack("!i", msg[5:9])[0], msg[9:]


def sasl_initial(mechanism: str, data: bytes) -> bytes:
    return mechanism.encode() + b"\x00" + struct.pack("!i", len(data)) + data


class ScramClient:
    """RFC 5802 client, as libpq does it."""

    def __init__(self, password: str, nonce: str = "cnonce-123", user_field: str = "") -> None:
        self.password, self.nonce = password, nonce
        self.first_bare = f"n={user_field},r={nonce}"

    def first(self) -> bytes:
        return ("n,," + self.first_bare).encode()

    def final(self, server_first: bytes) -> bytes:
        attrs = dict(a.split("=", 1) for a in server_first.decode().split(","))
        assert attrs["r"].startswith(self.nonce)
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        without_proof = f"c=biws,r={attrs['r']}"
        auth_msg = f"{self.first_bare},{server_first.decode()},{without_proof}".encode()
        sig = hmac.new(hashlib.sha256(client_key).digest(), auth_msg, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.expected_v = base64.b64encode(hmac.new(server_key, auth_msg, hashlib.sha256).digest())
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()


def test_rfc7677_example():
    verifier = userfile.scram_verifier("pencil", base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096)
    server = scram.ScramServer("user", verifier, server_nonce="%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    first = server.server_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    assert first == (b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                     b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    final = server.server_final(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                                b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    assert final == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    assert server.state == scram.FINISHED


def users(text: str, method: str = "") -> exchange.Policy:
    return exchange.Policy(method or exchange.SCRAM, userfile.parse(text))


ALICE = "alice:" + userfile.scram_verifier("pencil").text()
BOB = "bob:" + userfile.md5_hash("pw", "bob")
CAROL = "carol:plain:sekret"


def scram_login(policy: exchange.Policy, user: str, password: str, user_field: str = "") -> bytes:
    ex = exchange.start(policy, user)
    code, mechs = auth_code(ex.first())
    assert code == 10 and mechs == b"SCRAM-SHA-256\x00\x00"
    client = ScramClient(password, user_field=user_field)
    code, server_first = auth_code(ex.step(sasl_initial("SCRAM-SHA-256", client.first())))
    assert code == 11 and not ex.done
    code, server_final = auth_code(ex.step(client.final(server_first)))
    assert code == 12 and ex.done
    assert server_final == b"v=" + client.expected_v
    return server_final


@pytest.mark.parametrize("user_field", ["", "*", "alice", "someone-else"])
def test_scram_uses_the_startup_user_whatever_the_message_says(user_field):
    scram_login(users(ALICE), "alice", "pencil", user_field)


def test_scram_with_a_plain_secret():
    scram_login(users(CAROL), "carol", "sekret")


@pytest.mark.parametrize("text,user,password,reason", [
    (ALICE, "alice", "wrong", "wrong password"),
    (ALICE, "mallory", "pencil", "no such user"),
    (BOB, "bob", "pw", "MD5 password"),
])
def test_scram_failures_look_alike_on_the_wire(text, user, password, reason):
    with pytest.raises(AuthFailed) as info:
        scram_login(users(text), user, password)
    assert str(info.value) == f'password authentication failed for user "{user}"'
    assert reason in info.value.reason


def test_unknown_user_gets_a_stable_salt():
    policy = users(ALICE)
    salts = []
    for _ in range(2):
        ex = exchange.start(policy, "mallory")
        ex.first()
        _, server_first = auth_code(ex.step(sasl_initial("SCRAM-SHA-256", b"n,,n=,r=abc")))
        salts.append(server_first.decode().split(",")[1])
    assert salts[0] == salts[1]


@pytest.mark.parametrize("client_first", [
    b"p=tls-server-end-point,,n=,r=abc",   # demands channel binding
    b"x,,n=,r=abc", b"n,a=admin,n=,r=abc", b"n,,r=abc", b"n,,n=,r=", b"n,,n=,r=a,b", b"\xff\xfe", b"",
])
def test_malformed_client_first_is_a_protocol_error(client_first):
    ex = exchange.start(users(ALICE), "alice")
    ex.first()
    with pytest.raises(codec.ProtocolError):
        ex.step(sasl_initial("SCRAM-SHA-256", client_first))


def test_wrong_mechanism_nonce_or_binding_is_a_protocol_error():
    ex = exchange.start(users(ALICE), "alice")
    ex.first()
    with pytest.raises(codec.ProtocolError):
        ex.step(sasl_initial("SCRAM-SHA-256-PLUS", b"p=tls-server-end-point,,n=,r=abc"))
    for final in (b"c=biws,r=other,p=AAAA", b"c=eSws,r={n},p=" + base64.b64encode(b"x" * 32), b"c=biws,r={n}"):
        ex = exchange.start(users(ALICE), "alice")
        ex.first()
        _, sf = auth_code(ex.step(sasl_initial("SCRAM-SHA-256", b"n,,n=,r=abc")))
        nonce = sf.decode().split(",")[0][2:]
        with pytest.raises(codec.ProtocolError):
            ex.step(final.replace(b"{n}", nonce.encode()))


@pytest.mark.parametrize("text,user,password", [(ALICE, "alice", "pencil"), (BOB, "bob", "pw"), (CAROL, "carol", "sekret")])
def test_cleartext_against_every_kind_of_secret(text, user, password):
    policy = users(text, exchange.PASSWORD)
    ex = exchange.start(policy, user)
    assert auth_code(ex.first()) == (3, b"")
    assert ex.step(password.encode() + b"\x00") == b"" and ex.done
    ex = exchange.start(policy, user)
    ex.first()
    with pytest.raises(AuthFailed):
        ex.step(b"nope\x00")


def md5_answer(password: str, user: str, salt: bytes) -> bytes:
    inner = hashlib.md5((password + user).encode()).hexdigest()
    return b"md5" + hashlib.md5(inner.encode() + salt).hexdigest().encode() + b"\x00"


@pytest.mark.parametrize("text,user,password", [(BOB, "bob", "pw"), (CAROL, "carol", "sekret")])
def test_md5(text, user, password):
    policy = users(text, exchange.MD5)
    ex = exchange.start(policy, user)
    code, salt = auth_code(ex.first())
    assert code == 5 and len(salt) == 4
    ex.step(md5_answer(password, user, salt))
    assert ex.done
    ex = exchange.start(policy, user)
    _, salt = auth_code(ex.first())
    with pytest.raises(AuthFailed):
        ex.step(md5_answer("bad", user, salt))


def test_md5_with_a_scram_secret_switches_to_scram():
    scram_login(users(ALICE, exchange.MD5), "alice", "pencil")


def test_empty_password_and_trailing_bytes():
    ex = exchange.start(users(CAROL, exchange.PASSWORD), "carol")
    ex.first()
    with pytest.raises(AuthFailed):
        ex.step(b"\x00")
    ex = exchange.start(users(CAROL, exchange.PASSWORD), "carol")
    ex.first()
    with pytest.raises(codec.ProtocolError):
        ex.step(b"sekret\x00junk")


def test_trust_asks_nothing():
    ex = exchange.start(exchange.Policy(exchange.TRUST), "anyone")
    assert ex.first() == b"" and ex.done


def test_policy_defaults(tmp_path):
    assert exchange.policy("", "").method == exchange.TRUST
    path = tmp_path / "users"
    path.write_text(f"# comment\n\n{ALICE}\n{BOB}\n")
    p = exchange.policy("", str(path))
    assert p.method == exchange.SCRAM and set(p.users) == {"alice", "bob"}
    assert exchange.policy("MD5", str(path)).method == exchange.MD5
    with pytest.raises(exchange.AuthConfigError):
        exchange.policy("scram-sha-256", "")
    with pytest.raises(exchange.AuthConfigError):
        exchange.policy("kerberos", str(path))


@pytest.mark.parametrize("text", ["alice", ":plain:x", "alice:secret", "alice:md5abc",
                                  "alice:SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA", f"{CAROL}\n{CAROL}"])
def test_bad_users_file_lines(text):
    with pytest.raises(userfile.UsersFileError):
        userfile.parse(text)


def test_missing_users_file(tmp_path):
    with pytest.raises(userfile.UsersFileError, match="read users file"):
        userfile.load(str(tmp_path / "absent"))


def test_verifier_text_round_trips():
    v = userfile.scram_verifier("pencil")
    assert userfile.parse_secret(v.text()).scram == v


def test_saslprep():
    assert userfile.saslprep("pencil") == b"pencil"
    assert userfile.saslprep("I\u00adX") == b"IX"                 # soft hyphen maps to nothing
    assert userfile.saslprep("a\u00a0b") == b"a b"                 # non-ASCII space maps to space
    assert userfile.saslprep("\u2168") == b"IX"            # NFKC
    assert userfile.saslprep("a\x07b") == b"a\x07b"                # prohibited: raw bytes, as PostgreSQL


def test_cli_prints_a_line_the_users_file_accepts():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "sqld.edge.auth", "dora"], input="s3cret\n",
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    line = out.stdout.strip()
    assert line.startswith("dora:SCRAM-SHA-256$4096:") and "s3cret" not in line
    scram_login(users(line), "dora", "s3cret")
    md5 = subprocess.run([sys.executable, "-m", "sqld.edge.auth", "dora", "--md5"], input="s3cret\n",
                         capture_output=True, text=True, timeout=30)
    assert md5.stdout.strip() == "dora:" + userfile.md5_hash("s3cret", "dora")
