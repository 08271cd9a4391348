"""python -m scheduler: serve the public query API."""
from __future__ import annotations

import asyncio
import sys

from common import grpc_server, log as logsetup
from scheduler import config as scheduler_config
from scheduler.pool import Pools
from scheduler.servicer import QueryServicer
from sqld.v1 import query_pb2, query_pb2_grpc


async def run(argv: list[str]) -> None:
    cfg = scheduler_config.load(argv)
    pools = Pools(cfg.storage, cfg.max_connections, cfg.wait_timeout, cfg.open_timeout)
    servicer = QueryServicer(cfg, pools)

    def register(server):
        query_pb2_grpc.add_QueryServiceServicer_to_server(servicer, server)
        return [query_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name]

    await grpc_server.serve(cfg.listen, register, pools.close)


def main(argv: list[str]) -> None:
    logsetup.setup("scheduler")
    asyncio.run(run(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
