"""sqld-py: a server mode for SQLite over the PostgreSQL wire protocol.

One package for every service (sqld.edge, sqld.scheduler, sqld.storage, sqld.replication,
sqld.launcher, sqld.backup), their shared code (sqld.common) and the stubs generated from
proto/ (sqld.v1, sqld.testing.v1; `make proto`, never committed).
"""
