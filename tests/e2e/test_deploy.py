"""docker-compose.yml, the local launcher and the test harness start the same services the same way."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from launcher import plan

ROOT = Path(__file__).resolve().parents[2]


def _shape(argv: list[str]) -> tuple[str, list[str]]:
    """(module, flag names) of a service command; addresses and folders may differ."""
    assert argv[1] == "-m", argv
    return argv[2], [a for a in argv[3:] if a.startswith("--")]


def test_compose_runs_the_plan():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    local = plan.services(plan.Ports(), "data")
    for svc in local:
        assert svc.name in services, f"docker-compose.yml lacks the {svc.name} service"
        assert _shape(services[svc.name]["command"]) == _shape(svc.argv), svc.name
        assert services[svc.name]["command"][0] == "python"
    assert services["envoy"]["image"].startswith("envoyproxy/envoy")
    envoy = yaml.safe_load((ROOT / "deploy" / "envoy.yaml").read_text())
    clusters = {c["name"]: c for c in envoy["static_resources"]["clusters"]}
    assert set(clusters) == {"edge", "scheduler", "replica-edge"}
    assert "http2_protocol_options" in str(clusters["scheduler"])
    extra = {name for name, svc in services.items() if not svc.get("profiles")} - {s.name for s in local} - {"envoy"}
    assert not extra, f"services in docker-compose.yml but not in the local plan: {extra}"


def test_compose_mvsqlite_profile_runs_the_plan():
    """The `mvsqlite` profile: FoundationDB, its one-time configuration, two storage processes
    started as the plan starts mvsqlite storage, each with a scheduler, both feeding one
    replication log that a replica follows."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    profiled = {name for name, svc in services.items() if "mvsqlite" in svc.get("profiles", [])}
    assert {"fdb", "fdb-init", "storage-mv1", "storage-mv2", "scheduler-mv1", "scheduler-mv2",
            "replication-mv", "replica-mv1"} <= profiled
    assert services["fdb"]["image"].startswith("foundationdb/foundationdb")
    assert "configure new single" in " ".join(services["fdb-init"]["command"])
    mv = {s.name: s for s in plan.services(plan.Ports(), "data", replicas=1, backend="mvsqlite",
                                            fdb_cluster_file="/var/fdb/fdb.cluster")}
    assert "fdbdouble" not in mv  # a real cluster: never the test double
    for name in ("storage-mv1", "storage-mv2"):
        assert _shape(services[name]["command"]) == _shape(mv["storage"].argv), name
        assert "/var/fdb/fdb.cluster" in services[name]["command"]
        assert "replication-mv:7004" in services[name]["command"]
    assert _shape(services["replication-mv"]["command"]) == _shape(mv["replication"].argv)
    assert _shape(services["replica-mv1"]["command"]) == _shape(mv["replica1"].argv)
    assert "replication-mv:7004" in services["replica-mv1"]["command"]
    for n in ("1", "2"):
        assert f"storage-mv{n}:7003" in services[f"scheduler-mv{n}"]["command"]


def test_compose_file_validates():
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is needed to validate the compose file: apt-get install docker-compose"
    out = subprocess.run([exe, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def _free_block(n: int) -> int:
    """A base port with `n` consecutive free ports."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n >= 65535:
            continue
        try:
            socks = []
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no block of free ports")


def test_launcher_prints_psql_command_and_stops_cleanly_on_ctrl_c(tmp_path):
    base = _free_block(13)  # gRPC services take base..base+10
    env = {**os.environ, "PYTHONPATH": str(ROOT / "services")}
    proc = subprocess.Popen([sys.executable, "-m", "launcher", "--data-dir", str(tmp_path / "data"),
                             "--pg-port", str(base + 11), "--pg-replica-port", str(base + 12),
                             "--grpc-base-port", str(base)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        command = None
        for line in proc.stdout:  # type: ignore[union-attr]
            m = re.search(r"(psql -h \S+ -p \d+ -U postgres main)", line)
            if m:
                command = m.group(1)
                break
        assert command == f"psql -h 127.0.0.1 -p {base + 11} -U postgres main"
        out = subprocess.run(command.split() + ["-X", "-A", "-t", "-c", "SELECT 6 * 7"],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "42", out.stderr
        # the replica site: a write through it reads back at once (read-your-writes)
        replica = ["psql", "-h", "127.0.0.1", "-p", str(base + 12), "-U", "postgres", "main", "-X", "-A", "-t"]
        out = subprocess.run(replica + ["-c", "CREATE TABLE hello (a)", "-c", "INSERT INTO hello VALUES (5)",
                                        "-c", "SELECT a FROM hello"], capture_output=True, text=True, timeout=30)
        assert out.stdout.split()[-1] == "5", out.stdout + out.stderr
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        assert proc.wait(30) == 0
        stderr = proc.stderr.read()  # type: ignore[union-attr]
        assert "launcher: stopped" in stderr
        assert "level=error" not in stderr
        assert (tmp_path / "data" / "main.db").exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
