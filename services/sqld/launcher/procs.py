"""Start the services of a plan as child processes and wait until each reports SERVING."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

if TYPE_CHECKING:
    from sqld.launcher.plan import Service


def admin_credentials(pki_dir: str) -> grpc.ChannelCredentials:
    """TLS client credentials of the deployment's `admin` certificate in `pki_dir`."""
    def read(name: str) -> bytes:
        with open(os.path.join(pki_dir, name), "rb") as f:
            return f.read()
    return grpc.ssl_channel_credentials(read("ca.crt"), read("admin.key"), read("admin.crt"))


def wait_healthy(target: str, timeout: float, proc: subprocess.Popen | None = None,
                 pki_dir: str | None = None) -> None:
    """Block until the gRPC health service at `target` answers SERVING; over TLS with the
    `admin` certificate of `pki_dir` when given (plaintext otherwise, e.g. the test double)."""
    deadline = time.monotonic() + timeout
    channel = (grpc.secure_channel(target, admin_credentials(pki_dir)) if pki_dir
               else grpc.insecure_channel(target))
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{' '.join(cast(list[str], proc.args))} exited with code {proc.returncode} before it was ready")
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{target} did not become healthy within {timeout:.0f}s")
            time.sleep(0.05)


def start_waves(services: list[Service], on_start: Callable[[Service], subprocess.Popen],
                pki_dir: str | None, timeout: float = 30) -> None:
    """Start `services` wave by wave (plan.Service.wave): a wave's processes all at once
    (`on_start` starts one and keeps it, so the caller can stop what started if this fails),
    then wait until each is SERVING before the next wave."""
    for wave in sorted({svc.wave for svc in services}):
        started = [(svc, on_start(svc)) for svc in services if svc.wave == wave]
        for svc, proc in started:
            wait_healthy(svc.health, timeout, proc, pki_dir if svc.role else None)


def start(argv: list[str], log: IO[bytes] | None, env: dict[str, str] | None = None) -> subprocess.Popen:
    full_env = dict(os.environ)
    services_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (services_dir, full_env.get("PYTHONPATH")) if p)
    full_env.update(env or {})
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT if log else None, env=full_env)


def stop(proc: subprocess.Popen, grace: float = 10.0) -> int:
    """SIGTERM, then SIGKILL after `grace` seconds; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
