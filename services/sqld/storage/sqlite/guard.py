"""The SQL guard: what a client's SQL may do to a storage connection, decided by SQLite's
authorizer on every connection storage opens (primary, replica, mvsqlite, time travel).

Why: a storage connection is the server's, not the client's. SQLite lets any statement
reach its own controls: `PRAGMA wal_autocheckpoint` replaces the WAL hook that logs
commits for replication, `PRAGMA wal_checkpoint` moves frames out of the WAL before they
are logged, `writable_schema` corrupts the schema, ATTACH and VACUUM INTO read and write
any file the process can, and connection settings outlive the session on a pooled
connection. So the authorizer is an allowlist: an action code passes only when it is
named below; everything else is refused before the statement runs (nothing happens) with
the reason, which `errors.to_error` turns into 42501 insufficient_privilege.

SQLite's own defenses are on too: DEFENSIVE (no writable_schema, no writes to shadow
tables or sqlite_dbpage), TRUSTED_SCHEMA off (functions in views, triggers and CHECKs must
be innocuous), no extension loading.

Plain VACUUM attaches a temporary database internally while it runs (its ATTACH argument
is ''), VACUUM INTO attaches its target file: an ATTACH is allowed only while a statement
runs (`running`, set once the statement is prepared) and only for ''. A client's own
ATTACH is always seen at prepare time and refused.

Session state: a few PRAGMAs are per-session settings (SESSION_PRAGMAS) and TEMP objects
belong to the session; the guard notes when a statement may have changed either
(`noted`), and `session_state` then tells the caller whether the connection now differs
from how the server opened it (the scheduler keeps such a connection for that session).
"""
from __future__ import annotations

import apsw

# Pragmas whose value is per connection, which a client may set for its session.
# (defer_foreign_keys resets itself at the end of each transaction.)
SESSION_PRAGMAS = frozenset({
    "foreign_keys", "defer_foreign_keys", "recursive_triggers", "reverse_unordered_selects",
    "query_only", "case_sensitive_like",
})

# Pragmas that set a value stored in the database header: normal schema-level writes in
# SQLite applications, replicated like any commit (a replica refuses them as read-only).
DATABASE_PRAGMAS = frozenset({"user_version", "application_id"})

# Pragmas that only report, with or without an argument (a table name, a limit).
INTROSPECTION_PRAGMAS = frozenset({
    "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo",
    "foreign_key_list", "foreign_key_check", "database_list", "collation_list", "function_list",
    "module_list", "pragma_list", "compile_options", "integrity_check", "quick_check",
})

# Pragmas whose plain form (no argument) only reads; setting them is the server's job.
READABLE_PRAGMAS = frozenset({
    "page_count", "page_size", "freelist_count", "encoding", "schema_version", "data_version",
    "journal_mode", "synchronous", "wal_autocheckpoint", "busy_timeout", "cache_size",
    "temp_store", "auto_vacuum", "locking_mode", "max_page_count", "mmap_size", "secure_delete",
    "cell_size_check", "automatic_index", "journal_size_limit", "cache_spill", "trusted_schema",
    "ignore_check_constraints", "legacy_alter_table", "analysis_limit", "threads",
    "soft_heap_limit", "hard_heap_limit", "fullfsync", "checkpoint_fullfsync",
})

# Pragmas that do work any client may ask for (ANALYZE is allowed; optimize runs it).
ACTION_PRAGMAS = frozenset({"optimize"})

# Why some pragmas are refused outright, even without an argument.
_REASONS = {
    "wal_checkpoint": "checkpoints are managed by the server (replication reads the WAL first)",
    "writable_schema": "the schema is changed only by DDL",
    "incremental_vacuum": "use VACUUM",
    "shrink_memory": "memory is managed by the server",
    "temp_store_directory": "files are managed by the server",
    "data_store_directory": "files are managed by the server",
}

VTABLE_MODULES = frozenset({"fts3", "fts4", "fts5", "rtree", "rtree_i32", "geopoly"})
DENIED_FUNCTIONS = frozenset({"load_extension", "fts3_tokenizer"})

_ALLOWED_ACTIONS = frozenset({
    apsw.SQLITE_SELECT, apsw.SQLITE_READ, apsw.SQLITE_INSERT, apsw.SQLITE_UPDATE, apsw.SQLITE_DELETE,
    apsw.SQLITE_CREATE_TABLE, apsw.SQLITE_CREATE_INDEX, apsw.SQLITE_CREATE_VIEW, apsw.SQLITE_CREATE_TRIGGER,
    apsw.SQLITE_DROP_TABLE, apsw.SQLITE_DROP_INDEX, apsw.SQLITE_DROP_VIEW, apsw.SQLITE_DROP_TRIGGER,
    apsw.SQLITE_ALTER_TABLE, apsw.SQLITE_ANALYZE, apsw.SQLITE_REINDEX, apsw.SQLITE_TRANSACTION,
    apsw.SQLITE_SAVEPOINT, apsw.SQLITE_RECURSIVE,
})
# TEMP objects are allowed and make the connection carry session state.
_TEMP_ACTIONS = frozenset({
    apsw.SQLITE_CREATE_TEMP_TABLE, apsw.SQLITE_CREATE_TEMP_INDEX, apsw.SQLITE_CREATE_TEMP_VIEW,
    apsw.SQLITE_CREATE_TEMP_TRIGGER, apsw.SQLITE_DROP_TEMP_TABLE, apsw.SQLITE_DROP_TEMP_INDEX,
    apsw.SQLITE_DROP_TEMP_VIEW, apsw.SQLITE_DROP_TEMP_TRIGGER,
})

ATTACH_REFUSED = "ATTACH is not allowed: each session sees one database"
DETACH_REFUSED = "DETACH is not allowed: each session sees one database"
VACUUM_INTO_REFUSED = "VACUUM INTO is not allowed: it writes a file on the server; use VACUUM"


def decide(action: int, arg1: str | None, arg2: str | None, running: bool = False) -> str | None:
    """None when the action is allowed, else the reason it is refused (the client sees it)."""
    if action in _ALLOWED_ACTIONS or action in _TEMP_ACTIONS:
        return None
    if action == apsw.SQLITE_PRAGMA:
        return _decide_pragma((arg1 or "").lower(), arg2)
    if action == apsw.SQLITE_FUNCTION:
        name = (arg2 or "").lower()
        return f"permission denied: function {name}() is not allowed" if name in DENIED_FUNCTIONS else None
    if action in (apsw.SQLITE_CREATE_VTABLE, apsw.SQLITE_DROP_VTABLE):
        module = (arg2 or "").lower()
        if module in VTABLE_MODULES:
            return None
        return (f"permission denied: virtual table module {module} is not allowed "
                f"(allowed: {', '.join(sorted(VTABLE_MODULES))})")
    if action == apsw.SQLITE_ATTACH:
        if running and arg1 == "":
            return None  # plain VACUUM's own temporary database
        return VACUUM_INTO_REFUSED if running else ATTACH_REFUSED
    if action == apsw.SQLITE_DETACH:
        return DETACH_REFUSED
    name = str(apsw.mapping_authorizer_function.get(action, action))
    return f"permission denied: {name} is not allowed"


def _decide_pragma(name: str, arg: str | None) -> str | None:
    if name in SESSION_PRAGMAS or name in DATABASE_PRAGMAS or name in INTROSPECTION_PRAGMAS \
            or name in ACTION_PRAGMAS:
        return None
    if name in READABLE_PRAGMAS:
        return None if arg is None else f"permission denied: PRAGMA {name} is managed by the server"
    reason = _REASONS.get(name, "it is not on this server's list of allowed pragmas")
    return f"permission denied: PRAGMA {name} is not allowed: {reason}"


def may_change_session(action: int, arg1: str | None, arg2: str | None) -> bool:
    """An allowed action after which the connection may carry session state."""
    if action in _TEMP_ACTIONS:
        return True
    return action == apsw.SQLITE_PRAGMA and arg2 is not None and (arg1 or "").lower() in SESSION_PRAGMAS


# One row: each session pragma's value, LIKE's case rule (case_sensitive_like cannot be
# read back) and the number of TEMP objects.
_STATE_SQL = (
    "SELECT (SELECT * FROM pragma_foreign_keys), (SELECT * FROM pragma_defer_foreign_keys), "
    "(SELECT * FROM pragma_recursive_triggers), (SELECT * FROM pragma_reverse_unordered_selects), "
    "(SELECT * FROM pragma_query_only), 'a' LIKE 'A', (SELECT count(*) FROM temp.sqlite_master)")


class Guard:
    """The authorizer of one connection; remembers why it last refused and whether a
    statement may have changed session state. Not thread-safe, like the connection."""

    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn
        self.denied: str | None = None   # the reason of the last refusal
        self.running = False             # a statement is past prepare (VACUUM's internal ATTACH)
        self.noted = False               # a statement may have changed session state
        self._baseline: tuple = ()

    def install(self) -> None:
        """Turn on SQLite's defenses and the authorizer; the server's own setup is done."""
        self.conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, 1)
        self.conn.config(apsw.SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0)
        self.conn.config(apsw.SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0)
        self.conn.enable_load_extension(False)
        self._baseline = self._state()
        self.conn.set_authorizer(self)

    def __call__(self, action: int, arg1: str | None, arg2: str | None, schema: str | None,
                 trigger: str | None) -> int:  # noqa: ARG002 - SQLite's authorizer signature
        reason = decide(action, arg1, arg2, self.running)
        if reason is not None:
            self.denied = reason
            return apsw.SQLITE_DENY
        if may_change_session(action, arg1, arg2):
            self.noted = True
        return apsw.SQLITE_OK

    def take_denied(self) -> str | None:
        """The reason of the last refusal, once."""
        reason, self.denied = self.denied, None
        return reason

    def _state(self) -> tuple:
        return tuple(self.conn.execute(_STATE_SQL).fetchall()[0])

    def session_state(self) -> bool:
        """The connection differs from how the server set it up (a session setting or a TEMP
        object). Unsure (the check itself failed) counts as yes."""
        self.noted = False
        try:
            return self._state() != self._baseline
        except apsw.Error:
            return True
