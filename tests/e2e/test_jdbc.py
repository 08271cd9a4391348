"""The PostgreSQL JDBC driver (Debian's libpostgresql-jdbc-java) under the installed JDK.

tests/jdbc/JdbcSmoke.java is compiled at test time and run against a site with SCRAM and
TLS: connect, autocommit off with commit and rollback, prepared statements reused past the
5th execution (named server statements), a batch insert, ints/strings/doubles read back.
Marked `jdbc`; it runs in `make test`. Missing tools are installed with apt-get when we are
root (as in CI), otherwise the test fails and says what to install.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from sqld.edge.auth import userfile
from tests.fixtures.certs import self_signed

JAR = Path("/usr/share/java/postgresql.jar")
SOURCE = Path(__file__).resolve().parents[1] / "jdbc" / "JdbcSmoke.java"
PACKAGES = ["default-jdk-headless", "libpostgresql-jdbc-java"]


def ensure_tools() -> None:
    if shutil.which("javac") and shutil.which("java") and JAR.exists():
        return
    if os.geteuid() != 0:
        pytest.fail(f"JDBC test needs javac, java and {JAR}: apt-get install {' '.join(PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-qq", *PACKAGES], check=True, env=env, timeout=1200,
                   stdout=subprocess.DEVNULL)
    assert shutil.which("javac") and JAR.exists()


@pytest.mark.jdbc
def test_jdbc_smoke(own_stack, tmp_path):
    ensure_tools()
    (tmp_path / "users").write_text("jdbc:" + userfile.scram_verifier("jdbc-pw").text() + "\n")
    cert, key = self_signed(tmp_path / "tls")
    stack = own_stack(env={"SQLD_EDGE_USERS": str(tmp_path / "users"), "SQLD_EDGE_TLS_CERT": str(cert),
                           "SQLD_EDGE_TLS_KEY": str(key), "SQLD_EDGE_TLS_REQUIRED": "true"})
    classes = tmp_path / "classes"
    compiled = subprocess.run(["javac", "-cp", str(JAR), "-d", str(classes), str(SOURCE)],
                              capture_output=True, text=True, timeout=300)
    assert compiled.returncode == 0, compiled.stderr
    url = f"jdbc:postgresql://127.0.0.1:{stack.ports.pg}/main?sslmode=require&connectTimeout=10"
    run = subprocess.run(["java", "-cp", f"{classes}{os.pathsep}{JAR}", "JdbcSmoke", url, "jdbc", "jdbc-pw"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "JDBC smoke OK" in run.stdout
    log = (stack.log_dir / "edge.log").read_text()
    assert "authentication failed" not in log
