"""The session settings a client can SET, SHOW and give at startup, as PostgreSQL's GUC knows them.

One table (`SETTINGS`) says for each setting its type, unit, bounds or choices, default and
description; it feeds SET's checks, SHOW's display (PostgreSQL's: a duration or size in the
largest unit that keeps it whole, `1min`, `4MB`; booleans `on`/`off`), and pg_settings
(catalog/live.py: `setting` in the base unit, with `unit`). No I/O here.

What is honoured: statement_timeout (the edge's timer), application_name (pg_stat_activity),
client_encoding (UTF8 only), the sqld.* settings, synchronous_commit and
idle_in_transaction_session_timeout (the scheduler's, commands.FORWARDED; given at startup they
are sent to it once the session opens). The rest are kept per session and reported as set, as drivers expect
them to exist (DateStyle, TimeZone, search_path, work_mem, extra_float_digits ...); SQLite
has no use for them.

Startup: PostgreSQL applies every `-c name=value` and `--name=value` in the startup packet's
`options` (libpq's PGOPTIONS) as if SET at connection time, and refuses the connection
(FATAL) for an unknown name (42704), a bad value (22023), a setting that cannot be set by a
session (55P02), or an argument it does not understand (42601). `options` splits on spaces;
a backslash keeps the next character (`\\ ` a space, `\\\\` a backslash), as pg_split_opts does.
Names with a dot (`myapp.x`) are custom settings and accepted as strings, as PostgreSQL does.
"""
from __future__ import annotations

import dataclasses
import re
import zoneinfo

from sqld.common import sqlstate
from sqld.common.sqlstate import SqlError

TIME_UNITS = [("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000), ("ms", 1)]
MEMORY_UNITS = [("TB", 1024 ** 3), ("GB", 1024 ** 2), ("MB", 1024), ("kB", 1)]
_BOOL_TRUE = ("on", "true", "yes", "1", "t", "y")
_BOOL_FALSE = ("off", "false", "no", "0", "f", "n")


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    default: str
    vartype: str = "string"        # bool, integer, real, string, enum
    unit: str = ""                 # base unit of an integer: ms or kB
    min: int | None = None
    max: int | None = None
    enumvals: tuple[str, ...] = ()
    context: str = "user"          # user: SET and startup; internal: read only; superuser; postmaster
    category: str = "Client Connection Defaults / Statement Behavior"
    desc: str = ""


def _s(*args, **kw) -> Setting:
    return Setting(*args, **kw)


_CONN = "Client Connection Defaults / Locale and Formatting"
_NO_EFFECT = "Accepted for PostgreSQL clients; no effect on SQLite."
_PRESET = "Preset Options"
SETTINGS: dict[str, Setting] = {s.name: s for s in [
    _s("application_name", "", category="Reporting and Logging / What to Log",
       desc="Sets the application name to be reported in statistics and logs."),
    _s("bytea_output", "hex", "enum", enumvals=("escape", "hex"), desc="Sets the output format for bytea."),
    _s("client_encoding", "UTF8", category=_CONN, desc="Sets the client's character set encoding."),
    _s("client_min_messages", "notice", "enum",
       enumvals=("debug5", "debug4", "debug3", "debug2", "debug1", "log", "notice", "warning", "error"),
       desc="Sets the message levels that are sent to the client."),
    _s("DateStyle", "ISO, MDY", category=_CONN, desc="Sets the display format for date and time values."),
    _s("default_transaction_isolation", "serializable", "enum",
       enumvals=("serializable", "repeatable read", "read committed", "read uncommitted"),
       desc="Sets the transaction isolation level of each new transaction."),
    _s("default_transaction_read_only", "off", "bool",
       desc="Sets the default read-only status of new transactions."),
    _s("extra_float_digits", "1", "integer", min=-15, max=3, category=_CONN,
       desc="Sets the number of digits displayed for floating-point values."),
    _s("idle_in_transaction_session_timeout", "0", "integer", "ms", 0, 2_147_483_647,
       desc="Sets the maximum allowed idle time between queries, when in a transaction "
            "(at most the scheduler's --idle-in-transaction-timeout; 0: the scheduler's)."),
    _s("in_hot_standby", "off", "bool", context="internal", category=_PRESET,
       desc="Shows whether hot standby is currently active."),
    _s("integer_datetimes", "on", "bool", context="internal", category=_PRESET,
       desc="Shows whether datetimes are integer based."),
    _s("IntervalStyle", "postgres", "enum", enumvals=("postgres", "postgres_verbose", "sql_standard", "iso_8601"),
       category=_CONN, desc="Sets the display format for interval values."),
    _s("is_superuser", "off", "bool", context="internal", category=_PRESET,
       desc="Shows whether the current user is a superuser."),
    _s("lc_messages", "C", category=_CONN, desc="Sets the language in which messages are displayed."),
    _s("log_min_duration_statement", "-1", "integer", "ms", -1, 2_147_483_647, context="superuser",
       category="Reporting and Logging / When to Log",
       desc="Sets the minimum execution time above which statements will be logged (-1 off, 0 all)."),
    _s("lock_timeout", "0", "integer", "ms", 0, 2_147_483_647,
       desc="Sets the maximum allowed duration of any wait for a lock."),
    _s("max_identifier_length", "63", "integer", min=63, max=63, context="internal", category=_PRESET,
       desc="Shows the maximum identifier length."),
    _s("search_path", '"$user", public', desc="Sets the schema search order for names that are not schema-qualified."),
    _s("server_encoding", "UTF8", context="internal", category=_PRESET,
       desc="Shows the server (database) character set encoding."),
    _s("server_version", "15.0", context="internal", category=_PRESET, desc="Shows the server version."),
    _s("server_version_num", "150000", "integer", min=150000, max=150000, context="internal", category=_PRESET,
       desc="Shows the server version as an integer."),
    _s("session_authorization", "", context="superuser", desc="Sets the session user name."),
    _s("standard_conforming_strings", "on", "bool", category="Version and Platform Compatibility",
       desc="Causes '...' strings to treat backslashes literally."),
    _s("statement_timeout", "0", "integer", "ms", 0, 2_147_483_647,
       desc="Sets the maximum allowed duration of any statement."),
    _s("synchronous_commit", "on", "enum", enumvals=("local", "remote_write", "remote_apply", "on", "off"),
       category="Write-Ahead Log / Settings",
       desc="Sets the current transaction's synchronization level (remote_apply: a replica applied it)."),
    _s("TimeZone", "UTC", category=_CONN, desc="Sets the time zone for displaying and interpreting time stamps."),
    _s("transaction_isolation", "serializable", "enum",
       enumvals=("serializable", "repeatable read", "read committed", "read uncommitted"),
       desc="Sets the current transaction's isolation level."),
    _s("transaction_read_only", "off", "bool", desc="Sets the current transaction's read-only status."),
    _s("work_mem", "4MB", "integer", "kB", 64, 2_147_483_647, category="Resource Usage / Memory",
       desc="Sets the maximum memory to be used for query workspaces."),
    # PostgreSQL settings that clients set as a matter of course (pg_dump and its scripts, JDBC,
    # ORMs) and that mean nothing for SQLite: accepted, checked and shown, with no effect.
    _s("array_nulls", "on", "bool", category="Version and Platform Compatibility", desc=_NO_EFFECT),
    _s("check_function_bodies", "on", "bool", desc=_NO_EFFECT),
    _s("default_table_access_method", "heap", desc=_NO_EFFECT),
    _s("default_tablespace", "", desc=_NO_EFFECT),
    _s("enable_hashjoin", "on", "bool", category="Query Tuning / Planner Method Configuration", desc=_NO_EFFECT),
    _s("enable_indexscan", "on", "bool", category="Query Tuning / Planner Method Configuration", desc=_NO_EFFECT),
    _s("enable_mergejoin", "on", "bool", category="Query Tuning / Planner Method Configuration", desc=_NO_EFFECT),
    _s("enable_nestloop", "on", "bool", category="Query Tuning / Planner Method Configuration", desc=_NO_EFFECT),
    _s("enable_seqscan", "on", "bool", category="Query Tuning / Planner Method Configuration", desc=_NO_EFFECT),
    _s("escape_string_warning", "on", "bool", category="Version and Platform Compatibility", desc=_NO_EFFECT),
    _s("jit", "off", "bool", category="Query Tuning / Other Planner Options", desc=_NO_EFFECT),
    _s("maintenance_work_mem", "64MB", "integer", "kB", 1024, 2_147_483_647, category="Resource Usage / Memory",
       desc=_NO_EFFECT),
    _s("max_parallel_workers_per_gather", "0", "integer", min=0, max=1024,
       category="Resource Usage / Asynchronous Behavior", desc=_NO_EFFECT),
    _s("quote_all_identifiers", "off", "bool", category="Version and Platform Compatibility", desc=_NO_EFFECT),
    _s("row_security", "on", "bool", desc=_NO_EFFECT),
    _s("synchronize_seqscans", "on", "bool", category="Version and Platform Compatibility", desc=_NO_EFFECT),
    _s("temp_buffers", "8MB", "integer", "kB", 800, 2_147_483_647, category="Resource Usage / Memory",
       desc=_NO_EFFECT),
    _s("xmloption", "content", "enum", enumvals=("content", "document"), desc=_NO_EFFECT),
    _s("sqld.consistency", "read_your_writes", "enum", enumvals=("read_your_writes", "strong", "bounded_staleness"),
       category="sqld", desc="Where this session's reads may run at a site with a replica."),
    _s("sqld.max_staleness_ms", "0", "integer", min=0, max=2_147_483_647, category="sqld",
       desc="With bounded_staleness: the replica lag allowed (ms); 0 = the scheduler's default."),
    _s("sqld.begin_as_writer", "off", "bool", category="sqld",
       desc="Every transaction takes the writer token at its first statement (BEGIN IMMEDIATE)."),
    _s("sqld.statement_errors", "postgresql", "enum", enumvals=("postgresql", "sqlite"), category="sqld",
       desc="Whether an error fails the transaction (PostgreSQL's rule) or only the statement (SQLite's)."),
    _s("sqld.read_at", "", context="backend", category="sqld",
       desc="Time travel: a read-only session at a page-store version or time (at connection only)."),
    _s("sqld.sqlite_wire", "off", "bool", context="backend", category="sqld",
       desc="SQLite wire extensions (at connection only)."),
]}
CANON = {k.lower(): k for k in SETTINGS}
# postmaster settings a client may name but never change (PostgreSQL answers 55P02)
_SERVER_ONLY = {"shared_buffers", "max_connections", "port", "listen_addresses", "wal_level", "data_directory"}


def lookup(name: str) -> Setting | None:
    key = CANON.get(name.lower())
    return SETTINGS[key] if key else None


def _invalid(name: str, value: str, hint: str = "") -> SqlError:
    msg = f'invalid value for parameter "{name}": "{value}"'
    return SqlError(sqlstate.INVALID_PARAMETER_VALUE, msg + (f" ({hint})" if hint else ""))


def _base_value(s: Setting, value: str) -> int:
    """An integer setting's value in its base unit (ms, kB), from `5s`, `4MB`, `1234`."""
    m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", value)
    if m is None:
        raise _invalid(s.name, value)
    number, unit = float(m.group(1)), m.group(2)
    if unit:
        units = dict(TIME_UNITS if s.unit == "ms" else MEMORY_UNITS if s.unit == "kB" else [])
        if unit not in units:
            hint = ('Valid units for this parameter are "us", "ms", "s", "min", "h", and "d".' if s.unit == "ms"
                    else 'Valid units for this parameter are "B", "kB", "MB", "GB", and "TB".' if s.unit == "kB"
                    else "")
            raise _invalid(s.name, value, hint)
        number *= units[unit]
    base = round(number)
    if (s.min is not None and base < s.min) or (s.max is not None and base > s.max):
        raise SqlError(sqlstate.INVALID_PARAMETER_VALUE,
                       f'{base} is outside the valid range for parameter "{s.name}" ({s.min} .. {s.max})')
    return base


def display(s: Setting, base: int) -> str:
    """SHOW's form of an integer setting: in the largest unit that keeps the value whole."""
    if not s.unit or base == 0:
        return str(base)
    for unit, scale in (TIME_UNITS if s.unit == "ms" else MEMORY_UNITS):
        if base % scale == 0:
            return f"{base // scale}{unit}"
    return f"{base}{s.unit}"


def base_setting(s: Setting, shown: str) -> str:
    """pg_settings.setting: an integer in its base unit, anything else as SHOW shows it."""
    if s.vartype == "integer":
        try:
            return str(_base_value(s, shown))
        except SqlError:
            return shown
    return shown


_DATE_STYLES = {"iso": "ISO", "sql": "SQL", "postgres": "Postgres", "german": "German"}
_DATE_ORDERS = {"dmy": "DMY", "euro": "DMY", "european": "DMY", "mdy": "MDY", "us": "MDY", "noneuro": "MDY",
                "noneuropean": "MDY", "ymd": "YMD"}


def _datestyle(value: str, current: str) -> str:
    style, order = (p.strip() for p in (current.split(",") + ["MDY"])[:2])
    for word in (w.strip().lower() for w in value.split(",")):
        if word in _DATE_STYLES:
            style = _DATE_STYLES[word]
        elif word in _DATE_ORDERS:
            order = _DATE_ORDERS[word]
        elif word != "default":
            raise _invalid("DateStyle", value, f'Unrecognized key word: "{word}".')
    return f"{style}, {order}"


def _timezone(value: str) -> str:
    v = value.strip()
    if re.fullmatch(r"[+-]?\d{1,2}(:\d\d)?", v) or v.upper() in ("UTC", "GMT", "Z", "ZULU", "LOCAL"):
        return "UTC" if v.upper() in ("Z", "ZULU", "LOCAL") else v
    try:
        zoneinfo.ZoneInfo(v)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise _invalid("TimeZone", value, "an IANA time zone such as Europe/Paris, UTC, or an offset") from None
    return v


def check(name: str, value: str, current: str = "") -> tuple[str, str]:
    """(canonical name, value as SHOW shows it) for SET name = value; SqlError when PostgreSQL
    would refuse it: 42704 unknown, 22023 a bad value, 55P02 not settable by a session."""
    s = lookup(name)
    if s is None:
        if "." in name.strip(".") and re.fullmatch(r"[A-Za-z_][\w$]*(\.[A-Za-z_][\w$]*)+", name):
            return name.lower(), value  # a custom (placeholder) setting, as PostgreSQL accepts them
        if name.lower() in _SERVER_ONLY:
            raise SqlError(sqlstate.CANT_CHANGE_RUNTIME_PARAM,
                           f'parameter "{name}" cannot be changed without restarting the server')
        raise SqlError(sqlstate.UNDEFINED_OBJECT, f'unrecognized configuration parameter "{name}"')
    if s.context == "internal":
        raise SqlError(sqlstate.CANT_CHANGE_RUNTIME_PARAM, f'parameter "{s.name}" cannot be changed')
    if s.vartype == "bool":
        v = value.strip().lower()
        if v in _BOOL_TRUE or (len(v) > 1 and "on".startswith(v)) or (v and "true".startswith(v)):
            return s.name, "on"
        if v in _BOOL_FALSE or (len(v) > 1 and "off".startswith(v)) or (v and "false".startswith(v)):
            return s.name, "off"
        raise SqlError(sqlstate.INVALID_PARAMETER_VALUE, f'parameter "{s.name}" requires a Boolean value')
    if s.vartype == "integer":
        return s.name, display(s, _base_value(s, value))
    if s.vartype == "enum":
        v = value.strip().lower()
        if s.name == "synchronous_commit" and v in _BOOL_TRUE + _BOOL_FALSE:  # PostgreSQL's hidden spellings
            return s.name, "on" if v in _BOOL_TRUE else "off"
        if v not in s.enumvals:
            raise SqlError(sqlstate.INVALID_PARAMETER_VALUE, f'invalid value for parameter "{s.name}": "{value}"'
                           f' (available values: {", ".join(s.enumvals)})')
        return s.name, v
    if s.name == "client_encoding":
        if value.strip().upper().replace("-", "") not in ("UTF8", "UNICODE"):
            raise _invalid(s.name, value, "only UTF8 is supported")
        return s.name, "UTF8"
    if s.name == "DateStyle":
        return s.name, _datestyle(value, current or s.default)
    if s.name == "TimeZone":
        return s.name, _timezone(value)
    return s.name, value


def split_options(options: str) -> list[str]:
    """The startup packet's `options` split as PostgreSQL's pg_split_opts does."""
    out: list[str] = []
    word: list[str] = []
    chars = iter(options)
    started = False
    for c in chars:
        if c == "\\":
            word.append(next(chars, ""))
            started = True
        elif c.isspace():
            if started:
                out.append("".join(word))
            word, started = [], False
        else:
            word.append(c)
            started = True
    if started:
        out.append("".join(word))
    return out


def startup_options(options: str) -> list[tuple[str, str]]:
    """(name, value) for every -c name=value / --name=value in `options`, in order; SqlError
    (42601) for anything else, as the server refuses it."""
    words = split_options(options)
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "-c" and i + 1 < len(words):
            arg, i = words[i + 1], i + 2
        elif word.startswith("-c") and len(word) > 2:
            arg, i = word[2:], i + 1
        elif word.startswith("--") and len(word) > 2:
            arg, i = word[2:], i + 1
            name, eq, value = arg.partition("=")
            arg = name.replace("-", "_") + eq + value
        else:
            raise SqlError(sqlstate.SYNTAX_ERROR, f'invalid command-line argument for server process: {word}')
        name, eq, value = arg.partition("=")
        if not eq:
            raise SqlError(sqlstate.SYNTAX_ERROR, f'-c {arg} requires a value')
        out.append((name, value))
    return out


def startup_option(options: str, name: str) -> str | None:
    """The last value `options` gives setting `name` (read as startup_options reads it; None
    when it gives none, or is not one the server accepts: the connection refuses it anyway)."""
    try:
        found = [value for key, value in startup_options(options) if key.lower() == name]
    except SqlError:
        return None
    return found[-1] if found else None
