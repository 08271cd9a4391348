"""common.loop: every service's event loop is uvloop's when uvloop is installed."""
from __future__ import annotations

import asyncio

import pytest

from sqld.common import loop


def test_run_returns_what_main_returns_on_uvloop() -> None:
    pytest.importorskip("uvloop")

    async def main() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert loop.run(main()).startswith("uvloop")
