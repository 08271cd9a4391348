"""Session settings as PostgreSQL's GUC checks and shows them (edge/guc.py, commands.Settings)."""
from __future__ import annotations

import pytest

from sqld.common.sqlstate import SqlError
from sqld.edge import commands, guc


def test_options_split_as_postgres_does():
    assert guc.split_options(r"-c a=1   -c\ b=2 --x-y=z -c name=with\ space\\") == [
        "-c", "a=1", "-c b=2", "--x-y=z", "-c", "name=with space\\"]
    assert guc.startup_options(r"-c statement_timeout=5s -cwork_mem=8MB --search-path=x") == [
        ("statement_timeout", "5s"), ("work_mem", "8MB"), ("search_path", "x")]
    with pytest.raises(SqlError) as info:
        guc.startup_options("-B 100")
    assert info.value.sqlstate == "42601"


@pytest.mark.parametrize("name, value, shown", [
    ("statement_timeout", "1234", "1234ms"), ("statement_timeout", "60000", "1min"),
    ("statement_timeout", "5s", "5s"), ("statement_timeout", "0", "0"), ("work_mem", "4096kB", "4MB"),
    ("work_mem", "1536", "1536kB"), ("TRANSACTION_READ_ONLY", "yes", "on"), ("datestyle", "german", "German, MDY"),
    ("DateStyle", "ISO, DMY", "ISO, DMY"), ("TimeZone", "Europe/Paris", "Europe/Paris"),
    ("client_encoding", "utf-8", "UTF8"), ("bytea_output", "ESCAPE", "escape"), ("myapp.flag", "x", "x"),
])
def test_set_values_are_shown_as_postgres_shows_them(name, value, shown):
    assert guc.check(name, value)[1] == shown


@pytest.mark.parametrize("name, value, sqlstate", [
    ("no_such", "1", "42704"), ("statement_timeout", "soon", "22023"), ("statement_timeout", "5 parsecs", "22023"),
    ("work_mem", "1", "22023"), ("transaction_read_only", "maybe", "22023"), ("TimeZone", "Mars/Olympus", "22023"),
    ("server_version", "9", "55P02"), ("shared_buffers", "1GB", "55P02"), ("bytea_output", "base64", "22023"),
])
def test_bad_settings_are_refused_with_postgres_codes(name, value, sqlstate):
    with pytest.raises(SqlError) as info:
        guc.check(name, value)
    assert info.value.sqlstate == sqlstate


def test_startup_options_set_the_reset_values():
    s = commands.Settings("bob", {"options": "-c statement_timeout=2s", "application_name": "app"}, superuser=False)
    assert s.statement_timeout_s() == 2.0 and s.get("is_superuser") == "off"
    s.set("statement_timeout", "0")
    s.set("statement_timeout", None)
    assert s.get("statement_timeout") == "2s"
    rows = {r[0]: r for r in s.pg_settings()}
    assert rows["statement_timeout"][1:3] == ["2000", "ms"] and rows["statement_timeout"][8] == "client"
    assert rows["application_name"][1] == "app"
    with pytest.raises(SqlError) as info:
        s.set("session_authorization", "postgres")
    assert info.value.sqlstate == "42501"
    with pytest.raises(SqlError):
        commands.Settings("bob", {"options": "-c nope=1"})


def test_a_superuser_setting_needs_a_superuser():
    plain = commands.Settings("bob", {}, {"log_min_duration_statement": "-1"}, superuser=False)
    with pytest.raises(SqlError) as info:
        plain.set("log_min_duration_statement", "0")
    assert info.value.sqlstate == "42501" and plain.log_min_duration_ms() == -1
    root = commands.Settings("postgres", {}, {"log_min_duration_statement": "-1"}, superuser=True)
    root.set("log_min_duration_statement", "1s")
    assert root.get("log_min_duration_statement") == "1s" and root.log_min_duration_ms() == 1000
