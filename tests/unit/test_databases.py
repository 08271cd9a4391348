"""Database names (common.dbnames) and the edge's CREATE/DROP DATABASE parser (edge.databases)."""
from __future__ import annotations

import pytest

from sqld.common import dbnames
from sqld.common.sqlstate import SqlError
from sqld.edge import databases
from sqld.edge.dispatch import Route, route


@pytest.mark.parametrize("name", ["main", "postgres", "a", "A_b$1", "x.y-z", "_t", "9lives", "n" * 63])
def test_good_names(name):
    assert dbnames.check(name) == name


@pytest.mark.parametrize("name, state", [
    ("", "42602"), ("a/b", "42602"), ("..", "42602"), ("a..b", "42602"), (".hidden", "42602"),
    ("-x", "42602"), ("a\\b", "42602"), ("a\x00b", "42602"), ("a b", "42602"), ("é", "42602"),
    ("../../etc/passwd", "42602"), ("n" * 64, "42622"), ("é" * 32, "42622"),
])
def test_bad_names(name, state):
    err = dbnames.problem(name)
    assert err is not None and err.sqlstate == state, (name, err)
    assert "database name" in err.message


def test_create_parses_postgresql_syntax():
    r = databases.parse_create("CREATE DATABASE Shop")
    assert (r.name, r.template) == ("shop", "")  # unquoted: folded
    r = databases.parse_create('create database "Shop" WITH TEMPLATE = "Src" OWNER postgres ENCODING \'UTF8\';')
    assert (r.name, r.template) == ("Shop", "Src")
    assert databases.parse_create("CREATE DATABASE x TEMPLATE template0").template == ""
    r = databases.parse_create("CREATE DATABASE x TEMPLATE a AS_OF_TIME '2026-12-02T04:00:00.250Z'")
    assert r.as_of_unix_ms == 1796184000250
    assert databases.parse_create("CREATE DATABASE x TEMPLATE a AS_OF_FRAME = 42").as_of_frame_no == 42


@pytest.mark.parametrize("sql, state", [
    ("CREATE DATABASE", "42601"), ('CREATE DATABASE "a/b"', "42602"), ("CREATE DATABASE x LOCALE 'C'", "0A000"),
    ("CREATE DATABASE x ENCODING 'LATIN1'", "0A000"), ("CREATE DATABASE x AS_OF_FRAME 3", "22023"),
    ("CREATE DATABASE x TEMPLATE a AS_OF_TIME 'yesterday'", "22023"), ("CREATE DATABASE x TEMPLATE", "42601"),
])
def test_create_refusals(sql, state):
    with pytest.raises(SqlError) as info:
        databases.parse_create(sql)
    assert info.value.sqlstate == state


def test_drop_parses_postgresql_syntax():
    r = databases.parse_drop("DROP DATABASE x")
    assert (r.name, r.if_exists, r.force) == ("x", False, False)
    r = databases.parse_drop('drop database if exists "X" with (force)')
    assert (r.name, r.if_exists, r.force) == ("X", True, True)
    assert databases.parse_drop("DROP DATABASE x (FORCE)").force
    with pytest.raises(SqlError) as info:
        databases.parse_drop("DROP DATABASE x WITH (CASCADE)")
    assert info.value.sqlstate == "42601"


def test_routes():
    assert route("CREATE DATABASE x") is Route.DATABASE
    assert route("  drop database if exists x") is Route.DATABASE
    assert route("CREATE TABLE database (a)") is Route.REMOTE
    assert route("DROP TABLE databases") is Route.REMOTE
