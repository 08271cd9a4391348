"""python -m launcher.health ADDR: exit 0 when the gRPC health service at ADDR is SERVING.

Used by docker-compose healthchecks; the launcher and the tests call `procs.wait_healthy`.
"""
from __future__ import annotations

import sys

from launcher.procs import wait_healthy

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m launcher.health HOST:PORT")
    try:
        wait_healthy(sys.argv[1], timeout=3)
    except (TimeoutError, RuntimeError) as exc:
        sys.exit(str(exc))
