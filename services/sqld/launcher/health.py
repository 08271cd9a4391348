"""python -m sqld.launcher.health ADDR [PKI_DIR]: exit 0 when the gRPC health service at ADDR is SERVING
(over TLS with PKI_DIR's admin certificate when given).

Used by docker-compose healthchecks; the launcher and the tests call `procs.wait_healthy`.
"""
from __future__ import annotations

import sys

from sqld.launcher.procs import wait_healthy

if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m sqld.launcher.health HOST:PORT [PKI_DIR]")
    try:
        wait_healthy(sys.argv[1], timeout=3, pki_dir=sys.argv[2] if len(sys.argv) == 3 else None)
    except (TimeoutError, RuntimeError) as exc:
        sys.exit(str(exc))
