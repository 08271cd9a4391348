"""The services of one sqld site and the exact commands that start them.

The local launcher, the test harness and docker-compose.yml all start these commands
(a test checks the compose file against this plan), so there is one truth about how each
service is run. Only addresses and folders differ between deployments.
"""
from __future__ import annotations

import dataclasses
import sys


@dataclasses.dataclass(frozen=True)
class Ports:
    pg: int = 5432
    edge: int = 7000       # edge gRPC health/reflection
    scheduler: int = 7001
    storage: int = 7003


@dataclasses.dataclass(frozen=True)
class Service:
    name: str
    argv: list[str]
    health: str  # gRPC address answering grpc.health.v1


def services(ports: Ports, data_dir: str, host: str = "127.0.0.1", python: str = sys.executable
             ) -> list[Service]:
    """Services in start order (each depends only on those before it)."""
    def addr(port: int) -> str:
        return f"{host}:{port}"

    return [
        Service("storage", [python, "-m", "storage", "--listen", addr(ports.storage),
                            "--data-dir", data_dir], addr(ports.storage)),
        Service("scheduler", [python, "-m", "scheduler", "--listen", addr(ports.scheduler),
                              "--storage", addr(ports.storage)], addr(ports.scheduler)),
        Service("edge", [python, "-m", "edge", "--listen", addr(ports.pg),
                         "--health-listen", addr(ports.edge), "--scheduler", addr(ports.scheduler)],
                addr(ports.edge)),
    ]
