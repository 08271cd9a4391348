"""pgbench's built-in scripts against the edge, in every protocol mode, with zero failures."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

PGBENCH = shutil.which("pgbench")
INIT = Path(__file__).resolve().parents[1] / "testdata" / "pgbench_init.sql"


@pytest.fixture(scope="module")
def loaded(stack):
    assert PGBENCH, "pgbench is not installed: apt-get install postgresql-contrib"
    out = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(stack.ports.pg),
                          "-U", "postgres", "-f", str(INIT), "main"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return stack


@pytest.mark.parametrize("script", ["select-only", "simple-update", "tpcb-like"])
@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_builtin(loaded, script, mode):
    out = subprocess.run([PGBENCH, "-n", "-b", script, "-M", mode, "-c", "2", "-t", "50",
                          "-h", "127.0.0.1", "-p", str(loaded.ports.pg), "-U", "postgres", "main"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr + out.stdout
    processed = re.search(r"number of transactions actually processed: (\d+)/(\d+)", out.stdout)
    assert processed and processed.group(1) == processed.group(2) == "100", out.stdout
    failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
    assert failed is None or failed.group(1) == "0", out.stdout


def test_tpcb_keeps_balances_consistent(loaded):
    with psycopg.connect(loaded.dsn, autocommit=True) as c:
        a, t, b, h = c.execute("SELECT (SELECT sum(abalance) FROM pgbench_accounts), "
                               "(SELECT sum(tbalance) FROM pgbench_tellers), "
                               "(SELECT sum(bbalance) FROM pgbench_branches), "
                               "(SELECT sum(delta) FROM pgbench_history)").fetchone()
        assert a == h  # every transaction that logged a delta applied it to an account
        assert t == b  # tpcb-like moves tellers and branches together
