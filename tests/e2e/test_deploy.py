"""docker-compose.yml, the local launcher and the test harness start the same services the same way."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml

from sqld.launcher import plan

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
    assert set(clusters) == {"edge", "scheduler", "replica-edge", "replication-public"}
    assert "http2_protocol_options" in str(clusters["scheduler"])
    extra = {name for name, svc in services.items() if not svc.get("profiles")} - {s.name for s in local} - {"envoy", "pki"}
    assert not extra, f"services in docker-compose.yml but not in the local plan: {extra}"


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def test_compose_every_service_uses_its_own_certificate_from_the_pki_volume():
    """Static checks (there is no Docker engine on these machines): every sqld service gets the
    CA, its own certificate and key from the read-only pki volume, after the pki step ran."""
    services = _compose()
    assert "launcher.pki" in " ".join(services["pki"]["command"])
    assert services["pki"].get("restart") == "no"
    for name, svc in services.items():
        command = svc.get("command", [])
        if command[:2] != ["python", "-m"]:
            continue
        assert "sqld-pki:/pki:ro" in svc.get("volumes", []), name
        assert svc["depends_on"]["pki"]["condition"] == "service_completed_successfully", name
        flags = dict(zip(command, command[1:]))
        assert flags["--grpc-ca"] == "/pki/ca.crt", name
        assert flags["--grpc-cert"] == f"/pki/{name}.crt" and flags["--grpc-key"] == f"/pki/{name}.key", name
        assert "--grpc-insecure" not in command, name
        if command[2] == "scheduler":
            assert flags["--auth-public-key"] == "/pki/auth.pub", name
        if command[2] == "edge":
            assert flags["--scheduler-token-file"] == "/pki/edge.token", name
            assert svc["environment"]["SQLD_EDGE_USERS"] == "/pki/users", name  # passwords behind Envoy
        if "healthcheck" in svc:
            assert svc["healthcheck"]["test"][-1] == "/pki", name  # health checks with the admin certificate


def test_compose_publishes_only_envoy_and_runs_nothing_as_root():
    services = _compose()
    published = {name for name, svc in services.items() if svc.get("ports") and not svc.get("profiles")}
    assert published == {"envoy"}, f"only Envoy may publish ports: {published}"
    # the metrics profile's Grafana: on the host's loopback only
    assert all(p.startswith("127.0.0.1:") for p in services["grafana"]["ports"])
    for name, svc in services.items():
        user = str(svc.get("user", ""))
        assert user and user.split(":")[0] not in ("root", "0"), f"{name} runs as root (user: {user!r})"
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"(?m)^USER\s+(\S+)", dockerfile)
    assert users and users[-1].split(":")[0] not in ("root", "0")


def test_envoy_grpc_route_needs_a_token_and_calls_the_scheduler_over_tls():
    envoy = yaml.safe_load((ROOT / "deploy" / "envoy.yaml").read_text())
    grpc_listener = next(li for li in envoy["static_resources"]["listeners"] if li["name"] == "grpc")
    hcm = grpc_listener["filter_chains"][0]["filters"][0]["typed_config"]
    filters = [f["name"] for f in hcm["http_filters"]]
    assert filters.index("envoy.filters.http.jwt_authn") < filters.index("envoy.filters.http.router")
    jwt = next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.jwt_authn")["typed_config"]
    provider = jwt["providers"]["sqld"]
    assert provider["local_jwks"]["filename"] == "/pki/auth.jwks.json"
    assert provider.get("forward") is True  # the scheduler checks the token too
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    query = next(r for r in routes if r["match"].get("prefix") == "/sqld.v1.QueryService/")
    requirement = query["typed_per_filter_config"]["envoy.filters.http.jwt_authn"]["requirement_name"]
    assert jwt["requirement_map"][requirement] == {"provider_name": "sqld"}
    for r in routes:  # every route to the scheduler's query API carries the requirement
        if "QueryService" in str(r["match"]) or r["match"].get("prefix") in ("/", "/sqld.v1."):
            assert "envoy.filters.http.jwt_authn" in r.get("typed_per_filter_config", {}), r
    cluster = next(c for c in envoy["static_resources"]["clusters"] if c["name"] == "scheduler")
    tls = cluster["transport_socket"]
    assert tls["name"] == "envoy.transport_sockets.tls"
    ctx = tls["typed_config"]["common_tls_context"]
    assert ctx["validation_context"]["trusted_ca"]["filename"] == "/pki/ca.crt"
    assert ctx["tls_certificates"][0]["certificate_chain"]["filename"] == "/pki/gateway.crt"
    assert "h2" in ctx["alpn_protocols"]


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


def test_compose_metrics_profile_scrapes_every_service_onto_the_dashboard():
    """`docker-compose --profile metrics up`: Prometheus scrapes each sqld service of the default
    profile on the --metrics-listen port its command gives; images pinned; the dashboard asks
    only for metrics some service defines."""
    services = _compose()
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["metrics"]
        image = services[name]["image"]
        assert ":" in image and "latest" not in image, image
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = {t for job in scrape["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    default = {name: svc for name, svc in services.items()
               if not svc.get("profiles") and svc.get("command", [])[:2] == ["python", "-m"] and "--listen" in svc["command"]}
    for name, svc in default.items():
        flags = dict(zip(svc["command"], svc["command"][1:]))
        assert f"{name}:{flags['--metrics-listen'].rpartition(':')[2]}" in targets, name
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "sqld.json").read_text())
    source = "\n".join(p.read_text() for p in (ROOT / "services" / "sqld").rglob("metrics.py"))
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for metric in re.findall(r"\b(sqld_\w+?)(?:_bucket|_count|_sum)?\b", target["expr"]):
                base = metric.removesuffix("_total")
                assert f'"{base}' in source, f"{panel['title']}: {metric} is defined by no service"


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
    base = _free_block(21)  # gRPC services, their metrics and the public replication port take base..base+18
    env = {**os.environ, "PYTHONPATH": str(ROOT / "services")}
    proc = subprocess.Popen([sys.executable, "-m", "sqld.launcher", "--data-dir", str(tmp_path / "data"),
                             "--pg-port", str(base + 19), "--pg-replica-port", str(base + 20),
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
        assert command == f"psql -h 127.0.0.1 -p {base + 19} -U postgres main"
        urls = {}
        for line in proc.stdout:  # type: ignore[union-attr]
            urls.update(re.findall(r"([\w-]+) (http://\S+/metrics)", line))
            if "Ctrl-C stops" in line:
                break
        assert urls["edge"] == f"http://127.0.0.1:{base + 11}/metrics" and len(urls) == 8, urls
        with urllib.request.urlopen(urls["storage"], timeout=10) as resp:
            assert b"sqld_storage_commits_logged_total" in resp.read()
        out = subprocess.run(command.split() + ["-X", "-A", "-t", "-c", "SELECT 6 * 7"],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.strip() == "42", out.stderr
        # the replica site: a write through it reads back at once (read-your-writes)
        replica = ["psql", "-h", "127.0.0.1", "-p", str(base + 20), "-U", "postgres", "main", "-X", "-A", "-t"]
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


def test_every_image_is_pinned_to_a_release():
    """No `latest` and no floating tag: an image changes only when this repository changes."""
    images = [svc["image"] for svc in _compose().values() if "image" in svc]
    images += re.findall(r"(?m)^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text())
    assert images
    for image in images:
        name, _, tag = image.partition(":")
        if name.startswith("sqld-py"):
            continue  # built here from the Dockerfile
        assert tag and "latest" not in tag and re.search(r"\d+\.\d+\.\d+", tag), f"{image} is not pinned"


def test_the_build_context_leaves_data_and_keys_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".git", ".venv", "data", "build"):
        assert path in ignored, path


def test_envoy_routes_the_admin_apis_and_embedded_replicas_with_a_token():
    envoy = yaml.safe_load((ROOT / "deploy" / "envoy.yaml").read_text())
    grpc_listener = next(li for li in envoy["static_resources"]["listeners"] if li["name"] == "grpc")
    hcm = grpc_listener["filter_chains"][0]["filters"][0]["typed_config"]
    routes = {r["match"].get("prefix"): r for r in hcm["route_config"]["virtual_hosts"][0]["routes"]}
    for prefix, cluster in [("/sqld.v1.DatabaseAdmin/", "scheduler"), ("/sqld.v1.SessionAdmin/", "scheduler"),
                            ("/sqld.v1.Replication/", "replication-public")]:
        route = routes[prefix]
        assert route["route"]["cluster"] == cluster, prefix
        assert route["typed_per_filter_config"]["envoy.filters.http.jwt_authn"]["requirement_name"] == "sqld_token"
    cluster = next(c for c in envoy["static_resources"]["clusters"] if c["name"] == "replication-public")
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    command = _compose()["replication"]["command"]
    public = command[command.index("--public-listen") + 1]
    assert endpoint == {"address": "replication", "port_value": int(public.rpartition(":")[2])}
    assert "tls" in cluster["transport_socket"]["name"]  # the public port is TLS (no client certificate)
