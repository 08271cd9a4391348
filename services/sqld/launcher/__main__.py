"""python -m sqld.launcher: the whole system as local processes on loopback (`make run`)."""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time

from sqld.launcher import config as launcher_config
from sqld.launcher import pki, plan, procs


def main(argv: list[str]) -> int:
    args = launcher_config.load(argv)
    config_file = launcher_config.config_file(argv, os.environ)
    ports = plan.Ports.from_base(args.grpc_base_port, args.pg_port, args.pg_replica_port)
    data_dir = os.path.abspath(args.data_dir)
    os.makedirs(data_dir, exist_ok=True)
    pki_dir = os.path.join(data_dir, "pki")
    services = plan.services(ports, data_dir, args.host, replicas=args.replicas, backend=args.backend,
                             fdb_cluster_file=args.fdb_cluster_file or os.environ.get("FDB_CLUSTER_FILE", ""),
                             pki_dir=pki_dir)
    if config_file:  # one file for the whole deployment: each service reads its own table
        services = [dataclasses.replace(s, argv=[*s.argv, "--config", os.path.abspath(config_file)])
                    if s.role else s for s in services]
    # The deployment's CA, certificates and token keys: made on the first start, kept after.
    pki.ensure(pki_dir, pki.instances(services), ["localhost", "127.0.0.1", args.host])

    stopping = False

    def on_signal(signum, frame):  # noqa: ARG001
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    running: list[tuple[plan.Service, subprocess.Popen]] = []
    code = 0
    try:
        def start(svc: plan.Service) -> subprocess.Popen:
            proc = procs.start(svc.argv, None)
            running.append((svc, proc))
            return proc
        procs.start_waves(services, start, pki_dir)
        print(f"\nsqld-py is running; data in {data_dir}\n"
              f"  connect: psql -h {args.host} -p {ports.pg} -U postgres main\n"
              + (f"  replica site (reads on a replica, writes to the primary): "
                 f"psql -h {args.host} -p {ports.pg_replica} -U postgres main\n"
                 f"  replication status: SELECT * FROM pg_stat_replication;\n" if args.replicas else "") +
              f"  gRPC query API: {args.host}:{ports.scheduler} (sqld.v1.QueryService; TLS, bearer token "
              f"in {pki_dir}/admin.token):\n"
              f"    grpcurl -cacert {pki_dir}/ca.crt -H \"authorization: Bearer $(cat {pki_dir}/admin.token)\" "
              f"-d '{{\"database\":\"main\",\"statements\":[{{\"sql\":\"select 1 as one\"}}]}}' "
              f"{args.host}:{ports.scheduler} sqld.v1.QueryService/Execute\n"
              f"    more tokens: {sys.executable} -m sqld.common.tokens mint --key {pki_dir}/auth.key [--read-only] [--database main]\n"
              f"  Prometheus metrics (GET /metrics): "
              + ", ".join(f"{svc.name} http://{svc.metrics}/metrics" for svc in services if svc.metrics) + "\n"
              "  Ctrl-C stops everything.\n", flush=True)
        while not stopping:
            for svc, proc in running:
                if proc.poll() is not None:
                    print(f"launcher: {svc.name} exited with code {proc.returncode}; stopping the rest",
                          file=sys.stderr)
                    stopping, code = True, 1
            time.sleep(0.2)
    except (RuntimeError, TimeoutError) as exc:
        print(f"launcher: {exc}; see the log lines above", file=sys.stderr)
        code = 1
    finally:
        for _svc, proc in reversed(running):
            procs.stop(proc)
        print("launcher: stopped", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
