"""The event loop every service runs on: uvloop when it is installed, plain asyncio otherwise.

uvloop roughly halves the cost of plain asyncio socket work (the edge's pg-wire side; issue
#13 measured it); grpc.aio runs on it unchanged. `run(main)` is each `__main__`'s
`asyncio.run(main)`.
"""
from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio still works
    uvloop = None  # type: ignore[assignment]


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a new event loop (uvloop's when available)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop if uvloop is not None else None) as runner:
        return runner.run(main)
