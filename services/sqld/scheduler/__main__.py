"""python -m sqld.scheduler: serve the public query API."""
from __future__ import annotations

import sys

from sqld.common import grpc_client, grpc_server, grpc_tls, metrics
from sqld.common import log as logsetup
from sqld.common import loop as event_loop
from sqld.common.tokens import Verifier
from sqld.scheduler import activity
from sqld.scheduler import config as scheduler_config
from sqld.scheduler import metrics as scheduler_metrics
from sqld.scheduler.admin import DatabaseAdminServicer
from sqld.scheduler.pool import Pools
from sqld.scheduler.servicer import QueryServicer
from sqld.scheduler.session import Replicas
from sqld.scheduler.stat_replication import ReplicationStatus
from sqld.v1 import activity_pb2, activity_pb2_grpc, admin_pb2, admin_pb2_grpc, query_pb2, query_pb2_grpc


def load_verifier(path: str, tls: bool) -> Verifier | None:
    if not path:
        if tls:
            raise SystemExit("scheduler: give --auth-public-key (PEM Ed25519 key; make one with "
                             "python -m sqld.common.tokens keygen), or --grpc-insecure true for a development run")
        return None
    try:
        with open(path, "rb") as f:
            return Verifier(f.read())
    except OSError as exc:
        raise SystemExit(f"scheduler: cannot read --auth-public-key {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise SystemExit(f"scheduler: --auth-public-key {path}: {exc}") from None


async def run(cfg: scheduler_config.Config) -> None:
    identity = grpc_tls.load_identity(cfg, "scheduler")
    grpc_client.configure(identity)
    verifier = load_verifier(cfg.auth_public_key, identity is not None)
    pools = Pools(cfg.storage, cfg.max_connections, cfg.wait_timeout, cfg.open_timeout)
    replicas = Replicas(
        # a replica that does not answer quickly is skipped (reads go to the primary)
        pools=Pools(cfg.replica, cfg.max_connections, min(cfg.wait_timeout, 1.0), min(cfg.open_timeout, 1.0))
        if cfg.replica else None,
        status=ReplicationStatus(cfg.replication) if cfg.replication else None,
        read_your_writes_wait_ms=int(cfg.read_your_writes_wait * 1000),
        max_lag_ms=int(cfg.max_replica_lag * 1000))
    servicer = QueryServicer(cfg, pools, replicas, verifier)
    scheduler_metrics.SESSIONS.set_function(lambda: servicer.sessions)
    admin = DatabaseAdminServicer(pools, servicer, verifier, replicas.pools)

    async def on_stop() -> None:
        await pools.close()
        if replicas.pools is not None:
            await replicas.pools.close()
        if replicas.status is not None:
            await replicas.status.close()

    def register(server):
        query_pb2_grpc.add_QueryServiceServicer_to_server(servicer, server)
        admin_pb2_grpc.add_DatabaseAdminServicer_to_server(admin, server)
        activity_pb2_grpc.add_SessionAdminServicer_to_server(
            activity.SessionAdminServicer(servicer.registry, verifier), server)
        return [query_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name,
                admin_pb2.DESCRIPTOR.services_by_name["DatabaseAdmin"].full_name,
                activity_pb2.DESCRIPTOR.services_by_name["SessionAdmin"].full_name]

    # The public port: TLS without client certificates (python grpc cannot make them optional);
    # the bearer token is the caller's credential.
    await grpc_server.serve(cfg.listen, register, on_stop,
                            security=grpc_server.Security(identity, client_certs=False, verifier=verifier))


def main(argv: list[str]) -> None:
    cfg = scheduler_config.load(argv)
    logsetup.setup("scheduler", cfg)
    if cfg.metrics_listen:
        metrics.serve(cfg.metrics_listen)
    event_loop.run(run(cfg))


if __name__ == "__main__":
    main(sys.argv[1:])
