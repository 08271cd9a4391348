"""python -m scheduler: serve the public query API."""
from __future__ import annotations

import asyncio
import sys

from common import grpc_server, log as logsetup
from scheduler import config as scheduler_config
from scheduler.pool import Pools
from scheduler.servicer import QueryServicer
from scheduler.session import Replicas
from scheduler.stat_replication import ReplicationStatus
from sqld.v1 import query_pb2, query_pb2_grpc


async def run(argv: list[str]) -> None:
    cfg = scheduler_config.load(argv)
    pools = Pools(cfg.storage, cfg.max_connections, cfg.wait_timeout, cfg.open_timeout)
    replicas = Replicas(
        # a replica that does not answer quickly is skipped (reads go to the primary)
        pools=Pools(cfg.replica, cfg.max_connections, min(cfg.wait_timeout, 1.0), min(cfg.open_timeout, 1.0))
        if cfg.replica else None,
        status=ReplicationStatus(cfg.replication) if cfg.replication else None,
        read_your_writes_wait_ms=int(cfg.read_your_writes_wait * 1000),
        max_lag_ms=int(cfg.max_replica_lag * 1000))
    servicer = QueryServicer(cfg, pools, replicas)

    async def on_stop() -> None:
        await pools.close()
        if replicas.pools is not None:
            await replicas.pools.close()
        if replicas.status is not None:
            await replicas.status.close()

    def register(server):
        query_pb2_grpc.add_QueryServiceServicer_to_server(servicer, server)
        return [query_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name]

    await grpc_server.serve(cfg.listen, register, on_stop)


def main(argv: list[str]) -> None:
    logsetup.setup("scheduler")
    asyncio.run(run(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
