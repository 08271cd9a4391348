"""A deployment's credentials, made once and kept: `python -m sqld.launcher.pki --out DIR`.

In DIR: the CA (`ca.crt`, `ca.key`), a certificate and key for every service instance of the
plan (`<instance>.crt`/`.key`, its role inside, see `common.pki`), one for `admin` (health checks
and operators' tools) and one for `gateway` (Envoy), the token signing key pair (`auth.key`,
`auth.pub`, `auth.jwks.json` for Envoy), and two full-access tokens: `edge.token` (what the edges
present to the schedulers) and `admin.token` (for operators, e.g. grpcurl). Anything already
there is kept, so `make run` and compose's `pki` step can run it on every start.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from sqld.common import pki, tokens
from sqld.launcher import plan

EXTRA = {"admin": "admin", "gateway": "gateway"}


def instances(services: Iterable[plan.Service]) -> dict[str, str]:
    """instance -> role for every TLS service of a plan, plus admin and gateway."""
    return {**{s.name: s.role for s in services if s.role}, **EXTRA}


def _token(path: Path, signing_key: bytes, sub: str) -> None:
    if path.exists():
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(tokens.mint(signing_key, sub=sub) + "\n")


def ensure(folder: str | os.PathLike, members: Mapping[str, str], hosts: Iterable[str] = pki.DEFAULT_HOSTS) -> Path:
    """Create whatever of the deployment's credentials is missing in `folder`."""
    path = pki.ensure(folder, members, hosts)
    tokens.keygen(path)
    key = (path / "auth.key").read_bytes()
    _token(path / "edge.token", key, "edge")
    _token(path / "admin.token", key, "admin")
    return path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sqld.launcher.pki", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the deployment's certificates, keys and tokens")
    parser.add_argument("--hosts", nargs="*", default=list(pki.DEFAULT_HOSTS),
                        help="host names/addresses every certificate is valid for, besides its instance name")
    parser.add_argument("--instance", action="append", default=[], metavar="NAME:ROLE",
                        help="an instance beyond the default plan's (repeatable)")
    args = parser.parse_args(argv)
    members = instances(plan.services(plan.Ports(), "data"))
    for item in args.instance:
        name, _, role = item.partition(":")
        if role not in pki.ROLES:
            parser.error(f"--instance {item}: unknown role {role!r}; one of {', '.join(pki.ROLES)}")
        members[name] = role
    path = ensure(args.out, members, args.hosts)
    print(f"deployment credentials in {path}: ca.crt, {len(members)} certificates, auth.pub, "
          "auth.jwks.json, edge.token, admin.token")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
