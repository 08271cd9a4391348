"""Who answers a statement: the edge itself, or the scheduler. Decided once, where it enters.

The simple Query handler routes each statement of a query, the extended handler each Parse.
Settings and session functions (SET, SHOW, version(), ...) are answered by the edge
(commands.py), SQL cursors (DECLARE, FETCH/MOVE, CLOSE) are kept by it (cursors.py), COPY
is driven by it (copy.py), CREATE/DROP DATABASE go to the scheduler's DatabaseAdmin
(databases.py); everything else goes to the scheduler.
"""
from __future__ import annotations

import enum

from sqld.common.sqltext import per_text
from sqld.edge import commands, cursors, databases


class Route(enum.Enum):
    LOCAL = enum.auto()    # answered by the edge (commands.local)
    DECLARE = enum.auto()  # DECLARE ... CURSOR FOR query: the query runs now, its rows kept
    FETCH = enum.auto()    # FETCH / MOVE on a cursor
    CLOSE = enum.auto()    # CLOSE a cursor (CLOSE ALL is LOCAL)
    COPY = enum.auto()     # COPY ... FROM STDIN / TO STDOUT
    DATABASE = enum.auto()  # CREATE / DROP DATABASE (databases.py, the scheduler's DatabaseAdmin)
    REMOTE = enum.auto()   # the scheduler runs it


_ANY_SETTINGS = commands.Settings("", {})  # commands.local answers or not whatever the settings


@per_text
def route(sql: str) -> Route:
    """How the edge handles one statement (already split). A pure function of the text, so
    remembered per text: whether the edge answers a statement never depends on the settings
    (commands.local answers or refuses by the statement's form), only what it answers does."""
    stripped = sql.strip()
    head = stripped[:8].upper()
    if head.startswith("DECLARE") and cursors.DECLARE.match(stripped):
        return Route.DECLARE
    if (head.startswith("FETCH") or head.startswith("MOVE")) and cursors.FETCH.match(stripped):
        return Route.FETCH
    if head.startswith("CLOSE") and cursors.CLOSE.match(stripped) and not head.startswith("CLOSE AL"):
        return Route.CLOSE
    if head.startswith("COPY"):
        return Route.COPY
    if (head.startswith("CREATE") or head.startswith("DROP")) and databases.is_database_command(stripped):
        return Route.DATABASE
    if commands.local(sql, _ANY_SETTINGS.copy(), "", 0) is not None:
        return Route.LOCAL
    return Route.REMOTE
