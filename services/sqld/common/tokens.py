"""Bearer tokens for the public QueryService: JWTs signed with Ed25519 (alg EdDSA), as in sqld.

Claims: `sub` (who), optional `exp`, `a` ("rw" full access, "ro" read-only; absent = "rw"),
`dbs` (list of database names; absent or "*" = every database). The scheduler holds only the
public key (`--auth-public-key`); whoever holds the private key mints tokens.

PyJWT does the JWS work (base64url, the EdDSA signature through `cryptography`, `exp`); we
pin the algorithm to EdDSA so a token can never choose how it is checked.

    python -m sqld.common.tokens keygen --out DIR         # DIR/auth.key (private), auth.pub, auth.jwks.json
    python -m sqld.common.tokens mint --key DIR/auth.key [--read-only] [--database main ...] [--ttl 3600] [--sub NAME]
"""
from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "EdDSA"
_CACHE_MAX = 1024


class TokenError(Exception):
    """A token that is missing, malformed, badly signed or expired."""


@dataclasses.dataclass(frozen=True)
class Claims:
    sub: str
    read_only: bool
    databases: frozenset[str] | None  # None: every database
    exp: float | None = None

    def allows(self, database: str) -> bool:
        return self.databases is None or database in self.databases


def _claims(payload: dict) -> Claims:
    access = payload.get("a", "rw")
    if access not in ("rw", "ro"):
        raise TokenError(f"claim a={access!r}: expected rw or ro")
    dbs = payload.get("dbs", "*")
    if dbs == "*" or dbs is None:
        databases = None
    elif isinstance(dbs, list) and all(isinstance(d, str) for d in dbs):
        databases = frozenset(dbs)
    else:
        raise TokenError("claim dbs: expected a list of database names or \"*\"")
    exp = payload.get("exp")
    return Claims(str(payload.get("sub", "")), access == "ro", databases, float(exp) if exp is not None else None)


class Verifier:
    """Checks tokens against one Ed25519 public key; remembers tokens it already checked."""

    def __init__(self, public_key_pem: bytes) -> None:
        key = serialization.load_pem_public_key(public_key_pem)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the token public key must be an Ed25519 key (PEM)")
        self._key = key
        self._seen: dict[str, Claims] = {}

    def verify(self, token: str) -> Claims:
        claims = self._seen.get(token)
        if claims is not None:
            if claims.exp is not None and claims.exp <= time.time():
                self._seen.pop(token, None)
                raise TokenError("token expired")
            return claims
        try:
            payload = jwt.decode(token, self._key, algorithms=[ALGORITHM],
                                 options={"require": [], "verify_aud": False})
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise TokenError(f"invalid token: {exc}") from None
        claims = _claims(payload)
        if len(self._seen) >= _CACHE_MAX:
            self._seen.clear()
        self._seen[token] = claims
        return claims

    def from_metadata(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Claims:
        """The claims of the `authorization: Bearer <token>` entry of gRPC metadata."""
        for key, value in metadata or ():
            if key == "authorization":
                text = value.decode() if isinstance(value, bytes) else value
                scheme, _, token = text.strip().partition(" ")
                if scheme.lower() != "bearer" or not token.strip():
                    raise TokenError("authorization metadata must be 'Bearer <token>'")
                return self.verify(token.strip())
        raise TokenError("no token: send metadata 'authorization: Bearer <token>'")


def keygen(folder: str | os.PathLike) -> Path:
    """auth.key (private, 0600), auth.pub and auth.jwks.json (for Envoy's jwt_authn) in `folder`,
    unless auth.key is there already."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    if (path / "auth.key").exists():
        return path
    key = Ed25519PrivateKey.generate()
    fd = os.open(path / "auth.key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    public = key.public_key()
    (path / "auth.pub").write_bytes(public.public_bytes(serialization.Encoding.PEM,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo))
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = {"kty": "OKP", "crv": "Ed25519", "alg": ALGORITHM, "use": "sig",
           "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}
    (path / "auth.jwks.json").write_text(json.dumps({"keys": [jwk]}) + "\n")
    return path


def mint(private_key_pem: bytes, sub: str = "", read_only: bool = False,
         databases: Sequence[str] | None = None, ttl: float | None = None) -> str:
    key = serialization.load_pem_private_key(private_key_pem, None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the token signing key must be an Ed25519 private key (PEM)")
    now = int(time.time())
    payload: dict = {"sub": sub, "iat": now, "a": "ro" if read_only else "rw"}
    if databases:
        payload["dbs"] = list(databases)
    if ttl:
        payload["exp"] = now + int(ttl)
    return jwt.encode(payload, key, algorithm=ALGORITHM)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sqld.common.tokens", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    kg = sub.add_parser("keygen", help="make an Ed25519 key pair: auth.key, auth.pub, auth.jwks.json")
    kg.add_argument("--out", required=True)
    mt = sub.add_parser("mint", help="print a token signed with --key")
    mt.add_argument("--key", required=True, help="PEM Ed25519 private key (auth.key)")
    mt.add_argument("--read-only", action="store_true", help="reads only (claim a=ro)")
    mt.add_argument("--database", action="append", default=[], help="a database the token opens (repeatable; default all)")
    mt.add_argument("--ttl", type=float, default=0, help="seconds until it expires (default: never)")
    mt.add_argument("--sub", default="", help="who the token is for")
    args = parser.parse_args(argv)
    if args.command == "keygen":
        print(f"keys in {keygen(args.out)}: auth.key (keep it secret), auth.pub (--auth-public-key), auth.jwks.json")
        return 0
    print(mint(Path(args.key).read_bytes(), args.sub, args.read_only, args.database, args.ttl))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
