"""Session commands the edge answers itself: SET/RESET/SHOW, version(), current_setting() ...

PostgreSQL clients send these on connect and on pool resets; SQLite has no notion of
them. Settings live per client connection. A statement that is not one of these goes to
the scheduler.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

import apsw

from sqld.common import sqlstate
from sqld.common.sqlstate import SqlError
from sqld.edge import guc

VERSION = f"PostgreSQL 15.0 (sqld-py, SQLite {apsw.sqlite_lib_version()}) on x86_64-pc-linux-gnu, 64-bit"

# Defaults (guc.SETTINGS); those in REPORTED are sent as ParameterStatus at startup and when changed.
DEFAULTS = {name: st.default for name, st in guc.SETTINGS.items()}
REPORTED = ["application_name", "client_encoding", "DateStyle", "default_transaction_read_only", "in_hot_standby",
            "integer_datetimes", "IntervalStyle", "is_superuser", "server_encoding", "server_version",
            "session_authorization", "standard_conforming_strings", "TimeZone"]
_ALIASES = {"transaction isolation level": "transaction_isolation", "time zone": "TimeZone"}
_NOT_STARTUP = {"user", "database", "options", "replication"}


@dataclass
class LocalResult:
    """A result the edge produced itself."""
    tag: str
    columns: list[str] = field(default_factory=list)
    rows: list[list[str | None]] = field(default_factory=list)
    notices: list[tuple[str, str]] = field(default_factory=list)
    changed: list[tuple[str, str]] = field(default_factory=list)  # ParameterStatus to report
    error: SqlError | None = None


class Settings:
    def __init__(self, user: str, startup: dict[str, str], server: dict[str, str] | None = None,
                 superuser: bool = True) -> None:
        """`server`: the server's defaults that differ from PostgreSQL's (edge flags such as
        --statement-timeout); the startup packet's parameters, then its `options` (-c name=value,
        guc.startup_options), then SET, override them; RESET returns to the startup values.
        SqlError when the startup packet asks for what PostgreSQL refuses at connection
        (the connection answers it with FATAL)."""
        self.values = dict(DEFAULTS)
        self.sources = {k: "default" for k in self.values}
        for k, v in (server or {}).items():
            self.values[k], self.sources[k] = v, "command line"
        self.values["session_authorization"] = user
        self.values["is_superuser"] = "on" if superuser else "off"
        self.superuser = superuser
        for k, v in startup.items():
            st = guc.lookup(k)
            if k in _NOT_STARTUP or st is None or st.context == "internal" or st.name == "client_encoding":
                continue  # what drivers send beyond the settings we know is ignored; the encoding is UTF8
            self._apply(k, v, "client")
        for k, v in guc.startup_options(startup.get("options", "")):
            self._apply(k, v, "client")
        self.values["client_encoding"] = "UTF8"
        self.reset_values = dict(self.values)  # what RESET returns to: defaults + startup packet
        self.reset_sources = dict(self.sources)

    def _apply(self, name: str, value: str, source: str) -> None:
        key, shown = guc.check(name, value, self.values.get(guc.CANON.get(name.lower(), name), ""))
        if key == "session_authorization" and not self.superuser and shown != self.values[key]:
            raise SqlError(sqlstate.INSUFFICIENT_PRIVILEGE, "permission denied to set session authorization")
        st = guc.lookup(key)
        if st is not None and st.context == "superuser" and not self.superuser and key != "session_authorization" \
                and shown != self.values.get(key):
            raise SqlError(sqlstate.INSUFFICIENT_PRIVILEGE, f'permission denied to set parameter "{key}"')
        self.values[key], self.sources[key] = shown, source

    def copy(self) -> Settings:
        """A throwaway copy, to learn what a statement would do without doing it."""
        other = Settings.__new__(Settings)
        other.values = dict(self.values)
        other.sources = dict(self.sources)
        other.superuser = self.superuser
        other.reset_values = self.reset_values
        other.reset_sources = self.reset_sources
        return other

    def _key(self, name: str) -> str:
        key = _ALIASES.get(name.lower(), name)
        return guc.CANON.get(key.lower(), key.lower())

    def get(self, name: str) -> str | None:
        return self.values.get(self._key(name))

    def set(self, name: str, value: str | None) -> list[tuple[str, str]]:
        """SET (RESET with None); SqlError as PostgreSQL refuses it (42704, 22023, 55P02)."""
        key = self._key(name)
        if value is None:
            if key not in self.reset_values and guc.lookup(key) is None and "." not in key:
                raise SqlError(sqlstate.UNDEFINED_OBJECT, f'unrecognized configuration parameter "{name}"')
            self.values[key] = self.reset_values.get(key, "")
            self.sources[key] = self.reset_sources.get(key, "default")
        else:
            self._apply(key if guc.lookup(key) else name, value, "session")
            key = self._key(name)
        return [(key, self.values[key])] if key in REPORTED else []

    def log_min_duration_ms(self) -> int:
        return _milliseconds("log_min_duration_statement", self.values.get("log_min_duration_statement", "-1"))

    def statement_timeout_s(self) -> float:
        return _seconds(self.values.get("statement_timeout", "0"))

    def show_all(self) -> list[list[str | None]]:
        """SHOW ALL's rows: name, setting, description; sorted by name as PostgreSQL sorts them."""
        return [[k, v, st.desc if (st := guc.lookup(k)) else ""] for k, v in self._sorted()]

    def _sorted(self) -> list[tuple[str, str]]:
        return sorted(self.values.items(), key=lambda kv: kv[0].lower())

    def pg_settings(self) -> list[list]:
        """pg_settings' rows (catalog/live.py), one per setting, in SHOW ALL's order."""
        rows: list[list] = []
        for name, shown in self._sorted():
            st = guc.lookup(name) or guc.Setting(name, "", category="Customized Options")
            rows.append([name, guc.base_setting(st, shown or ""), st.unit or None, st.category, st.desc, None,
                         st.context, st.vartype, self.sources.get(name, "session"),
                         None if st.min is None else str(st.min), None if st.max is None else str(st.max),
                         "{" + ",".join(f'"{e}"' if " " in e else e for e in st.enumvals) + "}" if st.enumvals else None,
                         guc.base_setting(st, st.default),
                         guc.base_setting(st, self.reset_values.get(name, st.default) or ""), None, None, False])
        return rows


@functools.lru_cache(maxsize=64)
def _milliseconds(name: str, shown: str) -> int:
    """An integer setting in ms as SHOW shows it ("250ms", "1s", "-1") in ms."""
    st = guc.lookup(name)
    try:
        return guc._base_value(st, shown) if st is not None else -1
    except SqlError:
        return -1


@functools.lru_cache(maxsize=64)
def _seconds(setting: str) -> float:
    """A duration setting (milliseconds unless a unit says otherwise) in seconds; 0 if unreadable."""
    m = re.match(r"^(\d+(?:\.\d+)?)\s*(ms|s|min|h|d)?$", setting.strip().lower())
    if not m:
        return 0.0
    scale = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, None: 0.001}[m.group(2)]
    return float(m.group(1)) * scale


# Settings the scheduler owns (replica routing, synchronous commit): SET goes to the scheduler,
# and the edge keeps a copy for SHOW once the scheduler accepted it.
FORWARDED = {"synchronous_commit", "sqld.consistency", "sqld.max_staleness_ms", "sqld.begin_as_writer",
             "sqld.statement_errors", "idle_in_transaction_session_timeout"}

_SET = re.compile(r"^SET\s+(?:SESSION\s+|LOCAL\s+)?(?P<name>TIME\s+ZONE|[A-Za-z_][\w.]*)\s*(?:TO|=)?\s*(?P<value>.*?)\s*;?\s*$", re.I | re.S)
_RESET = re.compile(r"^RESET\s+(?P<name>ALL|[A-Za-z_][\w.]*)\s*;?\s*$", re.I)
_SHOW = re.compile(r"^SHOW\s+(?P<name>ALL|TRANSACTION\s+ISOLATION\s+LEVEL|TIME\s+ZONE|[A-Za-z_][\w.]*)\s*;?\s*$", re.I)
_SELECT_FN = re.compile(r"^SELECT\s+(?:pg_catalog\.)?(?P<fn>version|current_schema|current_database|current_user|session_user|pg_advisory_unlock_all|current_setting|set_config)\s*\((?P<args>[^()]*)\)\s*(?:AS\s+(?P<alias>\w+))?\s*;?\s*$", re.I | re.S)
_NOOP = re.compile(r"^(LOCK\s+(?:TABLE\s+)?[^;]*|ALTER\s+(?:TABLE|VIEW|INDEX|SCHEMA|SEQUENCE)\s+(?:ONLY\s+)?[\w.\"]+\s+OWNER\s+TO\s+[\w\"]+|DEALLOCATE\s+(?:PREPARE\s+)?(?:ALL|\"?[\w$]+\"?)|CLOSE\s+ALL|UNLISTEN\s+\*|LISTEN\s+\w+|UNLISTEN\s+\w+|DISCARD\s+(ALL|PLANS|SEQUENCES|TEMP|TEMPORARY)|SET\s+TRANSACTION\s+.*|SET\s+SESSION\s+CHARACTERISTICS\s+.*)\s*;?\s*$", re.I | re.S)


def _unquote(v: str) -> str:
    v = v.strip()
    if len(v) >= 2 and v[0] == v[-1] == "'":
        return v[1:-1].replace("''", "'")
    return v


def _args(raw: str) -> list[str]:
    return [_unquote(a) for a in re.findall(r"'(?:[^']|'')*'|[^,\s]+", raw)]


def local(sql: str, settings: Settings, database: str, pid: int) -> LocalResult | None:
    """The edge's own answer to `sql`, or None when the scheduler must run it."""
    s = sql.strip()
    head = s[:12].upper()
    if head.startswith("SET"):
        if _NOOP.match(s):
            return LocalResult("SET")
        m = _SET.match(s)
        if m and m.group("name").lower() in FORWARDED:
            if m.group("value").upper() != "DEFAULT":
                try:  # checked against its bounds here, as every other setting is, before the scheduler has it
                    guc.check(m.group("name"), _unquote(m.group("value")))
                except SqlError as exc:
                    return LocalResult("SET", error=exc)
            return None
        if m and m.group("name").lower() in ("sqld.read_at", "sqld.sqlite_wire"):
            name = m.group("name").lower()
            example = "<version or ISO time>" if name == "sqld.read_at" else "on"
            return LocalResult("SET", error=SqlError(sqlstate.FEATURE_NOT_SUPPORTED,
                                                     f"{name} can only be given when connecting: "
                                                     f"PGOPTIONS='-c {name}={example}'"))
        if m:
            value = m.group("value")
            try:
                changed = settings.set(m.group("name"), None if value.upper() == "DEFAULT" else
                                       ", ".join(_unquote(p) for p in re.findall(r"'(?:[^']|'')*'|[^,]+", value)))
            except SqlError as exc:
                return LocalResult("SET", error=exc)
            return LocalResult("SET", changed=changed)
    if head.startswith("RESET"):
        m = _RESET.match(s)
        if m:
            if m.group("name").upper() == "ALL":
                changed = []
                for k in list(settings.values):
                    if settings.values[k] != settings.reset_values.get(k):
                        changed += settings.set(k, None)
                return LocalResult("RESET", changed=changed)
            try:
                return LocalResult("RESET", changed=settings.set(m.group("name"), None))
            except SqlError as exc:
                return LocalResult("RESET", error=exc)
    if head.startswith("SHOW"):
        m = _SHOW.match(s)
        if m:
            name = " ".join(m.group("name").split())
            if name.upper() == "ALL":
                return LocalResult("SHOW", ["name", "setting", "description"], settings.show_all())
            value = settings.get(name)
            if value is None:
                return LocalResult("SHOW", error=SqlError(sqlstate.UNDEFINED_OBJECT,
                                                         f'unrecognized configuration parameter "{name}"'))
            col = _ALIASES.get(name.lower(), name).lower()
            return LocalResult("SHOW", [col], [[value]])
    if _NOOP.match(s):
        word = s.split()[0].upper()
        tag = {"CLOSE": "CLOSE CURSOR ALL", "DISCARD": "DISCARD ALL", "LOCK": "LOCK TABLE"}.get(word, word)
        if word == "ALTER":  # ALTER ... OWNER TO: one owner here (pg_dump scripts say it for every object)
            tag = "ALTER " + s.split()[1].upper()
        if word == "DEALLOCATE" and s.split()[-1].rstrip(";").upper() == "ALL":
            tag = "DEALLOCATE ALL"
        return LocalResult(tag)
    if head.startswith("SELECT"):
        m = _SELECT_FN.match(s)
        if m:
            return _function(m.group("fn").lower(), _args(m.group("args")), m.group("alias"), settings, database, pid)
    return None


def _function(fn: str, args: list[str], alias: str | None, settings: Settings, database: str, pid: int
              ) -> LocalResult:
    def one(value: str | None) -> LocalResult:
        return LocalResult("SELECT 1", [alias or fn], [[value]])

    if fn == "version":
        return one(VERSION)
    if fn == "current_schema":
        return one("public")
    if fn == "current_database":
        return one(database)
    if fn in ("current_user", "session_user"):
        return one(settings.values["session_authorization"])
    if fn == "pg_advisory_unlock_all":
        return one("")
    if fn == "current_setting" and args:
        value = settings.get(args[0])
        if value is None:
            if len(args) > 1 and args[1].lower() in ("true", "t"):
                return one(None)
            return LocalResult("SELECT", error=SqlError(sqlstate.UNDEFINED_OBJECT,
                                                           f'unrecognized configuration parameter "{args[0]}"'))
        return one(value)
    if fn == "set_config" and len(args) >= 2:
        try:
            changed = settings.set(args[0], args[1])
        except SqlError as exc:
            return LocalResult("SELECT", error=exc)
        result = one(settings.get(args[0]))
        result.changed = changed
        return result
    return LocalResult("SELECT", error=SqlError(sqlstate.UNDEFINED_FUNCTION,
                                                f"function {fn}({', '.join(args)}) is not supported here"))


def remember_forwarded(sql: str, settings: Settings) -> None:
    """After the scheduler accepted a SET of one of its settings, keep the value for SHOW."""
    m = _SET.match(sql.strip())
    if m and m.group("name").lower() in FORWARDED:
        name, value = m.group("name").lower(), _unquote(m.group("value"))
        try:
            name, value = guc.check(name, value)
        except SqlError:
            pass  # the scheduler accepted it: keep it as written
        settings.values[name], settings.sources[name] = value, "session"


def forwarded_at_startup(settings: Settings) -> list[str]:
    """SET statements for the scheduler's settings the startup packet gave (its options or
    parameters), sent once the session opens so they take effect as PostgreSQL's would."""
    return [f"SET {name} = '{settings.values[name]}'" for name in sorted(FORWARDED)
            if settings.sources.get(name) == "client"]
