"""Start the services of a plan as child processes and wait until each reports SERVING."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import IO, cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


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
