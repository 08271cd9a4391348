"""The installed packages are the ones requirements.lock names (issue #16: a fresh clone installs
from the lock file), and the runtime set is only what the services import."""
from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"requirements.lock: {line!r} is not name==version"
        pins[_norm(name.split("[")[0])] = version.strip()
    return pins


def _requires(extra: str | None) -> set[str]:
    """The names sqld-py requires, for its base set (extra None) or one extra."""
    names = set()
    for req in metadata.requires("sqld-py") or []:
        spec, _, marker = req.partition(";")
        wanted = f'extra == "{extra}"' in marker if extra else "extra ==" not in marker
        if wanted:
            names.add(_norm(re.split(r"[\s<>=!~\[;(]", spec.strip(), maxsplit=1)[0]))
    return names


def test_every_installed_locked_package_is_at_its_locked_version():
    pins = _lock()
    wrong = {}
    for dist in metadata.distributions():
        name = _norm(dist.metadata["Name"])
        if name in pins and dist.version != pins[name]:
            wrong[name] = (dist.version, pins[name])
    assert not wrong, f"installed != requirements.lock (installed, locked): {wrong}; run make setup"


@pytest.mark.parametrize("extra", [None, "dev", "test", "bench"])
def test_every_declared_dependency_is_locked(extra):
    missing = _requires(extra) - set(_lock())
    assert not missing, f"not in requirements.lock: {missing}; run make lock"


def test_the_runtime_and_test_sets_are_installed():
    for name in _requires(None) | _requires("dev") | _requires("test"):
        metadata.version(name)  # raises PackageNotFoundError


def test_the_stub_compiler_is_a_build_tool_not_a_runtime_dependency():
    assert "grpcio-tools" not in _requires(None)
    assert "grpcio-tools" in _requires("dev")
