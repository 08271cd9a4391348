"""Cursor and Row with sqlite3's semantics over one psycopg RawCursor per statement.

A statement runs with the connection's implicit BEGIN (sqlite3's legacy transaction control),
its placeholders rewritten to `$n` (_sqltext), its parameters adapted as sqlite3 would (_types).
Values come back as SQLite storage classes; text goes through the connection's text_factory;
PARSE_COLNAMES converters apply; row_factory shapes each row.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from . import _errors, _sqltext, _types

if TYPE_CHECKING:
    from ._connection import Connection

PARSE_DECLTYPES = 1
PARSE_COLNAMES = 2
_DECLTYPES = "sqld.decltypes"  # ParameterStatus of the server's SQLite wire extension


def bind(names: tuple[str | None, ...], params: Any) -> list[Any]:
    """sqlite3's binding rules: a sequence by position, a mapping by name (without its prefix);
    the values in SQLite's parameter order (`names`: _sqltext.placeholders)."""
    count = len(names)
    if isinstance(params, Mapping) or (hasattr(params, "keys") and hasattr(params, "__getitem__")
                                       and not isinstance(params, (list, tuple))):
        values = []
        for i, name in enumerate(names, 1):
            if name is None:
                raise _errors.ProgrammingError(
                    f"Binding {i} has no name, but you supplied a dictionary (which has only names).")
            try:
                value = params[name[1:]]
            except KeyError:
                raise _errors.ProgrammingError(
                    f"You did not supply a value for binding parameter {name}.") from None
            values.append(_types.bind_value(value, i))
        return values
    if isinstance(params, (str, bytes)) or not isinstance(params, Sequence):
        try:
            params = list(params)
        except TypeError:
            raise _errors.ProgrammingError("parameters are of unsupported type") from None
    if len(params) != count:
        raise _errors.ProgrammingError(
            f"Incorrect number of bindings supplied. The current statement uses {count}, "
            f"and there are {len(params)} supplied.")
    return [_types.bind_value(v, i) for i, v in enumerate(params, 1)]


class Row:
    """sqlite3.Row: a tuple indexed by position or by column name (any case)."""

    __slots__ = ("_names", "_values")

    def __init__(self, cursor: Cursor, data: tuple[Any, ...]) -> None:
        if not isinstance(cursor, Cursor):
            raise TypeError("Row() argument 1 must be a Cursor")
        self._names = tuple(d[0] for d in cursor.description or ())
        self._values = tuple(data)

    def keys(self) -> list[str]:
        return list(self._names)

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            low = key.lower()
            for name, value in zip(self._names, self._values):
                if name.lower() == low:
                    return value
            raise IndexError("No item with that key")
        return self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Row) and self._names == other._names and self._values == other._values

    def __hash__(self) -> int:
        return hash(self._names) ^ hash(self._values)

    def __repr__(self) -> str:
        return f"<sqldclient.Row object at {id(self):#x}>"


class Cursor:
    def __init__(self, connection: Connection) -> None:
        from ._connection import Connection
        if not isinstance(connection, Connection):
            raise TypeError("Cursor() argument 1 must be a sqldclient Connection")
        self.connection = connection
        self.arraysize = 1
        self.row_factory: Any = None  # Connection.cursor() copies the connection's, as sqlite3 does
        self.description: tuple[tuple[Any, ...], ...] | None = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self._rows: list[tuple[Any, ...]] = []
        self._pos = 0
        self._converters: list[Any] = []
        self._closed = False

    # the state checks sqlite3 makes before every call
    def _check(self) -> None:
        self.connection._check()
        if self._closed:
            raise _errors.ProgrammingError("Cannot operate on a closed cursor.")

    def close(self) -> None:
        self.connection._check_thread()
        self._closed = True
        self._rows = []

    def setinputsizes(self, sizes: Any) -> None:
        pass

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        pass

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor:
        self._check()
        self._run(sql, [parameters], many=False)
        return self

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> Cursor:
        self._check()
        self._run(sql, seq_of_parameters, many=True)
        return self

    def executescript(self, sql_script: str, /) -> Cursor:
        self._check()
        if not isinstance(sql_script, str):
            raise ValueError("script argument must be unicode.")
        conn = self.connection
        if conn.isolation_level is not None and conn.in_transaction:
            conn.commit()  # sqlite3 commits a pending transaction before a script
        self._reset()
        # One statement at a time, as sqlite3 steps them: a failing statement stops the script
        # and leaves the ones before it done (one Query would run them in one implicit transaction).
        with conn._check().cursor() as raw:
            for statement in _sqltext.split_statements(sql_script):
                try:
                    raw.execute(statement.encode(), prepare=False)
                except psycopg.Error as exc:
                    raise _errors.translate(exc) from exc
        return self

    def _reset(self) -> None:
        self.description = None
        self.rowcount = -1
        self._rows, self._pos, self._converters = [], 0, []

    def _run(self, sql: str, seq: Iterable[Any], many: bool) -> None:
        if not isinstance(sql, str):
            raise TypeError(f"execute() argument 1 must be str, not {type(sql).__name__}")
        text = _sqltext.analyze(sql)
        if text.several:
            raise _errors.ProgrammingError("You can only execute one statement at a time.")
        conn = self.connection
        self._reset()
        ph, dml, verb = text.placeholders, text.dml, text.verb
        if many and verb == "SELECT":
            raise _errors.ProgrammingError("executemany() can only execute DML statements.")
        if conn._replica is not None and not many and not dml:
            params = next(iter(seq))
            local = conn._read_locally(sql, ph, bind(ph, params))
            if local is not None:  # an embedded replica answered (_connection._read_locally)
                description, self._rows = local
                self.description = tuple(tuple(d) for d in description) if description else None
                self._converters = []
                self.lastrowid = conn._last_rowid
                return
            seq = [params]
        if dml and conn.isolation_level is not None and not conn.in_transaction:
            conn._begin()
        total = 0
        raw = psycopg.RawCursor(conn._check())
        try:
            for params in seq:
                values = bind(ph, params)
                try:
                    raw.execute(sql.encode(), values if ph else None)
                except psycopg.Error as exc:
                    raise _errors.translate(exc) from exc
                if dml:
                    changed = max(raw.rowcount, 0)
                    total += changed
                    tag = raw.statusmessage or ""
                    if changed and tag.startswith("INSERT "):  # INSERT <last_insert_rowid> <rows>
                        conn._last_rowid = int(tag.split()[1])
            if raw.description is not None and not many:
                self._take_result(raw)
        finally:
            raw.close()
        if dml:
            self.rowcount = total
        if not many:
            self.lastrowid = conn._last_rowid

    def _take_result(self, raw: psycopg.RawCursor[Any]) -> None:
        conn = self.connection
        names = []
        self._converters = []
        decltypes: list[str | None] = []
        if conn._detect_types & PARSE_DECLTYPES:  # the server's sqld.decltypes, sent before the columns
            decltypes = json.loads(conn._check().info.parameter_status(_DECLTYPES) or "[]")
        for i, col in enumerate(raw.description or ()):
            name = col.name
            conv = None
            if conn._detect_types & PARSE_COLNAMES and "[" in name:
                start = name.index("[")
                end = name.find("]", start)
                if end > start:
                    conv = _types.converters.get(name[start + 1:end].split(" ")[0].upper())
                name = name[:start].rstrip() if name[:start].endswith(" ") else name[:start]
            if conv is None and i < len(decltypes) and decltypes[i]:
                # sqlite3: the declared type up to its first space or parenthesis
                conv = _types.converters.get(re.split(r"[ (]", decltypes[i] or "", maxsplit=1)[0].upper())
            names.append(name)
            self._converters.append(conv)
        self.description = tuple((n, None, None, None, None, None, None) for n in names)
        self._rows = raw.fetchall()
        self._pos = 0

    def _shape(self, row: tuple[Any, ...]) -> Any:
        conn = self.connection
        tf = conn.text_factory
        values = []
        for value, conv in zip(row, self._converters or [None] * len(row)):
            if conv is not None and value is not None:
                value = conv(_types.as_bytes(value))
            elif isinstance(value, _types.RawText):
                value = value.decode() if tf is str else tf(bytes(value))
            values.append(value)
        out = tuple(values)
        return self.row_factory(self, out) if self.row_factory is not None else out

    def fetchone(self) -> Any:
        self._check()
        if self._pos >= len(self._rows):
            return None
        row = self._rows[self._pos]
        self._pos += 1
        return self._shape(row)

    def fetchmany(self, size: int | None = None) -> list[Any]:
        self._check()
        n = self.arraysize if size is None else size
        out = []
        while n > 0:
            row = self.fetchone()
            if row is None:
                break
            out.append(row)
            n -= 1
        return out

    def fetchall(self) -> list[Any]:
        self._check()
        out = []
        while (row := self.fetchone()) is not None:
            out.append(row)
        return out

    def __iter__(self) -> Cursor:
        return self

    def __next__(self) -> Any:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

