"""Fixtures: real services as processes (tests.fixtures.stack) and clients for them."""
from __future__ import annotations

import re

import pytest

from tests.fixtures.stack import Stack, make_stack


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80]


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Stack:
    """One shared site for tests that do not restart or reconfigure services."""
    s = make_stack("shared", tmp_path_factory.mktemp("shared"))
    yield s
    s.stop()
    errors = s.log_errors()
    assert not errors, "unexpected ERROR log lines:\n" + "\n".join(errors)


@pytest.fixture
def own_stack(request, tmp_path):
    """A site of this test's own: `own_stack(env={...})` starts it; stopped and log-checked after."""
    started: list[Stack] = []

    def start(env: dict[str, str] | None = None, replicas: int = 0, **kw) -> Stack:
        """A single site by default (quicker to start); replicas=2 for the replicated layout."""
        name = _safe(request.node.name) + (f"-{len(started)}" if started else "")
        s = make_stack(name, tmp_path, env, replicas=replicas, **kw)
        started.append(s)
        return s

    yield start
    # stop every site before judging any, so a failure leaks no process; the last started first,
    # since a site made with share_with uses the first one's replication and page store
    for s in reversed(started):
        s.stop()
    errors = [e for s in started for e in s.log_errors()]
    assert not errors, "unexpected ERROR log lines:\n" + "\n".join(errors)
