"""A prepared statement (extended protocol Parse): the client's text, what it is, what runs.

Kept by the session (session.statements), so DEALLOCATE and DISCARD can drop them wherever
they arrive, and used by the extended-query handler.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqld.common.statement import Classified, classify
from sqld.edge import types
from sqld.edge.dispatch import Route
from sqld.edge.sqlrewrite import Rewritten
from sqld.v1 import common_pb2


@dataclass
class Prepared:
    sql: str                       # as the client wrote it
    rewritten: Rewritten
    param_oids: list[int]          # from Parse; 0 = let the server decide
    route: Route = Route.REMOTE
    classified: Classified = classify("")  # of what runs (a DECLARE's query)
    empty: bool = False
    cursor: tuple[str, bool] | None = None  # DECLARE: (name, WITH HOLD)
    description: common_pb2.StatementDescription | None = None
    row_oids: list[int] | None = None  # what a Describe S told the client

    @property
    def local(self) -> bool:
        return self.route is Route.LOCAL

    def statement(self, params: list[common_pb2.Value] | None = None) -> common_pb2.Statement:
        """The statement the scheduler runs, with its kind."""
        return common_pb2.Statement(sql=self.rewritten.sql, params=params, kind=self.classified.kind)

    def param_oid(self, i: int) -> int:
        if i < len(self.param_oids) and self.param_oids[i]:
            return self.param_oids[i]
        if self.description is not None and i < len(self.description.parameters):
            decl = self.description.parameters[i].decltype
            if not decl:
                return types.TEXT  # nothing says otherwise: text, as PostgreSQL's unknown
            oid = types.affinity_oid(decl)
            return types.BYTEA if oid is None else oid
        return 0

    def resolve_hint(self, hint: str) -> str:
        """A column hint `?N` (the column is parameter N) as the parameter's type name."""
        if hint.startswith("?"):
            return _TYPE_NAMES.get(self.param_oid(int(hint[1:]) - 1), "")
        return hint


_TYPE_NAMES = {types.INT8: "INTEGER", 23: "INTEGER", 21: "INTEGER", types.FLOAT8: "REAL", 700: "REAL",
               types.TEXT: "TEXT", types.VARCHAR: "TEXT", types.BYTEA: "BLOB", types.NUMERIC: "NUMERIC",
               types.BOOL: "BOOLEAN"}
