-- pgbench tables in the SQLite dialect, scale 1 (from shared/reference/pgbench_sqlite_init.sql).
-- pgbench -i cannot create them on SQLite; load with psql -f, then run pgbench -n.
DROP TABLE IF EXISTS pgbench_accounts;
DROP TABLE IF EXISTS pgbench_branches;
DROP TABLE IF EXISTS pgbench_tellers;
DROP TABLE IF EXISTS pgbench_history;
CREATE TABLE pgbench_history(tid INTEGER, bid INTEGER, aid INTEGER, delta INTEGER, mtime TIMESTAMP, filler CHAR(22));
CREATE TABLE pgbench_tellers(tid INTEGER NOT NULL PRIMARY KEY, bid INTEGER, tbalance INTEGER, filler CHAR(84));
CREATE TABLE pgbench_accounts(aid INTEGER NOT NULL PRIMARY KEY, bid INTEGER, abalance INTEGER, filler CHAR(84));
CREATE TABLE pgbench_branches(bid INTEGER NOT NULL PRIMARY KEY, bbalance INTEGER, filler CHAR(88));
INSERT INTO pgbench_branches(bid, bbalance) VALUES (1, 0);
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < 10) INSERT INTO pgbench_tellers(tid, bid, tbalance) SELECT i, (i-1)/10+1, 0 FROM s;
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < 100000) INSERT INTO pgbench_accounts(aid, bid, abalance, filler) SELECT i, (i-1)/100000+1, 0, '' FROM s;
