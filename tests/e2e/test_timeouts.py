"""The idle-in-transaction limit: an idle transaction does not hold the writer forever."""
from __future__ import annotations

import threading
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


def test_statement_timeout_and_cancel_stop_a_wait_for_the_write_lock(own_stack):
    """A write waiting for another transaction's write lock (in the scheduler, before storage
    runs anything) is cancelled by statement_timeout and by a CancelRequest, as in PostgreSQL."""
    stack = own_stack()
    with psycopg.connect(stack.dsn, autocommit=True) as c:
        c.execute("CREATE TABLE w (a INTEGER)")
    holder = psycopg.connect(stack.dsn)
    holder.execute("INSERT INTO w VALUES (1)")  # holds the write lock until it ends
    try:
        with psycopg.connect(stack.dsn, autocommit=True) as waiter:
            waiter.execute("SET statement_timeout = 300")
            started = time.monotonic()
            with pytest.raises(psycopg.errors.QueryCanceled) as info:
                waiter.execute("INSERT INTO w VALUES (2)")
            assert "statement timeout" in str(info.value)
            assert time.monotonic() - started < 3  # not the scheduler's lock wait limit
            waiter.execute("RESET statement_timeout")
            timer = threading.Timer(0.3, waiter.cancel)
            timer.start()
            with pytest.raises(psycopg.errors.QueryCanceled):
                waiter.execute("INSERT INTO w VALUES (3)")
            timer.join()
            holder.commit()
            waiter.execute("INSERT INTO w VALUES (4)")  # the session goes on
            assert waiter.execute("SELECT a FROM w ORDER BY a").fetchall() == [(1,), (4,)]
    finally:
        holder.close()


def test_write_transaction_held_too_long_is_ended_even_when_busy(own_stack):
    """The idle timeout counts only the time between statements; max_write_transaction_seconds
    bounds the whole hold on the writer, also while a statement runs (FATAL 25P04)."""
    stack = own_stack(env={"SQLD_SCHEDULER_MAX_WRITE_TRANSACTION_SECONDS": "1.5"})
    with psycopg.connect(stack.dsn, autocommit=True) as other:
        other.execute("CREATE TABLE hold (a INTEGER)")
        holder = psycopg.connect(stack.dsn)
        holder.execute("INSERT INTO hold VALUES (1)")  # takes the writer token
        started = time.monotonic()
        with pytest.raises(psycopg.errors.TransactionTimeout) as info:
            while time.monotonic() - started < 10:  # never idle for long
                holder.execute("SELECT 1")
                time.sleep(0.2)
        assert 1.2 < time.monotonic() - started < 4
        assert info.value.sqlstate == "25P04" and "max_write_transaction_seconds" in str(info.value)
        holder.close()
        started = time.monotonic()
        other.execute("INSERT INTO hold VALUES (2)")
        assert time.monotonic() - started < 1

        runner = psycopg.connect(stack.dsn)
        runner.execute("INSERT INTO hold VALUES (3)")
        started = time.monotonic()
        with pytest.raises(psycopg.errors.TransactionTimeout):  # the long statement is interrupted
            runner.execute("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                           "WHERE x < 500000000) SELECT count(*) FROM c")
        assert time.monotonic() - started < 4
        runner.close()
        assert other.execute("SELECT a FROM hold ORDER BY a").fetchall() == [(2,)]
