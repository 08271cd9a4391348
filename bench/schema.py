"""pgbench-shaped tables in SQLite's dialect, at any scale.

`pgbench -i` cannot initialise a SQLite database (it uses PostgreSQL-only DDL and COPY), so our
side is loaded with this script (adapted from the reference pgbench_sqlite_init.sql); PostgreSQL
is loaded with `pgbench -i -s N`. Row counts are the same: per unit of scale one branch, ten
tellers and 100,000 accounts; the history table starts empty.
"""
from __future__ import annotations

TELLERS_PER_BRANCH = 10
ACCOUNTS_PER_BRANCH = 100_000


def sqlite_init_sql(scale: int) -> str:
    """The statements that (re)create and fill the four pgbench tables at `scale`."""
    if scale < 1:
        raise ValueError(f"scale must be at least 1, not {scale}")
    tellers = TELLERS_PER_BRANCH * scale
    accounts = ACCOUNTS_PER_BRANCH * scale
    return "\n".join([
        "DROP TABLE IF EXISTS pgbench_accounts;",
        "DROP TABLE IF EXISTS pgbench_branches;",
        "DROP TABLE IF EXISTS pgbench_tellers;",
        "DROP TABLE IF EXISTS pgbench_history;",
        "CREATE TABLE pgbench_history(tid INTEGER, bid INTEGER, aid INTEGER, delta INTEGER,"
        " mtime TIMESTAMP, filler CHAR(22));",
        "CREATE TABLE pgbench_tellers(tid INTEGER NOT NULL PRIMARY KEY, bid INTEGER,"
        " tbalance INTEGER, filler CHAR(84));",
        "CREATE TABLE pgbench_accounts(aid INTEGER NOT NULL PRIMARY KEY, bid INTEGER,"
        " abalance INTEGER, filler CHAR(84));",
        "CREATE TABLE pgbench_branches(bid INTEGER NOT NULL PRIMARY KEY, bbalance INTEGER,"
        " filler CHAR(88));",
        f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < {scale})"
        " INSERT INTO pgbench_branches(bid, bbalance) SELECT i, 0 FROM s;",
        f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < {tellers})"
        f" INSERT INTO pgbench_tellers(tid, bid, tbalance) SELECT i, (i-1)/{TELLERS_PER_BRANCH}+1, 0 FROM s;",
        f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < {accounts})"
        f" INSERT INTO pgbench_accounts(aid, bid, abalance, filler)"
        f" SELECT i, (i-1)/{ACCOUNTS_PER_BRANCH}+1, 0, '' FROM s;",
        "",
    ])


def expected_counts(scale: int) -> dict[str, int]:
    """Rows each table holds right after loading, on either system."""
    return {"pgbench_branches": scale, "pgbench_tellers": TELLERS_PER_BRANCH * scale,
            "pgbench_accounts": ACCOUNTS_PER_BRANCH * scale, "pgbench_history": 0}
