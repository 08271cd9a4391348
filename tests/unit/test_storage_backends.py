"""Choosing a storage backend by name (storage.__main__.open_databases)."""
from __future__ import annotations

import pytest

from storage import config
from storage.__main__ import open_databases
from storage.sqlite.backend import Database


@pytest.mark.parametrize("name", ["sqlite", "libsql"])  # libsql: the deprecated name of sqlite
def test_the_sqlite_backend_by_its_names(tmp_path, name):
    databases = open_databases(config.load(["--backend", name, "--data-dir", str(tmp_path)], {}))
    assert isinstance(databases["main"], Database) and (tmp_path / "main.db").exists()
    databases["main"].close()


def test_an_unknown_backend_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="use sqlite or mvsqlite"):
        open_databases(config.load(["--backend", "fdb", "--data-dir", str(tmp_path)], {}))
