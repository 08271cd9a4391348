"""Authentication and TLS with real clients: psycopg (libpq), psql, asyncpg (its own SCRAM).

One secured site (users file + certificate) serves most tests; md5, cleartext and
TLS-required sites are started where the method differs.
"""
from __future__ import annotations

import asyncio
import os
import ssl
import struct
import subprocess
import sys

import asyncpg
import psycopg
import pytest

from sqld.edge.auth import userfile
from tests.fixtures.certs import self_signed
from tests.fixtures.stack import ROOT, make_stack

USERS = "\n".join([
    "# made by the test",
    "alice:" + userfile.scram_verifier("pencil").text(),
    "bob:" + userfile.md5_hash("pw", "bob"),
    "carol:plain:sekret",
])


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("secrets")
    (folder / "users").write_text(USERS + "\n")
    self_signed(folder)
    return folder


def env_for(folder, **extra: str) -> dict[str, str]:
    return {"SQLD_EDGE_USERS": str(folder / "users"), "SQLD_EDGE_TLS_CERT": str(folder / "server.crt"),
            "SQLD_EDGE_TLS_KEY": str(folder / "server.key"), **extra}


@pytest.fixture(scope="module")
def secure(secrets_dir, tmp_path_factory):
    s = make_stack("auth-secure", tmp_path_factory.mktemp("secure"), env_for(secrets_dir), replicas=0)
    yield s
    s.stop()
    errors = s.log_errors()
    assert not errors, "unexpected ERROR log lines:\n" + "\n".join(errors)


def dsn(stack, user: str, password: str | None = None, **extra: str) -> str:
    parts = [f"host=127.0.0.1 port={stack.ports.pg} dbname=main user={user} connect_timeout=10"]
    if password is not None:
        parts.append(f"password={password}")
    parts += [f"{k}={v}" for k, v in extra.items()]
    return " ".join(parts)


def asyncpg_connect(stack, user: str, password: str, tls: ssl.SSLContext | bool = False):
    async def go():
        conn = await asyncpg.connect(host="127.0.0.1", port=stack.ports.pg, user=user, password=password,
                                     database="main", ssl=tls, timeout=10)
        try:
            return await conn.fetchval("SELECT 42"), conn.get_settings().session_authorization
        finally:
            await conn.close()
    return asyncio.run(go())


def no_verify() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# -- SCRAM-SHA-256, the default with a users file -----------------------------------------
@pytest.mark.parametrize("user,password", [("alice", "pencil"), ("carol", "sekret")])
def test_scram_login_with_libpq(secure, user, password):
    with psycopg.connect(dsn(secure, user, password, sslmode="disable")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.info.parameter_status("session_authorization") == user
        assert not conn.pgconn.ssl_in_use


def test_scram_login_with_asyncpg(secure):
    assert asyncpg_connect(secure, "alice", "pencil") == (42, "alice")


@pytest.mark.parametrize("user,password", [("alice", "wrong"), ("mallory", "pencil"), ("bob", "pw")])
def test_failed_logins_are_28P01_with_one_message(secure, user, password):
    """Wrong password, unknown user, md5 secret under SCRAM: the client learns nothing more."""
    with pytest.raises(asyncpg.InvalidPasswordError) as info:
        asyncpg_connect(secure, user, password)
    assert info.value.sqlstate == "28P01"
    assert str(info.value) == f'password authentication failed for user "{user}"'
    with pytest.raises(psycopg.OperationalError, match=f'password authentication failed for user "{user}"'):
        psycopg.connect(dsn(secure, user, password, sslmode="disable"))


def test_missing_password_fails(secure):
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(dsn(secure, "alice", sslmode="disable"), )
    # the edge is fine afterwards
    with psycopg.connect(dsn(secure, "alice", "pencil")) as conn:
        assert conn.execute("SELECT 2").fetchone() == (2,)


def test_psql_over_tls_with_scram(secure):
    out = subprocess.run(["psql", "-X", "-A", "-t", "-c", "SELECT 7",
                          dsn(secure, "alice", sslmode="require")],
                         env={**os.environ, "PGPASSWORD": "pencil"}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "7"


# -- TLS ---------------------------------------------------------------------------------
def test_tls_session_verifies_the_certificate(secure, secrets_dir):
    root = secrets_dir / "server.crt"
    with psycopg.connect(dsn(secure, "alice", "pencil", sslmode="verify-full", sslrootcert=str(root))) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT 'over tls'").fetchone() == ("over tls",)
    assert asyncpg_connect(secure, "alice", "pencil", no_verify()) == (42, "alice")


def test_sslmode_require_is_refused_clearly_without_a_certificate(stack):
    with pytest.raises(psycopg.OperationalError, match="server does not support SSL, but SSL was required"):
        psycopg.connect(stack.dsn + " sslmode=require")
    with psycopg.connect(stack.dsn + " sslmode=prefer") as conn:  # falls back to clear text
        assert not conn.pgconn.ssl_in_use


def test_tls_required_refuses_clear_text(own_stack, secrets_dir):
    s = own_stack(env=env_for(secrets_dir, SQLD_EDGE_TLS_REQUIRED="true"))
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError) as info:
        asyncpg_connect(s, "alice", "pencil", tls=False)
    assert info.value.sqlstate == "28000" and "TLS" in str(info.value)
    with psycopg.connect(dsn(s, "alice", "pencil", sslmode="require")) as conn:
        assert conn.pgconn.ssl_in_use
        conn.cancel()  # libpq sends CancelRequest on a new socket, without TLS: still accepted
        assert conn.execute("SELECT 5").fetchone() == (5,)
    log = (s.log_dir / "edge.log").read_text()
    assert "refused a connection without TLS" in log
    assert log.count("refused a connection without TLS") == 1  # the cancel was not refused


# -- other methods -----------------------------------------------------------------------
@pytest.mark.parametrize("method", ["md5", "password"])
def test_md5_and_cleartext_methods(own_stack, secrets_dir, method):
    s = own_stack(env=env_for(secrets_dir, SQLD_EDGE_AUTH=method))
    logins = [("bob", "pw"), ("carol", "sekret"), ("alice", "pencil")]  # alice: md5 falls back to SCRAM
    for user, password in logins:
        with psycopg.connect(dsn(s, user, password, sslmode="disable")) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(dsn(s, user, password + "x", sslmode="disable"))
    log = (s.log_dir / "edge.log").read_text()
    assert f"method={method}" in log


def test_trust_without_users(stack):
    with psycopg.connect(stack.dsn + " user=anyone") as conn:
        assert conn.info.parameter_status("session_authorization") == "anyone"


@pytest.mark.parametrize("args,message", [
    (["--users", "/nonexistent/users"], "read users file"),
    (["--auth", "scram-sha-256"], "needs users"),
    (["--tls-cert", "/nonexistent/cert.pem"], "TLS needs both"),
    (["--tls-required", "true"], "--tls-required needs"),
])
def test_bad_settings_stop_the_edge_with_a_clear_message(args, message):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "services")}
    out = subprocess.run([sys.executable, "-m", "sqld.edge", "--listen", "127.0.0.1:0", "--grpc-insecure", "true", *args],
                         env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert message in out.stderr


def test_clear_text_sent_with_the_ssl_request_is_refused(secure):
    """Bytes pipelined after SSLRequest would be read as if encrypted (CVE-2021-23214): refuse them."""
    from tests.fixtures.rawpg import Raw, error_fields, startup_packet
    raw = Raw(secure.ports.pg)
    raw.send(struct.pack("!ii", 8, 80877103) + startup_packet(user="alice"))
    raw.sock.settimeout(10)
    while len(raw.buf) < 1:
        assert raw._fill()
    assert raw.buf[:1] == b"S"
    raw.buf = raw.buf[1:]
    errors = [error_fields(b) for k, b in raw.until_closed() if k == b"E"]
    assert errors and errors[0]["C"] == "08P01" and "unencrypted data" in errors[0]["M"]
    raw.close()
    with psycopg.connect(dsn(secure, "alice", "pencil", sslmode="require")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
