"""python -m sqld.edge: accept PostgreSQL clients and serve them through the scheduler."""
from __future__ import annotations

import sys

from sqld.common import grpc_client, grpc_server, grpc_tls, metrics
from sqld.common import log as logsetup
from sqld.common import loop as event_loop
from sqld.edge import config as edge_config
from sqld.edge.server import EdgeServer


async def run(cfg: edge_config.Config) -> None:
    identity = grpc_tls.load_identity(cfg, "edge")
    grpc_client.configure(identity)
    if identity is not None and not cfg.scheduler_token_file:
        raise SystemExit("edge: give --scheduler-token-file (a token the scheduler accepts, from "
                         "python -m sqld.common.tokens mint), or --grpc-insecure true for a development run")
    try:
        edge = EdgeServer(cfg)
    except ValueError as exc:  # users file, auth method or TLS files that cannot work
        raise SystemExit(f"edge: {exc}") from None
    try:
        await edge.start()
    except OSError as exc:
        raise SystemExit(f"edge: cannot listen on {cfg.listen}: {exc.strerror}; "
                         "choose another address with --listen or SQLD_EDGE_LISTEN") from None

    async def on_stop() -> None:
        await edge.stop(grace=5.0)

    # The edge serves gRPC health and reflection too, so every process is checked the same way.
    await grpc_server.serve(cfg.health_listen, lambda server: [], on_stop,
                            security=grpc_server.Security(identity))


def main(argv: list[str]) -> None:
    cfg = edge_config.load(argv)
    logsetup.setup("edge", cfg)
    if cfg.metrics_listen:
        metrics.serve(cfg.metrics_listen)
    event_loop.run(run(cfg))


if __name__ == "__main__":
    main(sys.argv[1:])
