"""Where a session's reads run at a site with a replica, and the session settings behind it.

Writes and transactions always run on the primary. An autocommit read runs on the
replica when the session's consistency allows it: READ_YOUR_WRITES (the default) needs
the replica to have applied the session's last write (the replica waits up to
`read_your_writes_wait` for it); BOUNDED_STALENESS only needs the replica's lag to be
within the bound; STRONG never uses the replica. A replica lagging more than the
session's staleness bound (default `max_replica_lag`) answers not_caught_up and the read
goes to the primary instead of waiting or failing.

Settings can also be changed over pg-wire with SET (the scheduler answers these itself):
  SET synchronous_commit = remote_apply | on | off | local
  SET sqld.consistency = strong | read_your_writes | bounded_staleness
  SET sqld.max_staleness_ms = 250
  SET sqld.begin_as_writer = on | off   (every transaction takes the writer token at its
                                         first statement; see scheduler.writer)
  SET sqld.statement_errors = postgresql | sqlite   (postgresql, the default: an error fails
      the transaction; sqlite: SQLite undid the failed statement and the transaction goes on,
      unless SQLite itself rolled it back. sqldclient sets sqlite, as the sqlite3 module behaves)
  SET idle_in_transaction_session_timeout = 5000 | '5s' | 0   (this session's limit on the time
      between statements in a transaction; it can only lower the scheduler's
      --idle-in-transaction-timeout, and 0, PostgreSQL's "off", means the scheduler's)
"""
from __future__ import annotations

import dataclasses
import re

from sqld.v1 import query_pb2

STRONG = query_pb2.CONSISTENCY_STRONG
READ_YOUR_WRITES = query_pb2.CONSISTENCY_READ_YOUR_WRITES
BOUNDED_STALENESS = query_pb2.CONSISTENCY_BOUNDED_STALENESS

_SET = re.compile(r"^\s*SET\s+(?:SESSION\s+)?(synchronous_commit|sqld\.consistency|sqld\.max_staleness_ms|sqld\.begin_as_writer|"
                  r"sqld\.statement_errors|idle_in_transaction_session_timeout)"
                  r"\s*(?:=|\bTO\b)\s*'?\s*([A-Za-z_0-9.]+(?:\s*[A-Za-z]+)?)\s*'?\s*;?\s*$", re.I)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|min|h|d)?$")
_MS = {"ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1}
_BOOL = {"on": True, "true": True, "1": True, "yes": True, "off": False, "false": False, "0": False, "no": False}
_CONSISTENCY = {"strong": STRONG, "read_your_writes": READ_YOUR_WRITES, "bounded_staleness": BOUNDED_STALENESS}


@dataclasses.dataclass
class Policy:
    consistency: int = READ_YOUR_WRITES
    max_staleness_ms: int = 0          # 0: the scheduler's default bound
    synchronous_commit: bool = False   # remote_apply
    begin_as_writer: bool = False      # every transaction takes the writer token first
    sqlite_errors: bool = False        # a statement error leaves the transaction open (SQLite's rule)
    idle_timeout_s: float = 0.0        # idle_in_transaction_session_timeout; 0: the scheduler's

    def idle_limit(self, server_s: float) -> float:
        """The idle-in-transaction limit for this session (0: none): its own when it set one
        lower than the server's."""
        if self.idle_timeout_s > 0 and (server_s <= 0 or self.idle_timeout_s < server_s):
            return self.idle_timeout_s
        return server_s


def is_setting(sql: str) -> bool:
    return bool(_SET.match(sql))


def apply_setting(policy: Policy, sql: str) -> str | None:
    """Change `policy` as the SET statement says; an error message when the value is unknown."""
    m = _SET.match(sql)
    assert m is not None
    name, value = m.group(1).lower(), m.group(2).lower()
    if name == "synchronous_commit":
        if value not in ("on", "off", "local", "remote_write", "remote_apply", "true", "false", "1", "0"):
            return f'invalid value for parameter "synchronous_commit": "{value}"'
        policy.synchronous_commit = value == "remote_apply"
    elif name == "sqld.consistency":
        if value not in _CONSISTENCY:
            return f'invalid value for parameter "sqld.consistency": "{value}" (use strong, read_your_writes or bounded_staleness)'
        policy.consistency = _CONSISTENCY[value]
    elif name == "sqld.begin_as_writer":
        if value not in _BOOL:
            return f'invalid value for parameter "sqld.begin_as_writer": "{value}" (use on or off)'
        policy.begin_as_writer = _BOOL[value]
    elif name == "idle_in_transaction_session_timeout":
        d = _DURATION.match(value.replace(" ", ""))
        if d is None:
            return f'invalid value for parameter "idle_in_transaction_session_timeout": "{value}"'
        policy.idle_timeout_s = float(d.group(1)) * _MS[d.group(2)] / 1000
    elif name == "sqld.statement_errors":
        if value not in ("postgresql", "sqlite"):
            return f'invalid value for parameter "sqld.statement_errors": "{value}" (use postgresql or sqlite)'
        policy.sqlite_errors = value == "sqlite"
    else:
        if not value.isdigit():
            return f'invalid value for parameter "sqld.max_staleness_ms": "{value}" (milliseconds)'
        policy.max_staleness_ms = int(value)
    return None
