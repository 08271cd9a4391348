"""python -m sqld.replication: serve the WAL frame logs."""
from __future__ import annotations

import sys

from prometheus_client import REGISTRY

from sqld.common import grpc_client, grpc_server, grpc_tls, metrics
from sqld.common import log as logsetup
from sqld.common import loop as event_loop
from sqld.common.tokens import Verifier
from sqld.replication import config as replication_config
from sqld.replication import metrics as replication_metrics
from sqld.replication.service import ReplicationCore
from sqld.replication.servicer import SERVICE_NAME, PublicReplicationServicer, ReplicationServicer
from sqld.v1 import replication_pb2 as pb
from sqld.v1 import replication_pb2_grpc


async def run(cfg: replication_config.Config) -> None:
    identity = grpc_tls.load_identity(cfg, "replication")
    grpc_client.configure(identity)
    core = ReplicationCore(cfg)
    servicer = ReplicationServicer(core)

    def register(server):
        replication_pb2_grpc.add_ReplicationServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    also: list[grpc_server.Port] = []
    if cfg.public_listen:
        if identity is None or not cfg.auth_public_key:
            raise SystemExit("--public-listen needs TLS (--grpc-cert/--grpc-key) and --auth-public-key")
        with open(cfg.auth_public_key, "rb") as f:
            verifier = Verifier(f.read())
        public = PublicReplicationServicer(core)

        def register_public(server):
            replication_pb2_grpc.add_ReplicationServicer_to_server(public, server)
            return [SERVICE_NAME]
        also.append((cfg.public_listen, register_public,
                     grpc_server.Security(identity, client_certs=False, verifier=verifier)))

    REGISTRY.register(replication_metrics.StatusCollector(lambda: core.status(pb.StatusRequest())))
    if cfg.metrics_listen:
        metrics.serve(cfg.metrics_listen)
    await grpc_server.serve(cfg.listen, register, on_stopping=core.close_streams,
                            security=grpc_server.Security(identity), also=also)


def main(argv: list[str]) -> None:
    cfg = replication_config.load(argv)
    logsetup.setup("replication", cfg)
    event_loop.run(run(cfg))


if __name__ == "__main__":
    main(sys.argv[1:])
