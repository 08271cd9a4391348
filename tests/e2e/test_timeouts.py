"""The idle-in-transaction limit: an idle transaction does not hold the writer forever."""
from __future__ import annotations

import time

import psycopg
import pytest


def test_idle_transaction_is_rolled_back_and_client_told(own_stack):
    stack = own_stack(env={"SQLD_SCHEDULER_IDLE_IN_TRANSACTION_TIMEOUT": "1"})
    with psycopg.connect(stack.dsn, autocommit=True) as other:
        other.execute("CREATE TABLE idle (a INTEGER)")
        idler = psycopg.connect(stack.dsn)
        idler.execute("INSERT INTO idle VALUES (1)")  # takes the writer token, then sits idle
        started = time.monotonic()
        other.execute("INSERT INTO idle VALUES (2)")  # waits for the token until the timeout frees it
        waited = time.monotonic() - started
        assert 0.5 < waited < 10
        with pytest.raises(psycopg.errors.IdleInTransactionSessionTimeout) as info:
            idler.execute("SELECT 1")
        assert info.value.sqlstate == "25P03" and "idle-in-transaction" in str(info.value)
        idler.close()
        assert other.execute("SELECT a FROM idle").fetchall() == [(2,)]
