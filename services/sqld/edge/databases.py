"""CREATE DATABASE and DROP DATABASE: parsed here, done by the scheduler's DatabaseAdmin.

PostgreSQL's syntax, the parts that mean something here:

    CREATE DATABASE name [ [ WITH ] [ TEMPLATE [=] template ] [ OWNER [=] role ]
                                    [ ENCODING [=] 'UTF8' ]
                                    [ AS_OF_TIME [=] 'iso time' | AS_OF_FRAME [=] n ] ]
    DROP DATABASE [ IF EXISTS ] name [ [ WITH ] ( FORCE ) ]

`TEMPLATE x` forks x (a consistent snapshot of it, while it keeps taking writes); template0
and template1 mean a new, empty database, as they do in PostgreSQL. AS_OF_TIME / AS_OF_FRAME
(ours) make it a point-in-time restore of x: as of its last commit at or before that time
(ISO 8601, UTC unless an offset is given) or frame number, from the replication log. OWNER is accepted (there
is one role); ENCODING must be UTF8; other options are refused (0A000). Names are
identifiers (unquoted ones fold to lower case) checked by common.dbnames. Neither runs
inside a transaction block (25001), and a session cannot drop its own database (55006).
"""
from __future__ import annotations

import re

import grpc

from sqld.common import dbnames, errors, sqlstate
from sqld.common.sqlstate import SqlError
from sqld.edge import timetravel
from sqld.edge.commands import LocalResult
from sqld.v1 import admin_pb2, admin_pb2_grpc

HEAD = re.compile(r"\s*(CREATE|DROP)\s+DATABASE\b", re.IGNORECASE)
_TOKEN = re.compile(r'\s*("(?:[^"]|"")*"|\'(?:[^\']|\'\')*\'|[A-Za-z_][A-Za-z0-9_$]*|\d+|[^\sA-Za-z0-9_"\']+?)',
                    re.DOTALL)
EMPTY_TEMPLATES = ("template0", "template1")
TIMEOUT = 120.0


def is_database_command(sql: str) -> bool:
    return HEAD.match(sql) is not None


def _tokens(sql: str) -> list[str]:
    out, pos, text = [], 0, sql.strip().rstrip(";").rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            break
        out.append(m.group(1))
        pos = m.end()
    return out


def _ident(token: str | None) -> str:
    if token is None:
        raise SqlError(sqlstate.SYNTAX_ERROR, "syntax error at end of input: a database name is missing")
    if token.startswith('"'):
        name = token[1:-1].replace('""', '"')
    elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", token):
        name = token.lower()
    else:
        raise SqlError(sqlstate.SYNTAX_ERROR, f'syntax error at or near "{token}"')
    return dbnames.check(name)


def parse_create(sql: str) -> admin_pb2.CreateDatabaseRequest:
    tokens = _tokens(sql)[2:]
    name = _ident(tokens[0] if tokens else None)
    rest = tokens[1:]
    if rest and rest[0].upper() == "WITH":
        rest = rest[1:]
    template = ""
    as_of_frame_no, as_of_unix_ms = 0, 0
    while rest:
        option = rest[0].upper()
        if option == "CONNECTION" and len(rest) > 1 and rest[1].upper() == "LIMIT":
            option, rest = "CONNECTION LIMIT", rest[1:]
        rest = rest[1:]
        if rest and rest[0] == "=":
            rest = rest[1:]
        if not rest:
            raise SqlError(sqlstate.SYNTAX_ERROR, f"syntax error at end of input: {option} needs a value")
        value, rest = rest[0], rest[1:]
        if option == "TEMPLATE":
            template = _ident(value)
        elif option == "OWNER":
            pass  # accepted and ignored: the server has one role, so a database has no owner to record
        elif option == "AS_OF_FRAME":
            if not value.strip("'").isdigit() or int(value.strip("'")) == 0:
                raise SqlError(sqlstate.INVALID_PARAMETER_VALUE, f"AS_OF_FRAME {value}: give a frame number (1 or more)")
            as_of_frame_no = int(value.strip("'"))
        elif option == "AS_OF_TIME":
            try:
                at = timetravel.parse(value)
            except ValueError:
                at = None
            if at is None or not at.unix_ms:
                raise SqlError(sqlstate.INVALID_PARAMETER_VALUE, f"AS_OF_TIME {value}: give an ISO 8601 time "
                               "such as '2026-11-25T14:00:00.250Z'")
            as_of_unix_ms = at.unix_ms
        elif option == "ENCODING":
            if value.strip("'").upper().replace("-", "") not in ("UTF8", "UNICODE"):
                raise SqlError(sqlstate.FEATURE_NOT_SUPPORTED, f"encoding {value} is not supported: databases are UTF8")
        else:
            raise SqlError(sqlstate.FEATURE_NOT_SUPPORTED, f"CREATE DATABASE option {option} is not supported "
                           "(supported: TEMPLATE, OWNER, ENCODING 'UTF8', AS_OF_TIME, AS_OF_FRAME)")
    if template in EMPTY_TEMPLATES:
        template = ""
    if (as_of_frame_no or as_of_unix_ms) and not template:
        raise SqlError(sqlstate.INVALID_PARAMETER_VALUE, "AS_OF_TIME / AS_OF_FRAME restore a TEMPLATE database: name it")
    return admin_pb2.CreateDatabaseRequest(name=name, template=template, as_of_frame_no=as_of_frame_no,
                                           as_of_unix_ms=as_of_unix_ms)


def parse_drop(sql: str) -> admin_pb2.DropDatabaseRequest:
    tokens = _tokens(sql)[2:]
    if_exists = len(tokens) >= 2 and tokens[0].upper() == "IF" and tokens[1].upper() == "EXISTS"
    if if_exists:
        tokens = tokens[2:]
    name = _ident(tokens[0] if tokens else None)
    rest = [t.upper() for t in tokens[1:]]
    if rest and rest[0] == "WITH":
        rest = rest[1:]
    force = False
    if rest:
        if rest[0] != "(" or rest[-1] != ")":
            raise SqlError(sqlstate.SYNTAX_ERROR, f'syntax error at or near "{tokens[1]}"')
        for option in " ".join(rest[1:-1]).split(","):
            if option.strip() == "FORCE":
                force = True
            elif option.strip():
                raise SqlError(sqlstate.SYNTAX_ERROR, f'unrecognized DROP DATABASE option "{option.strip().lower()}"')
    return admin_pb2.DropDatabaseRequest(name=name, if_exists=if_exists, force=force)


async def run(admin: admin_pb2_grpc.DatabaseAdminStub, sql: str, current: str, idle: bool) -> LocalResult:
    """Do the CREATE or DROP DATABASE in `sql` for a session on database `current`."""
    create = HEAD.match(sql).group(1).upper() == "CREATE"  # type: ignore[union-attr]
    tag = "CREATE DATABASE" if create else "DROP DATABASE"
    try:
        if not idle:
            raise SqlError(sqlstate.ACTIVE_SQL_TRANSACTION, f"{tag} cannot run inside a transaction block")
        if create:
            response = await admin.CreateDatabase(parse_create(sql), timeout=TIMEOUT)
        else:
            request = parse_drop(sql)
            if request.name == current:
                raise SqlError(sqlstate.OBJECT_IN_USE, "cannot drop the currently open database")
            response = await admin.DropDatabase(request, timeout=TIMEOUT)
    except SqlError as exc:
        return LocalResult(tag, error=exc)
    except grpc.aio.AioRpcError as exc:
        return LocalResult(tag, error=SqlError(errors.BY_STATUS.get(exc.code(), sqlstate.INTERNAL_ERROR),
                                               f"{tag}: {exc.details()}"))
    notices = [(n.sqlstate or "00000", n.message) for n in response.notices]
    if response.HasField("error"):
        return LocalResult(tag, notices=notices, error=SqlError.from_proto(response.error))
    return LocalResult(tag, notices=notices)
