"""A deployment's PKI: one CA, one certificate per service instance, the role inside it.

Internal gRPC traffic is mutual TLS with certificates from this CA. A certificate says who
its holder is in two places: the common name is the instance ("replica1"), and a SAN URI
`sqld:role:<role>` is what the servers authorize on (`common.authz`). Keys are ECDSA P-256
(every TLS stack, BoringSSL's in gRPC included, takes them; Ed25519 certificates are not
universally accepted in TLS, so we do not rely on them).

Files in the folder: `ca.crt`, `ca.key`, and `<instance>.crt`/`<instance>.key` for each
instance. `ensure` creates what is missing and keeps what is there, so a deployment keeps its
CA across restarts. `python -m sqld.common.pki --out DIR --instance NAME:ROLE ...` is the CLI.
"""
from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROLES = ("scheduler", "storage-primary", "storage-replica", "replication", "edge", "gateway", "admin")
ROLE_URI_PREFIX = "sqld:role:"
DEFAULT_HOSTS = ("localhost", "127.0.0.1")
VALID_DAYS = 3650


def role_uri(role: str) -> str:
    return ROLE_URI_PREFIX + role


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write_private(path: Path, data: bytes) -> None:
    """Write a key readable by its owner only (created with 0600, never world-readable)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _san(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):  # keep order, drop repeats
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def create_ca(folder: Path, name: str = "sqld deployment CA") -> None:
    """A new CA in `folder` (ca.crt, ca.key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    _write_private(folder / "ca.key", _key_pem(key))
    _write_public(folder / "ca.crt", cert.public_bytes(serialization.Encoding.PEM))


def issue(folder: Path, instance: str, role: str, hosts: Iterable[str] = DEFAULT_HOSTS) -> None:
    """`<instance>.crt`/`.key` signed by the CA in `folder`, for `role`, valid for `hosts`
    (as a server) and usable as a client certificate too."""
    if role not in ROLES:
        raise ValueError(f"issue {instance}: unknown role {role!r}; one of {', '.join(ROLES)}")
    ca_key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, instance),
                                     x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(role_uri(role)), *_san([*hosts, instance])]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
                           critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    _write_private(folder / f"{instance}.key", _key_pem(key))
    _write_public(folder / f"{instance}.crt", cert.public_bytes(serialization.Encoding.PEM))


def role_of(cert_pem: bytes) -> str | None:
    """The role a certificate carries (its `sqld:role:` SAN URI), or None."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(ROLE_URI_PREFIX):
            return uri[len(ROLE_URI_PREFIX):]
    return None


def ensure(folder: str | os.PathLike, instances: Mapping[str, str],
           hosts: Iterable[str] = DEFAULT_HOSTS) -> Path:
    """The CA and a certificate for each `instance -> role`, creating only what is missing."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    if not (path / "ca.crt").exists() or not (path / "ca.key").exists():
        create_ca(path)
    hosts = list(hosts)
    for instance, role in instances.items():
        if not (path / f"{instance}.crt").exists() or not (path / f"{instance}.key").exists():
            issue(path, instance, role, hosts)
    return path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m sqld.common.pki", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for ca.crt, ca.key and <instance>.crt/.key")
    parser.add_argument("--instance", action="append", default=[], metavar="NAME:ROLE",
                        help=f"a certificate to issue (repeatable); roles: {', '.join(ROLES)}")
    parser.add_argument("--hosts", nargs="*", default=list(DEFAULT_HOSTS),
                        help="host names and addresses every certificate is valid for (besides its instance name)")
    args = parser.parse_args(argv)
    instances = {}
    for item in args.instance:
        name, _, role = item.partition(":")
        if role not in ROLES:
            parser.error(f"--instance {item}: unknown role {role!r}; one of {', '.join(ROLES)}")
        instances[name] = role
    ensure(args.out, instances, args.hosts)
    print(f"pki in {args.out}: ca.crt and {len(instances)} certificate(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
