"""Storage backends: chosen by name (storage.__main__.open_databases); the test double apart."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sqld.storage import config
from sqld.storage.__main__ import open_databases
from sqld.storage.sqlite.backend import Database


@pytest.mark.parametrize("name", ["sqlite", "libsql"])  # libsql: the deprecated name of sqlite
def test_the_sqlite_backend_by_its_names(tmp_path, name):
    databases = open_databases(config.load(["--backend", name, "--data-dir", str(tmp_path)], {}))
    assert isinstance(databases["main"], Database) and (tmp_path / "main.db").exists()
    databases["main"].close()


def test_an_unknown_backend_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="use sqlite or mvsqlite"):
        open_databases(config.load(["--backend", "fdb", "--data-dir", str(tmp_path)], {}))


def test_only_the_kv_choice_imports_the_test_double():
    """services/sqld/testing (the FoundationDB test double) is no part of the service: storage
    imports it only where mvsqlite/setup.py picks the double's client for --fdb-double."""
    storage = Path(__file__).resolve().parents[2] / "services" / "sqld" / "storage"
    importers = set()
    for path in storage.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.startswith("sqld.testing") for n in names):
                importers.add(path.relative_to(storage).as_posix())
    assert importers == {"mvsqlite/setup.py"}
