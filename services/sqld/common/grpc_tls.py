"""TLS settings shared by every gRPC service: the flags, and the identity they load.

Every service's config inherits `TlsConfig`, so each has `--grpc-ca`, `--grpc-cert`,
`--grpc-key` (env `SQLD_<SVC>_GRPC_CA`, ...) and `--grpc-insecure`. A service serves TLS
with its certificate and calls its peers with the same certificate as client credentials;
peers must be signed by the CA. Without the three files a service refuses to start, unless
`--grpc-insecure` asks for plaintext (development only; it says so loudly at start).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any

from sqld.common import pki

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TlsConfig:
    """The gRPC TLS fields every service config inherits."""

    grpc_ca: str = dataclasses.field(default="", metadata={"help": "PEM CA of the deployment: every gRPC peer's certificate must be signed by it"})
    grpc_cert: str = dataclasses.field(default="", metadata={"help": "PEM certificate of this service instance (server and client), from the deployment CA"})
    grpc_key: str = dataclasses.field(default="", metadata={"help": "PEM private key of --grpc-cert"})
    grpc_insecure: bool = dataclasses.field(default=False, metadata={"help": "DEVELOPMENT ONLY: plaintext gRPC without peer authentication (anyone reaching the port may call it)"})


@dataclasses.dataclass(frozen=True)
class Identity:
    """A service instance's credentials: the CA it trusts, its certificate and key, its role."""
    ca: bytes
    cert: bytes
    key: bytes
    role: str


def _read(flag: str, path: str, service: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise SystemExit(f"{service}: cannot read {flag} {path}: {exc.strerror}") from None


def load_identity(cfg: Any, service: str) -> Identity | None:
    """The identity of `cfg` (a TlsConfig), or None for --grpc-insecure (logged as a WARNING).
    Exits with a message naming the flags when TLS is neither configured nor waived."""
    files = {"--grpc-ca": cfg.grpc_ca, "--grpc-cert": cfg.grpc_cert, "--grpc-key": cfg.grpc_key}
    if cfg.grpc_insecure:
        if any(files.values()):
            raise SystemExit(f"{service}: --grpc-insecure and --grpc-ca/--grpc-cert/--grpc-key exclude each other")
        log.warning("INSECURE: gRPC runs in plaintext without peer authentication (--grpc-insecure); "
                    "anyone who reaches this service's ports can call it. For development only.")
        return None
    missing = [flag for flag, value in files.items() if not value]
    if missing:
        raise SystemExit(f"{service}: gRPC needs TLS: give {', '.join(missing)} (certificates from "
                         "`python -m sqld.launcher.pki`), or --grpc-insecure true for a development run in plaintext")
    ca, cert, key = (_read(flag, path, service) for flag, path in files.items())
    try:
        role = pki.role_of(cert)
    except ValueError as exc:
        raise SystemExit(f"{service}: --grpc-cert {cfg.grpc_cert} is not a PEM certificate: {exc}") from None
    if role is None:
        raise SystemExit(f"{service}: --grpc-cert {cfg.grpc_cert} carries no sqld role "
                         f"(a SAN URI {pki.ROLE_URI_PREFIX}<role>); issue it with python -m sqld.launcher.pki")
    return Identity(ca, cert, key, role)


def read_token(path: str, service: str) -> str | None:
    """A bearer token from a file (whitespace stripped), or None for no path."""
    if not path:
        return None
    token = _read("token file", path, service).decode().strip()
    if not token:
        raise SystemExit(f"{service}: the token file {path} is empty")
    return token
